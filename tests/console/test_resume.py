"""A dropped link between console and relay: the console reconnects and resumes the session."""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from console.client import ConsoleClient
from console.session import ConsoleSession, Phase, PhaseChanged, Update, describe_end
from protocol.messages import Encoding, EndReason, Frame, Region, Rights, TypeText
from tests.console.conftest import TEST_LIMITS
from tests.console.peer import ScriptedAgent
from tests.console.proxy import CuttableProxy
from tests.support.relay import RelayProcess, start_relay


def frame(frame_id: int, value: int) -> Frame:
    pixels = np.full((16, 16, 4), value, dtype=np.uint8)
    region = Region(
        x=0,
        y=0,
        width=16,
        height=16,
        encoding=Encoding.ZLIB_BGRA,
        data=zlib.compress(pixels.tobytes()),
    )
    return Frame(
        frame_id=frame_id,
        captured_at_ns=time.monotonic_ns(),
        width=64,
        height=64,
        regions=(region,),
    )


async def test_console_link_drops_and_the_same_session_resumes(relay: RelayProcess) -> None:
    target = urlsplit(relay.url)
    assert target.hostname is not None and target.port is not None
    async with (
        CuttableProxy(target.hostname, target.port) as proxy,
        ConsoleClient(proxy.url) as client,
    ):
        await client.login(relay.username, relay.password)
        ticket = await client.create_ticket(
            caller_name="Jan Kowalski", company="", phone="600100200", problem="Wi-Fi pada"
        )
        session = await client.start_session(ticket)
        phases: list[Phase] = []

        def note(update: Update) -> None:
            if isinstance(update, PhaseChanged):
                phases.append(update.phase)

        session.add_listener(note)
        assert session.code is not None
        async with ScriptedAgent(
            relay.ws_agent_url, relay.pubkey, relay.org, session.code
        ) as agent:
            await agent.consent_prompt()
            await agent.allow(Rights.CONTROL)
            await session.wait_phase(Phase.CONTROLLING, timeout=30)
            await agent.send(frame(1, 10))
            await session.wait_frames(1, timeout=30)
            assert session.conn.resume_token  # the relay offers resume

            await proxy.cut()  # the consultant's network drops
            await session.wait_phase(Phase.RECONNECTING, timeout=30)
            assert overlay_text(session).startswith("The link to the relay dropped")
            await agent.send(frame(2, 200))  # sent while the console is away
            await session.wait_phase(Phase.CONTROLLING, timeout=30)
            await session.wait_frames(2, timeout=30)
            assert int(session.framebuffer.pixels[5, 5, 0]) == 200  # nothing was lost
            assert session.resumed == 1 and proxy.connections >= 2
            session.type_text("still here")
            await agent.wait(lambda: agent.of(TypeText) == [TypeText(text="still here")])
            await session.end()
    assert Phase.RECONNECTING in phases and phases[-1] is Phase.ENDED


async def test_without_resume_a_dropped_link_ends_the_session_with_a_reason(
    tmp_path: Path,
) -> None:
    relay = start_relay(tmp_path / "relay", config={**TEST_LIMITS, "resume_grace": 0})
    target = urlsplit(relay.url)
    assert target.hostname is not None and target.port is not None
    try:
        async with (
            CuttableProxy(target.hostname, target.port) as proxy,
            ConsoleClient(proxy.url) as client,
        ):
            session = await open_session(client, relay)
            async with agent_for(relay, session) as agent:
                await agent.consent_prompt()
                await agent.allow(Rights.VIEW)
                await session.wait_phase(Phase.VIEWING, timeout=30)
                assert not session.conn.resume_token  # this relay offers no resume
                await proxy.cut()
                await session.wait_phase(Phase.ENDED, timeout=30)
                assert session.ended is not None
                assert session.ended.reason is EndReason.PEER_LOST
                assert "link dropped" in describe_end(session.ended)
                await agent.ended()  # the relay tells the PC the consultant left
    finally:
        relay.stop()


async def test_network_back_after_the_grace_period_is_told_the_session_is_over(
    tmp_path: Path,
) -> None:
    relay = start_relay(tmp_path / "relay", config={**TEST_LIMITS, "resume_grace": 1.5})
    target = urlsplit(relay.url)
    assert target.hostname is not None and target.port is not None
    try:
        async with (
            CuttableProxy(target.hostname, target.port) as proxy,
            ConsoleClient(proxy.url) as client,
        ):
            session = await open_session(client, relay)
            async with agent_for(relay, session) as agent:
                await agent.consent_prompt()
                await agent.allow(Rights.VIEW)
                await session.wait_phase(Phase.VIEWING, timeout=30)
                await proxy.cut(stay_down=True)
                await session.wait_phase(Phase.RECONNECTING, timeout=30)
                await agent.ended()  # the relay's grace ran out: it ended the session
                await proxy.reopen()  # the network comes back, too late
                await session.wait_phase(Phase.ENDED, timeout=30)
                assert session.ended is not None
                # The console knows the relay's grace (SessionOpened says it): it gives up
                # when the grace runs out, or, if the network is back first, the relay
                # refuses the late resume. Either way the session is over and says so.
                if session.ended.reason is EndReason.RELAY_REFUSED:
                    assert "cannot be resumed" in session.ended.detail
                else:
                    assert session.ended.reason is EndReason.PEER_LOST
                    assert "link" in describe_end(session.ended)
    finally:
        relay.stop()


async def test_the_pcs_link_dropping_is_shown_then_ends_after_the_grace(tmp_path: Path) -> None:
    relay = start_relay(tmp_path / "relay", config={**TEST_LIMITS, "resume_grace": 1.5})
    try:
        async with ConsoleClient(relay.url) as client:
            session = await open_session(client, relay)
            async with agent_for(relay, session) as agent:
                await agent.consent_prompt()
                await agent.allow(Rights.VIEW)
                await session.wait_phase(Phase.VIEWING, timeout=30)
                agent.drop()
            # the agent's link broke without an End: the relay holds the session
            await session.wait_for(lambda: session.peer_away, timeout=30)
            assert "PC lost its connection" in overlay_text(session)
            await session.wait_phase(Phase.ENDED, timeout=30)
            assert session.ended is not None and session.ended.reason is EndReason.PEER_LOST
    finally:
        relay.stop()


async def open_session(client: ConsoleClient, relay: RelayProcess) -> ConsoleSession:
    await client.login(relay.username, relay.password)
    ticket = await client.create_ticket(
        caller_name="Jan Kowalski", company="", phone="600100200", problem="Wi-Fi pada"
    )
    return await client.start_session(ticket)


def agent_for(relay: RelayProcess, session: ConsoleSession) -> ScriptedAgent:
    assert session.code is not None
    return ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, session.code)


def overlay_text(session: ConsoleSession) -> str:
    """What the app's viewer shows over the picture for this state."""
    from console.app.viewer import overlay_for

    overlay = overlay_for(session)
    return overlay[0] if overlay else ""
