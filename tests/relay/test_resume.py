"""A keyed session survives a dropped link: the end comes back with its token in time."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from protocol.connection import (
    ConsentRequested,
    LinkRestored,
    PeerAwayEvent,
    SessionEnded,
)
from protocol.messages import (
    AllocateNameplate,
    Claimed,
    Confirm,
    ConsentGranted,
    EndReason,
    KeyEvent,
    NameplateAllocated,
    PeerAway,
    PeerJoined,
    PeerLeft,
    PeerReturned,
    RelayErrorCode,
    Resume,
    Resumed,
    Rewind,
    Rights,
    Sealed,
    SessionOpened,
)
from tests.relay.helpers import Client, Driver, agent, claim, close_code_for, console, protocol_pair
from tests.support.relay import RelayProcess

MakeRelay = Callable[..., RelayProcess]


async def keyed_pair(
    http: aiohttp.ClientSession, relay: RelayProcess, token: str
) -> tuple[Client, Client, SessionOpened, SessionOpened]:
    """A paired session with key confirmation seen both ways, and each end's SessionOpened."""
    ticket = relay.create_ticket(token)
    con = await console(http, relay, token)
    await con.send(AllocateNameplate(ticket_id=ticket["id"]))
    allocated = await con.expect(NameplateAllocated)
    ag = await claim(http, relay, allocated.nameplate)
    await ag.expect(Claimed)
    ag_opened = await ag.expect(SessionOpened)
    await ag.expect(PeerJoined)
    con_opened = await con.expect(SessionOpened)
    await con.expect(PeerJoined)
    await con.send(Confirm(mac=b"c" * 32))
    await ag.expect(Confirm)
    await ag.send(Confirm(mac=b"a" * 32))
    await con.expect(Confirm)
    return con, ag, con_opened, ag_opened


async def test_an_agent_whose_link_drops_resumes_with_its_token(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    con, ag, con_opened, ag_opened = await keyed_pair(http, shared_relay, token)
    assert len(ag_opened.resume_token) == 32
    assert con_opened.resume_token != ag_opened.resume_token
    await ag.drop()  # the PC's network drops
    away = await con.expect(PeerAway)
    assert away.grace_seconds > 0
    await con.send(Sealed(box=b"lost in the gap"))  # dropped: the channel will rewind

    # a thief with the session id but another token, and a console token on the agent side
    for wrong in (b"x" * 32, con_opened.resume_token):
        thief = await agent(http, shared_relay)
        await thief.send(Resume(session_id=ag_opened.session_id, token=wrong))
        error, code = await thief.refused()
        assert error.code is RelayErrorCode.SESSION_UNKNOWN
        assert code == close_code_for(RelayErrorCode.SESSION_UNKNOWN)

    back = await agent(http, shared_relay)
    await back.send(Resume(session_id=ag_opened.session_id, token=ag_opened.resume_token))
    await back.expect(Resumed)
    await con.expect(PeerReturned)
    await back.send(Rewind(next_counter=7))
    assert (await con.expect(Rewind)).next_counter == 7
    await con.send(Sealed(box=b"after the gap"))
    assert (await back.expect(Sealed)).box == b"after the gap"

    # The same end again, while the relay still thinks its link alive (a drop the
    # client noticed first): the token lets the new link take over the old one.
    again = await agent(http, shared_relay)
    await again.send(Resume(session_id=ag_opened.session_id, token=ag_opened.resume_token))
    await again.expect(Resumed)
    await con.expect(PeerAway)  # the console holds and rewinds as after any drop
    await con.expect(PeerReturned)
    assert await back.closed() in (1006, None)  # the old link was cut
    await con.send(Sealed(box=b"to the newest link"))
    assert (await again.expect(Sealed)).box == b"to the newest link"
    await again.drop()
    await con.expect(PeerAway)
    await con.ws.close()

    rows = shared_relay.cli("audit", "show", "--json").stdout
    assert '"session.link_lost"' in rows
    assert '"session.resumed"' in rows


async def test_a_console_resumes_only_with_its_own_login(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    token = shared_relay.token()
    con, ag, con_opened, _ = await keyed_pair(http, shared_relay, token)
    await con.drop()
    await ag.expect(PeerAway)
    back = await console(http, shared_relay, shared_relay.token())  # a new login, same consultant
    await back.send(Resume(session_id=con_opened.session_id, token=con_opened.resume_token))
    await back.expect(Resumed)
    await ag.expect(PeerReturned)
    await ag.send(Sealed(box=b"hello again"))
    assert (await back.expect(Sealed)).box == b"hello again"
    await back.ws.close()
    await ag.ws.close()


async def test_an_end_that_does_not_come_back_in_time_ends_the_session(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"resume_grace": 1.0})
    token = relay.token()
    con, ag, _, ag_opened = await keyed_pair(http, relay, token)
    await ag.drop()
    assert (await con.expect(PeerAway)).grace_seconds == 1.0
    await con.expect(PeerLeft)
    assert await con.closed() == 1000
    late = await agent(http, relay)
    await late.send(Resume(session_id=ag_opened.session_id, token=ag_opened.resume_token))
    error, _ = await late.refused()
    assert error.code is RelayErrorCode.SESSION_UNKNOWN
    assert "did not come back" in relay.cli("audit", "show").stdout


async def test_without_resume_a_dropped_link_ends_the_session_at_once(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"resume_grace": 0})
    con, ag, con_opened, _ = await keyed_pair(http, relay, relay.token())
    assert con_opened.resume_token == b""
    await ag.ws.close()
    await con.expect(PeerLeft)


async def test_protocol_ends_carry_a_session_across_an_agent_reconnect(
    shared_relay: RelayProcess, http: aiohttp.ClientSession
) -> None:
    _, console_conn, con, agent_conn, ag = await protocol_pair(http, shared_relay)
    await ag.wait_for(ConsentRequested)
    agent_conn.grant(Rights.CONTROL)
    await ag.flush()
    await con.wait_for(ConsentGranted)

    await ag.stop(drop=True)  # the link drops under the agent
    assert agent_conn.link_lost()
    await con.wait_for(PeerAwayEvent)
    console_conn.send(KeyEvent(key="b", down=True))  # typed while the PC is away
    await con.flush()

    agent_conn.resume()
    ag = Driver(agent_conn, (await agent(http, shared_relay)).ws)
    ag.start()
    await ag.wait_for(LinkRestored)
    assert (await ag.wait_for(KeyEvent)).key == "b"  # resent after the rewind, not lost
    agent_conn.end(EndReason.USER_ENDED)
    await ag.flush()
    assert (await con.wait_for(SessionEnded)).reason is EndReason.USER_ENDED
    await ag.stop()
    await con.stop()
