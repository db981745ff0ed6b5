"""The client library against a real relay process, with the protocol's agent end as the PC.

Each test reads as a helpdesk call: the consultant logs in, registers the
caller's ticket, reads the code, the user types it and clicks, pixels and keys
travel sealed through the relay.
"""

from __future__ import annotations

import gc
import inspect
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import console
from console.client import ConsoleClient
from console.errors import (
    ApiError,
    InputNotAllowed,
    LoginFailed,
    NotLoggedIn,
    RelayUnreachable,
    SessionClosed,
    SessionRefused,
)
from console.session import ControlDenied, Phase, Stats, Update, describe_end
from protocol.codes import PhoneCode
from protocol.connection import EscalationRequested, SessionEnded
from protocol.limits import RETRANSMIT_BUFFER_BYTES
from protocol.messages import (
    Cursor,
    Encoding,
    EndReason,
    Frame,
    HandBackRequest,
    KeyEvent,
    Modifiers,
    Monitor,
    MonitorLayout,
    MouseButton,
    Notice,
    NoticeCode,
    Party,
    PointerButton,
    PointerMove,
    Region,
    Rights,
    Scroll,
    SelectMonitor,
    TypeText,
)
from tests.console.peer import ScriptedAgent
from tests.support.relay import RelayProcess

CONSOLE_DIR = Path(console.__file__).parent

CALLER = {
    "caller_name": "Jan Kowalski",
    "company": "Kowalski i Syn",
    "phone": "+48 600 100 200",
    "problem": "Outlook nie startuje od rana",
}


def agent_for(relay: RelayProcess, code: PhoneCode) -> ScriptedAgent:
    return ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, code)


def tile(seed: int, h: int = 32, w: int = 32) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    pixels[:, :, 3] = 255
    return pixels


def zlib_frame(frame_id: int, pixels: np.ndarray, x: int = 0, y: int = 0) -> Frame:
    h, w = pixels.shape[:2]
    region = Region(
        x=x,
        y=y,
        width=w,
        height=h,
        encoding=Encoding.ZLIB_BGRA,
        data=zlib.compress(pixels.tobytes()),
    )
    return Frame(
        frame_id=frame_id,
        captured_at_ns=time.monotonic_ns(),
        width=320,
        height=200,
        regions=(region,),
    )


async def test_consultant_logs_in_and_a_wrong_password_is_refused(relay: RelayProcess) -> None:
    async with ConsoleClient(relay.url) as c:
        with pytest.raises(LoginFailed) as refused:
            await c.login(relay.username, "wrong password")
        assert refused.value.status == 401 and str(refused.value)
        login = await c.login(relay.username, relay.password)
        assert login.display_name == relay.display_name and c.logged_in
        info = await c.relay_info()
        assert info.public_key == relay.pubkey and info.org == relay.org


async def test_tickets_are_created_listed_closed_and_keep_their_history(
    client: ConsoleClient,
) -> None:
    ticket = await client.create_ticket(**CALLER)
    assert ticket.status == "open" and ticket.caller_name == "Jan Kowalski" and ticket.title
    assert ticket.id in [t.id for t in await client.tickets("open")]
    assert (await client.ticket(ticket.id)).title == ticket.title
    await client.close_ticket(ticket.id, "restarted Outlook in safe mode")
    assert ticket.id not in [t.id for t in await client.tickets("open")]
    closed = [t for t in await client.tickets("closed") if t.id == ticket.id]
    assert closed and closed[0].resolution == "restarted Outlook in safe mode"
    history = await client.history(ticket.id)
    assert any("close" in str(e.get("kind")) for e in history), history
    with pytest.raises(ApiError) as missing:
        await client.ticket("HD-does-not-exist")
    assert missing.value.status == 404


async def test_ticket_without_caller_is_refused_with_the_relays_message(
    client: ConsoleClient,
) -> None:
    with pytest.raises(ApiError) as refused:
        await client.create_ticket(caller_name="", company="", phone="", problem="")
    assert refused.value.status == 400 and refused.value.message


async def test_full_call_code_consent_frames_input_hand_back_and_end(
    relay: RelayProcess, client: ConsoleClient
) -> None:
    ticket = await client.create_ticket(**CALLER)
    session = await client.start_session(ticket)
    phases: list[Phase] = []
    updates: list[Update] = []
    session.add_listener(updates.append)
    session.add_listener(lambda u: phases.append(session.phase))
    assert session.code is not None and len(str(session.code)) == 11
    assert session.phase is Phase.WAITING_FOR_USER
    assert session.expires_at is not None and session.expires_at > time.time()
    with pytest.raises(InputNotAllowed):
        session.type_text("before consent")

    async with agent_for(relay, session.code) as agent:
        prompt = await agent.consent_prompt()
        # the prompt names what the relay attested: the consultant and the ticket
        assert prompt.attestation.consultant == relay.display_name
        assert prompt.attestation.ticket_id == ticket.id
        assert prompt.attestation.ticket_title == ticket.title
        await session.wait_phase(Phase.WAITING_FOR_CONSENT, timeout=30)
        await agent.allow(Rights.CONTROL)
        await session.wait_phase(Phase.CONTROLLING, timeout=30)
        assert session.rights is Rights.CONTROL and session.session_id

        await agent.send(
            MonitorLayout(
                monitors=(
                    Monitor(
                        index=0,
                        x=0,
                        y=0,
                        width=320,
                        height=200,
                        scale_percent=100,
                        primary=True,
                        name="DP-1",
                    ),
                    Monitor(
                        index=1, x=320, y=0, width=320, height=200, scale_percent=125, name="HDMI-1"
                    ),
                ),
                selected=0,
            )
        )
        picture = tile(1)
        await agent.send(zlib_frame(1, picture, x=100, y=50))
        await agent.send(Cursor(x=110, y=60))
        await session.wait_frames(1, timeout=30)
        assert np.array_equal(session.framebuffer.pixels[50:82, 100:132], picture)
        await agent.wait(lambda: agent.last_ack == 1)
        await session.wait_for(lambda: session.cursor is not None, timeout=30)
        assert session.layout is not None and len(session.layout.monitors) == 2

        session.pointer_move(5, 6)
        session.pointer_button(MouseButton.LEFT, True, 5, 6)
        session.pointer_button(MouseButton.LEFT, False, 5, 6)
        session.scroll(0, -3, 5, 6)
        session.key("ctrl", True)
        session.key("c", True, Modifiers.CTRL)
        session.key("c", False, Modifiers.CTRL)
        session.key("ctrl", False)
        session.type_text("Zażółć gęślą jaźń")
        session.select_monitor(1)
        await agent.wait(lambda: bool(agent.of(SelectMonitor)))
        assert agent.of(PointerMove) == [PointerMove(x=5, y=6)]
        assert [b.down for b in agent.of(PointerButton)] == [True, False]
        assert agent.of(Scroll)[0].dy == -3
        assert [(k.key, k.down) for k in agent.of(KeyEvent)] == [
            ("ctrl", True),
            ("c", True),
            ("c", False),
            ("ctrl", False),
        ]
        assert agent.of(TypeText) == [TypeText(text="Zażółć gęślą jaźń")]

        # hand the keyboard back: the user types a password, nothing reaches the consultant
        session.hand_back()
        await agent.wait(lambda: bool(agent.of(HandBackRequest)))
        await session.wait_phase(Phase.HAND_BACK, timeout=30)
        with pytest.raises(InputNotAllowed):
            session.type_text("secret")
        await agent.end_hand_back()
        await session.wait_phase(Phase.CONTROLLING, timeout=30)

        # step down to view, ask again, the user refuses: view-only goes on
        session.request_view_only()
        assert session.phase is Phase.VIEWING
        session.request_control()  # at once: a step down needs no confirmation
        await agent.wait_event(EscalationRequested)
        assert session.phase is Phase.ESCALATING
        await agent.deny()
        await session.wait_phase(Phase.VIEWING, timeout=30)
        assert any(isinstance(u, ControlDenied) for u in updates)
        with pytest.raises(InputNotAllowed):
            session.pointer_move(1, 1)

        await agent.send(Notice(code=NoticeCode.SECURE_DESKTOP, text="UAC prompt"))
        await session.wait_for(lambda: session.secure_desktop, timeout=30)

        await session.end("solved on the phone")
        ended = await agent.ended()
        assert (ended.by, ended.reason, ended.detail) == (
            Party.CONSOLE,
            EndReason.CONSULTANT_ENDED,
            "solved on the phone",
        )
    assert session.phase is Phase.ENDED and describe_end(session.ended).startswith("You ended")
    for phase in (Phase.WAITING_FOR_CONSENT, Phase.CONTROLLING, Phase.HAND_BACK, Phase.VIEWING):
        assert phase in phases
    with pytest.raises(SessionClosed):
        session.type_text("after the end")
    history = await client.history(ticket.id)
    kinds = " ".join(str(e.get("kind")) for e in history)
    assert "GRANTED" in kinds.upper() and "HAND_BACK" in kinds.upper(), kinds


async def test_user_clicks_deny_and_the_console_says_so(
    relay: RelayProcess, client: ConsoleClient
) -> None:
    ticket = await client.create_ticket(**CALLER)
    session = await client.start_session(ticket, Rights.VIEW)
    assert session.code is not None
    async with agent_for(relay, session.code) as agent:
        prompt = await agent.consent_prompt()
        assert prompt.request.rights is Rights.VIEW
        await agent.deny()
        await session.wait_phase(Phase.ENDED, timeout=30)
    assert session.ended is not None and session.ended.reason is EndReason.DENIED
    assert "did not allow" in describe_end(session.ended)
    await session.close()


async def test_wrong_code_ends_both_ends_and_burns_the_nameplate(
    relay: RelayProcess, client: ConsoleClient
) -> None:
    ticket = await client.create_ticket(**CALLER)
    session = await client.start_session(ticket)
    assert session.code is not None
    typo = PhoneCode(session.code.nameplate, f"{(int(session.code.secret) + 1) % 10**6:06d}")
    async with agent_for(relay, typo) as agent:
        await agent.ended()
        await session.wait_phase(Phase.ENDED, timeout=30)
    assert session.ended is not None
    assert session.ended.reason in (
        EndReason.WRONG_CODE,
        EndReason.RELAY_REFUSED,
        EndReason.PEER_LOST,
    )
    await session.close()


async def test_user_leaving_mid_session_ends_it_with_a_reason(
    relay: RelayProcess, client: ConsoleClient
) -> None:
    session = await client.start_session(await client.create_ticket(**CALLER))
    assert session.code is not None
    async with agent_for(relay, session.code) as agent:
        await agent.consent_prompt()
        await agent.allow(Rights.VIEW)
        await session.wait_phase(Phase.VIEWING, timeout=30)
    # the agent's socket is gone without an End: the relay says the peer left
    await session.wait_phase(Phase.ENDED, timeout=30)
    assert session.ended is not None and session.ended.reason is EndReason.PEER_LOST
    await session.close()


async def test_user_ends_the_session(relay: RelayProcess, client: ConsoleClient) -> None:
    session = await client.start_session(await client.create_ticket(**CALLER))
    assert session.code is not None
    async with agent_for(relay, session.code) as agent:
        await agent.consent_prompt()
        await agent.allow()
        await session.wait_phase(Phase.CONTROLLING, timeout=30)
        await agent.end(EndReason.USER_ENDED, "thanks")
        await session.wait_phase(Phase.ENDED, timeout=30)
    assert session.ended == SessionEnded(Party.AGENT, EndReason.USER_ENDED, "thanks")
    assert describe_end(session.ended).startswith("The user ended the session")
    await session.wait_closed(5)


async def test_closed_ticket_gets_no_code(client: ConsoleClient) -> None:
    ticket = await client.create_ticket(**CALLER)
    await client.close_ticket(ticket.id, "solved by phone")
    with pytest.raises(SessionRefused) as refused:
        await client.start_session(ticket)
    assert refused.value.code == "TICKET_UNKNOWN" or str(refused.value)


async def test_expired_or_forged_token_asks_to_log_in_again(relay: RelayProcess) -> None:
    async with ConsoleClient(relay.url) as c:
        await c.use_token("forged-token", relay.display_name)
        with pytest.raises(NotLoggedIn):
            await c.tickets()
        ticket = await _ticket_via_http(relay)
        with pytest.raises(NotLoggedIn):
            await c.start_session(ticket)


async def _ticket_via_http(relay: RelayProcess):  # type: ignore[no-untyped-def]
    from console.api import Ticket

    return Ticket.from_json(relay.create_ticket(relay.token()))


async def test_unreachable_relay_is_reported_not_hidden(own_relay: RelayProcess) -> None:
    url = own_relay.url
    own_relay.stop()
    async with ConsoleClient(url) as c:
        with pytest.raises(RelayUnreachable, match="does not answer"):
            await c.login("anna", "x")


def console_bytes() -> int:
    """Bytes still allocated by the console's own code (the in-process test agent excluded).

    The rate statistics keep the last 2 seconds of samples (bounded by
    MAX_STATS_SAMPLES): their size follows the frame rate of the moment, up to
    ~300 KB at this test's rates, so a faster end than start looked like growth. They
    are left out; everything else the console allocates counts.
    """
    filters = [tracemalloc.Filter(True, str(CONSOLE_DIR / "*"))]
    session_py = str(CONSOLE_DIR / "session.py")
    for method in (Stats.received, Stats.frame):
        lines, first = inspect.getsourcelines(method)
        filters += [
            tracemalloc.Filter(False, session_py, lineno=n)
            for n in range(first, first + len(lines))
        ]
    snapshot = tracemalloc.take_snapshot().filter_traces(filters)
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_long_view_keeps_memory_flat(relay: RelayProcess, client: ConsoleClient) -> None:
    """3,000 paced frames: one framebuffer allocation, no growth beyond the first hundreds."""
    session = await client.start_session(await client.create_ticket(**CALLER))
    assert session.code is not None
    async with agent_for(relay, session.code) as agent:
        await agent.consent_prompt()
        await agent.allow(Rights.VIEW)
        await session.wait_phase(Phase.VIEWING, timeout=30)
        tiles = [tile(i, 16, 16) for i in range(8)]
        total, window = 3000, 4
        snapshot_at = 500
        tracemalloc.start()
        try:
            before = 0
            for frame_id in range(1, total + 1):
                # pace like the agent: at most `window` frames not yet acknowledged
                await agent.wait(lambda f=frame_id: agent.ack_count >= f - window, timeout=30)
                await agent.send(zlib_frame(frame_id, tiles[frame_id % 8], x=(frame_id * 16) % 304))
                if frame_id == snapshot_at:
                    await session.wait_frames(snapshot_at, timeout=30)
                    gc.collect()
                    before = console_bytes()
                    agent.events.clear()
            await session.wait_frames(total, timeout=30)
            gc.collect()
            after = console_bytes()
        finally:
            tracemalloc.stop()
        assert session.stats.frames == total and session.framebuffer.allocations == 1
        assert session.last_frame_id == total
        # growth over 2,500 frames stays under 256 KiB: the console keeps nothing per frame
        assert after - before < 256 * 1024, (before, after)
        # what the protocol keeps for a resume is its own, bounded buffer
        assert session.conn._retained_bytes <= RETRANSMIT_BUFFER_BYTES
        snap = session.stats.snapshot()
        assert snap.codec == "ZLIB_BGRA" and snap.frames == total
        await session.end()


def totp_now(uri: str) -> str:
    """The current code for an otpauth:// URI, as the consultant's authenticator shows it."""
    import base64
    from urllib.parse import parse_qs, urlsplit

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.twofactor.totp import TOTP

    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, 6, hashes.SHA1(), 30, enforce_key_length=False)
    return totp.generate(int(time.time())).decode()


async def test_consultant_with_totp_needs_the_code(relay: RelayProcess) -> None:
    added = relay.add_consultant("piotr", "Piotr Wiśniewski", "another good password", "--totp")
    uri = next(
        line.split(" ", 1)[1] for line in added.stdout.splitlines() if line.startswith("totp ")
    )
    async with ConsoleClient(relay.url) as c:
        with pytest.raises(LoginFailed) as refused:
            await c.login("piotr", "another good password")
        assert refused.value.code == "totp_required" and "authenticator" in str(refused.value)
        login = await c.login("piotr", "another good password", totp=totp_now(uri))
        assert login.display_name == "Piotr Wiśniewski"


async def test_outside_business_hours_the_relay_says_so(tmp_path: Path) -> None:
    import datetime
    from zoneinfo import ZoneInfo

    from tests.console.conftest import TEST_LIMITS
    from tests.support.relay import start_relay

    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    today = datetime.datetime.now(ZoneInfo("Europe/Warsaw")).weekday()
    closed = start_relay(
        tmp_path / "relay", config={**TEST_LIMITS, "hours": f"{days[(today + 3) % 7]} 08:00-18:00"}
    )
    try:
        async with ConsoleClient(closed.url) as c:
            await c.login(closed.username, closed.password)
            ticket = await c.create_ticket(**CALLER)  # phone support goes on: tickets are fine
            with pytest.raises(SessionRefused) as refused:
                await c.start_session(ticket)
            assert refused.value.code == "OUTSIDE_HOURS" and str(refused.value)
    finally:
        closed.stop()


async def test_pixels_that_do_not_decode_end_the_session_cleanly(
    relay: RelayProcess, client: ConsoleClient
) -> None:
    session = await client.start_session(await client.create_ticket(**CALLER))
    assert session.code is not None
    async with agent_for(relay, session.code) as agent:
        await agent.consent_prompt()
        await agent.allow(Rights.VIEW)
        await session.wait_phase(Phase.VIEWING, timeout=30)
        bomb = zlib.compress(b"\0" * (64 * 64 * 4 * 100))  # inflates far past its region
        region = Region(x=0, y=0, width=64, height=64, encoding=Encoding.ZLIB_BGRA, data=bomb)
        await agent.send(
            Frame(frame_id=1, captured_at_ns=0, width=320, height=200, regions=(region,))
        )
        ended = await agent.ended()
        assert (ended.by, ended.reason) == (Party.CONSOLE, EndReason.PROTOCOL_ERROR)
        assert "wrong number of bytes" in ended.detail
    await session.wait_phase(Phase.ENDED, timeout=30)
    assert session.stats.frames == 0 and agent.ack_count == 0  # never shown, never acked
