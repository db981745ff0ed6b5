"""A dropped link between console and relay: the console reconnects and resumes the session."""

from __future__ import annotations

import time
import zlib
from urllib.parse import urlsplit

import numpy as np
import pytest

from console.client import ConsoleClient
from console.session import Phase, PhaseChanged, Update, describe_end
from protocol.messages import Encoding, EndReason, Frame, Region, Rights, TypeText
from tests.console.peer import ScriptedAgent
from tests.console.proxy import CuttableProxy
from tests.support.relay import RelayProcess


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
            if not session.conn.resume_token:
                pytest.skip("this relay offers no resume (empty SessionOpened.resume_token)")

            await proxy.cut()  # the consultant's network drops
            await session.wait_phase(Phase.RECONNECTING, timeout=30)
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
    relay: RelayProcess,
) -> None:
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
        assert session.code is not None
        async with ScriptedAgent(
            relay.ws_agent_url, relay.pubkey, relay.org, session.code
        ) as agent:
            await agent.consent_prompt()
            await agent.allow(Rights.VIEW)
            await session.wait_phase(Phase.VIEWING, timeout=30)
            if session.conn.resume_token:
                pytest.skip("this relay offers resume: see the test above")
            await proxy.cut()
            await session.wait_phase(Phase.ENDED, timeout=30)
            assert session.ended is not None and session.ended.reason is EndReason.PEER_LOST
            assert "link dropped" in describe_end(session.ended)
            await agent.ended()  # the relay tells the PC the consultant left
