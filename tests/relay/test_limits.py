"""Limits of a real relay process: lockout, TOTP, tokens, claims, hours, timeouts, sizes."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    Abort,
    AbortReason,
    AllocateNameplate,
    ClaimNameplate,
    Confirm,
    PeerLeft,
    RelayError,
    RelayErrorCode,
    Sealed,
)
from relay import accounts
from tests.relay.helpers import (
    STEP_TIMEOUT,
    agent,
    allocate,
    claim,
    close_code_for,
    console,
    paired,
)
from tests.support.relay import RelayProcess

MakeRelay = Callable[..., RelayProcess]


def wait_until(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until truthy; bounded in time and count."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- consultants


def test_repeated_failures_lock_the_account_with_back_off(make_relay: MakeRelay) -> None:
    relay = make_relay(
        config={"login_max_failures": 3, "lockout_seconds": 1.0, "logins_per_ip_per_minute": 1000}
    )
    wrong = {"username": "anna", "password": "wrong password"}
    waits = []
    failures_needed = 3
    for _ in range(2):
        for attempt in range(failures_needed):
            status, reply = relay.api("POST", "/api/login", wrong)
            assert (status, reply["error"]) == (401, "invalid_credentials"), attempt
        # locked: even the right password is refused, with a retry_after
        status, reply = relay.api(
            "POST", "/api/login", {"username": "anna", "password": relay.password}
        )
        assert (status, reply["error"]) == (429, "locked")
        waits.append(reply["retry_after"])
        # the first wrong attempt after the lock ends is the next round's first failure
        wait_until(
            lambda: relay.api("POST", "/api/login", wrong)[1]["error"] != "locked",
            "the lock to end",
        )
        failures_needed = 2
    assert waits[1] > waits[0]  # the second lockout lasts longer (back-off)
    assert relay.login()["display_name"] == "Anna Nowak"  # a good login resets the counter
    audit = relay.cli("audit", "show").stdout
    assert "login.locked" in audit


def test_logins_from_one_address_are_rate_limited(make_relay: MakeRelay) -> None:
    relay = make_relay(config={"logins_per_ip_per_minute": 2})
    relay.login()
    relay.login()
    status, reply = relay.api("POST", "/api/login", {"username": "anna", "password": "x" * 10})
    assert (status, reply["error"]) == (429, "rate_limited")
    assert reply["retry_after"] > 0


def test_totp_second_factor(make_relay: MakeRelay) -> None:
    relay = make_relay()
    result = relay.add_consultant("piotr", "Piotr Zieliński", "piotr's password", "--totp")
    uri = re.search(r"otpauth://\S+", result.stdout)
    assert uri is not None
    b32 = urllib.parse.parse_qs(urllib.parse.urlparse(uri.group()).query)["secret"][0]
    import base64

    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    login = {"username": "piotr", "password": "piotr's password"}
    status, reply = relay.api("POST", "/api/login", login)
    assert (status, reply["error"]) == (401, "totp_required")
    status, reply = relay.api("POST", "/api/login", {**login, "totp": "000000"})
    if status == 200:  # one chance in a million that it was the right code
        pytest.skip("000000 happened to be the code")
    assert status == 401
    code = accounts.totp_code(secret, time.time())
    assert relay.login("piotr", "piotr's password", code)["display_name"] == "Piotr Zieliński"
    status, reply = relay.api("POST", "/api/login", {**login, "totp": code})
    assert status == 401  # the same code twice is refused


def test_tokens_expire_and_can_be_revoked_and_disabled(make_relay: MakeRelay) -> None:
    relay = make_relay(config={"token_ttl": 1.0})
    short = relay.token()
    wait_until(lambda: relay.api("GET", "/api/tickets", token=short)[0] == 401, "expiry")

    relay2 = make_relay()
    token = relay2.token()
    assert relay2.api("GET", "/api/tickets", token=token)[0] == 200
    assert relay2.cli("consultant", "revoke", "anna").returncode == 0
    assert relay2.api("GET", "/api/tickets", token=token)[0] == 401
    token = relay2.token()
    assert relay2.cli("consultant", "disable", "anna").returncode == 0
    assert relay2.api("GET", "/api/tickets", token=token)[0] == 401
    status, _ = relay2.api("POST", "/api/login", {"username": "anna", "password": relay2.password})
    assert status == 401
    assert "anna\tAnna Nowak\tdisabled" in relay2.cli("consultant", "list").stdout
    assert relay2.cli("consultant", "enable", "anna").returncode == 0
    changed = relay2.cli("consultant", "passwd", "anna", "--password-stdin", stdin="new password\n")
    assert changed.returncode == 0
    assert relay2.login(password="new password")["token"]


# -- claims


async def test_failed_claims_are_rate_limited_per_address_with_an_alarm(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"claims_per_ip_per_minute": 3})
    for _ in range(3):
        guess = await claim(http, relay, "999")
        error, _ = await guess.refused()
        assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN
    limited = await claim(http, relay, "998")
    error, code = await limited.refused()
    assert error.code is RelayErrorCode.RATE_LIMITED
    assert 0 < error.retry_after <= 60
    assert "try again" in error.message
    assert code == close_code_for(RelayErrorCode.RATE_LIMITED)
    assert "ALARM nameplate guessing suspected" in relay.log()
    _, metrics = relay.api("GET", "/metrics")
    assert 'zgoda_relay_claims_total{result="rate_limited"} 1.0' in metrics


async def test_failed_claims_are_rate_limited_in_all(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"claims_per_ip_per_minute": 50, "claims_per_minute": 2})
    for _ in range(2):
        await (await claim(http, relay, "999")).refused()
    error, _ = await (await claim(http, relay, "999")).refused()
    assert error.code is RelayErrorCode.RATE_LIMITED


async def test_a_wrong_code_counts_as_a_failed_claim(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"claims_per_ip_per_minute": 1})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await ag.send(Abort(reason=AbortReason.WRONG_CODE))
    await con.expect(PeerLeft)
    error, _ = await (await claim(http, relay, "123")).refused()
    assert error.code is RelayErrorCode.RATE_LIMITED


async def test_a_claim_with_another_protocol_version_is_refused(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    ag = await agent(http, shared_relay)
    await ag.send(ClaimNameplate(nameplate="123", protocol_version=PROTOCOL_VERSION + 1))
    error, code = await ag.refused()
    assert error.code is RelayErrorCode.VERSION_MISMATCH
    assert code == close_code_for(RelayErrorCode.VERSION_MISMATCH)


# -- hours


@pytest.mark.parametrize(
    ("clock", "why"),
    [
        ("2026-11-28T10:00", "a Saturday"),
        ("2026-12-25T10:00", "Christmas"),
        ("2026-11-26T19:00", "evening"),
    ],
)
async def test_outside_business_hours_new_nameplates_are_refused(
    make_relay: MakeRelay, http: aiohttp.ClientSession, clock: str, why: str
) -> None:
    relay = make_relay(config={"hours": "Mon-Fri 08:00-18:00", "hours_clock": clock})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con = await console(http, relay, token)
    await con.send(AllocateNameplate(ticket_id=ticket["id"]))
    error, code = await con.refused()
    assert error.code is RelayErrorCode.OUTSIDE_HOURS, why
    assert "business hours" in error.message
    assert "Mon–Fri 08:00–18:00" in error.message
    assert code == close_code_for(RelayErrorCode.OUTSIDE_HOURS)
    _, info = relay.api("GET", "/api/relay")
    assert info["open_now"] is False


async def test_within_business_hours_nameplates_are_given(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"hours": "Mon-Fri 08:00-18:00", "hours_clock": "2026-11-26T10:00"})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, allocated = await allocate(http, relay, token, ticket["id"])
    assert allocated.nameplate
    await con.ws.close()


# -- timeouts and sizes


async def test_deadlines_handshake_nameplate_expiry_key_confirmation_and_idleness(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(
        config={
            "handshake_timeout": 1.0,
            "nameplate_ttl": 1.0,
            "pake_timeout": 1.0,
            "idle_timeout": 1.5,
        }
    )
    token = relay.token()
    ticket = relay.create_ticket(token)
    # a client that never says anything
    silent = await agent(http, relay)
    # a nameplate nobody claims
    waiting, allocated = await allocate(http, relay, token, ticket["id"])
    # a pair that never confirms keys
    unkeyed_con, unkeyed_ag, _ = await paired(http, relay, token, ticket["id"])

    error, code = await silent.refused()
    assert error.code is RelayErrorCode.BAD_MESSAGE
    assert "No request" in error.message
    assert code == close_code_for(RelayErrorCode.BAD_MESSAGE)

    error, code = await waiting.refused()
    assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN
    assert "expired" in error.message
    error, _ = await (await claim(http, relay, allocated.nameplate)).refused()
    assert error.code is RelayErrorCode.NAMEPLATE_UNKNOWN

    for end in (unkeyed_con, unkeyed_ag):
        error, code = await end.refused()
        assert error.code is RelayErrorCode.PEER_GONE
        assert code == close_code_for(RelayErrorCode.PEER_GONE)

    # a keyed pair that goes quiet is ended too; both ends are told
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await con.send(Confirm(mac=b"c" * 32))
    await ag.expect(Confirm)
    await ag.send(Confirm(mac=b"a" * 32))
    await con.expect(Confirm)
    for end in (con, ag):
        error, _ = await end.refused()
        assert error.code is RelayErrorCode.PEER_GONE
        assert "idle" in error.message


async def test_an_oversized_message_is_refused_unread_and_others_continue(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"max_message_size": 65536})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    bystander_con, bystander_ag, _ = await paired(http, relay, token, ticket["id"])
    await ag.send(Sealed(box=b"x" * 60000))
    assert len((await con.expect(Sealed)).box) == 60000
    await ag.send(Sealed(box=b"x" * 70000))
    assert await ag.closed() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await con.expect(PeerLeft)
    await bystander_ag.send(Sealed(box=b"fine"))
    assert (await bystander_con.expect(Sealed)).box == b"fine"
    await bystander_con.ws.close()


async def test_connections_per_address_are_capped(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"max_connections_per_ip": 3})
    open_ = [await agent(http, relay) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await agent(http, relay)
    assert refused.value.status == 429
    await open_[0].ws.close()
    await asyncio.sleep(0)  # let the relay see the close before the next connect

    async def reconnect() -> bool:
        try:
            extra = await agent(http, relay)
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.05)
            return False
        await extra.ws.close()
        return True

    for _ in range(100):
        if await reconnect():
            break
    else:
        raise AssertionError("a freed slot was never given back")
    for end in open_[1:]:
        await end.ws.close()


async def test_a_stopped_reader_pauses_its_sender_without_unbounded_buffering(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay()
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    bystander_con, bystander_ag, _ = await paired(http, relay, token, ticket["id"])
    # The console stops reading. The agent writes 64 KiB boxes until a write
    # does not complete: relay and kernel buffers are full and the sender is paused.
    box = b"\xab" * 65536
    sent = 0
    for _ in range(4096):  # 256 MiB: far beyond what any buffer on the way may hold
        try:
            await asyncio.wait_for(ag.send(Sealed(box=box)), 1.0)
        except TimeoutError:
            break
        sent += 1
    else:
        raise AssertionError("the sender was never paused: something buffers without bound")
    held = sent * len(box)
    assert held < 64 * 1024 * 1024, f"{held} bytes in flight"
    # meanwhile another session is undisturbed
    await bystander_ag.send(Sealed(box=b"hello"))
    assert (await bystander_con.expect(Sealed)).box == b"hello"
    # the reader resumes: everything arrives, in order, nothing lost
    for _ in range(sent):
        assert (await con.expect(Sealed)).box == box
    await bystander_con.ws.close()


async def test_a_peer_that_accepts_nothing_for_too_long_is_dropped(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"slow_peer_timeout": 1.0})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    box = b"\xcd" * 65536
    for _ in range(4096):
        try:
            await asyncio.wait_for(ag.send(Sealed(box=box)), 0.5)
        except TimeoutError:
            break
    # the agent's data now waits on a console that reads nothing
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        msg = await ag.ws.receive(timeout=STEP_TIMEOUT)
        if msg.type is aiohttp.WSMsgType.BINARY:
            from protocol.codec import decode_envelope

            error = decode_envelope(msg.data)
            assert isinstance(error, RelayError)
            assert error.code is RelayErrorCode.PEER_TOO_SLOW
            break
    else:
        raise AssertionError("the sender was never told")
    assert await ag.closed() == close_code_for(RelayErrorCode.PEER_TOO_SLOW)
    assert con.ws  # the console's socket was cut by the relay
