"""Nameplates, pairing and blind forwarding through a real relay process."""

from __future__ import annotations

import aiohttp

from protocol.attestation import load_public_key, verify
from protocol.connection import (
    ConsentRequested,
    Keyed,
    SessionEnded,
)
from protocol.errors import DecodeError, MessageTooLarge, UnexpectedMessage
from protocol.limits import MAX_CONTROL_MESSAGE_SIZE
from protocol.messages import (
    Abort,
    AbortReason,
    AllocateNameplate,
    AuditKind,
    AuditReport,
    ConsentGranted,
    EndReason,
    KeyEvent,
    PeerLeft,
    RelayErrorCode,
    Rights,
    Sealed,
)
from tests.relay.helpers import (
    agent,
    allocate,
    claim,
    close_code_for,
    console,
    paired,
    protocol_pair,
)
from tests.support.relay import RelayProcess


async def test_allocation_is_signed_with_the_relay_key_for_the_ticket(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, allocated = await allocate(http, shared_relay, token, ticket["id"])
    assert len(allocated.nameplate) == 3
    statement = verify(
        allocated.attestation,
        load_public_key(shared_relay.pubkey),
        nameplate=allocated.nameplate,
        now=allocated.expires_at - 1,
    )
    assert statement.consultant == "Anna Nowak"
    assert statement.ticket_id == ticket["id"]
    assert statement.ticket_title == ticket["title"]
    assert statement.org == shared_relay.org
    await con.ws.close()


async def test_full_protocol_session_through_the_relay_with_consent_receipts(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    ticket, console_conn, con, agent_conn, ag = await protocol_pair(http, shared_relay)
    await ag.wait_for(Keyed)
    await con.wait_for(Keyed)
    prompt = await ag.wait_for(ConsentRequested)
    assert prompt.attestation.consultant == "Anna Nowak"
    assert prompt.attestation.ticket_id == ticket["id"]
    agent_conn.grant(Rights.CONTROL)
    await ag.flush()
    assert (await con.wait_for(ConsentGranted)).rights is Rights.CONTROL
    # console -> agent: a sealed key press arrives
    console_conn.send(KeyEvent(key="a", down=True))
    await con.flush()
    assert (await ag.wait_for(KeyEvent)).key == "a"
    agent_conn.end(EndReason.USER_ENDED)
    await ag.flush()
    ended = await con.wait_for(SessionEnded)
    assert ended.reason is EndReason.USER_ENDED
    await ag.stop()
    await con.stop()

    _, history = shared_relay.api(
        "GET", f"/api/tickets/{ticket['id']}/history", token=shared_relay.token()
    )
    kinds = [e["kind"] for e in history["events"]]
    assert kinds[:3] == ["ticket.opened", "nameplate.allocated", "session.paired"]
    assert "consent.granted" in kinds
    assert "consent.ended" in kinds
    assert kinds[-1] == "session.ended"
    granted = next(e for e in history["events"] if e["kind"] == "consent.granted")
    assert granted["detail"]["rights"] == "control"
    ended_row = history["events"][-1]
    assert ended_row["detail"]["keyed"] is True
    assert ended_row["detail"]["bytes_to_agent"] > 0
    assert ended_row["detail"]["bytes_to_console"] > 0


async def test_opaque_bytes_are_forwarded_unchanged_in_order_both_ways(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, ag, _ = await paired(http, shared_relay, token, ticket["id"])
    boxes = [bytes([i]) * (1 + i * 997) for i in range(40)]
    for box in boxes:
        await ag.send(Sealed(box=box))
        await con.send(Sealed(box=box[::-1]))
    for box in boxes:
        assert (await con.expect(Sealed)).box == box
        assert (await ag.expect(Sealed)).box == box[::-1]
    await ag.ws.close()
    await con.expect(PeerLeft)
    assert await con.closed() == 1000


async def test_a_nameplate_is_single_use(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, ag, _ = await paired(http, shared_relay, token, ticket["id"])
    _, history = shared_relay.api("GET", f"/api/tickets/{ticket['id']}/history", token=token)
    used = history["events"][1]["detail"]["nameplate"]
    second = await claim(http, shared_relay, used)
    error, code = await second.refused()
    assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN
    assert code == close_code_for(RelayErrorCode.NAMEPLATE_UNKNOWN)
    # the first pair is not disturbed
    await ag.send(Sealed(box=b"still here"))
    assert (await con.expect(Sealed)).box == b"still here"
    await con.ws.close()
    await ag.expect(PeerLeft)


async def test_an_unknown_nameplate_is_refused(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    # a nameplate nobody allocated: the shared relay has at most a few live ones
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, allocated = await allocate(http, shared_relay, token, ticket["id"])
    unused = f"{(int(allocated.nameplate) + 500) % 1000:03d}"
    ag = await claim(http, shared_relay, unused)
    error, code = await ag.refused()
    assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN
    assert "new one" in error.message
    assert code == close_code_for(RelayErrorCode.NAMEPLATE_UNKNOWN)
    await con.ws.close()


async def test_the_console_leaving_burns_its_nameplate(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, allocated = await allocate(http, shared_relay, token, ticket["id"])
    await con.ws.close()
    ag = await claim(http, shared_relay, allocated.nameplate)
    error, _ = await ag.refused()
    assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN


async def test_abort_burns_the_nameplate_and_closes_both(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, ag, _ = await paired(http, shared_relay, token, ticket["id"])
    await ag.send(Abort(reason=AbortReason.PROTOCOL_ERROR))
    assert await ag.closed() == 1000
    await con.expect(PeerLeft)
    assert await con.closed() == 1000


async def test_a_console_without_a_valid_token_is_refused(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    for token in (None, "forged-token"):
        con = await console(http, shared_relay, token)
        error, code = await con.refused()
        assert error.code is RelayErrorCode.UNAUTHORIZED
        assert code == close_code_for(RelayErrorCode.UNAUTHORIZED)


async def test_allocation_for_an_unknown_or_closed_ticket_is_refused(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    shared_relay.api("POST", f"/api/tickets/{ticket['id']}/close", {"resolution": "x"}, token=token)
    for ticket_id in ("HD-0", ticket["id"]):
        con = await console(http, shared_relay, token)
        await con.send(AllocateNameplate(ticket_id=ticket_id))
        error, code = await con.refused()
        assert error.code is RelayErrorCode.TICKET_UNKNOWN
        assert code == close_code_for(RelayErrorCode.TICKET_UNKNOWN)


async def test_bad_input_closes_only_that_connection_with_the_codec_close_code(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token)
    con, ag, _ = await paired(http, shared_relay, token, ticket["id"])
    cases = [
        (b"\xc1garbage", DecodeError.close_code),  # not msgpack
        (b"\x92\x7f\x00", DecodeError.close_code),  # unknown tag
        (b"\x91\x20", DecodeError.close_code),  # an inner message outside a Sealed box
        (
            b"\x92\x0d" + b"\xc5" + (5000).to_bytes(2, "big") + b"x" * 5000,
            MessageTooLarge.close_code,
        ),
    ]
    assert len(cases[-1][0]) > MAX_CONTROL_MESSAGE_SIZE
    for data, expected in cases:
        bad = await agent(http, shared_relay)
        await bad.send_raw(data)
        error, code = await bad.refused()
        assert error.code is RelayErrorCode.BAD_MESSAGE
        assert code == expected, data[:8]
    text = await agent(http, shared_relay)
    await text.ws.send_str("hello")
    _, code = await text.refused()
    assert code == UnexpectedMessage.close_code
    # a message in the wrong state: an agent sending an audit receipt before claiming
    early = await agent(http, shared_relay)
    await early.send(AuditReport(kind=AuditKind.GRANTED, rights=2, detail=""))
    _, code = await early.refused()
    assert code == UnexpectedMessage.close_code
    # the paired session carries on
    await con.send(Sealed(box=b"undisturbed"))
    assert (await ag.expect(Sealed)).box == b"undisturbed"
    await ag.ws.close()
    await con.expect(PeerLeft)
