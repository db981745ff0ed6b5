"""The console library and the real agent engine, end to end: relay on loopback, Xvfb screen.

The agent is `zgoda agent connect CODE` as its own process on an Xvfb display,
capturing with mss and injecting with pynput into a real Tk window
(`tests.support.targets`); the test answers its terminal prompts as the user.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtTest import QTest

from console.app.window import MainWindow
from console.client import ConsoleClient
from console.session import ConsoleSession, Phase
from protocol.messages import EndReason, MouseButton, Party
from tests.console.agent_process import AgentProcess
from tests.console.qt import QtLoop
from tests.support.relay import RelayProcess
from tests.support.targets import BLOCK_COLOURS, TargetWindow
from tests.support.xdisplay import XDisplay
from tests.support.xdisplay import xdisplay as xdisplay  # the fixture

pytestmark = pytest.mark.x11

POLISH = "Zażółć gęślą jaźń"
CALLER = {
    "caller_name": "Jan Kowalski",
    "company": "Kowalski i Syn",
    "phone": "+48 600 100 200",
    "problem": "Nie da się wpisać tekstu",
}


def block_seen(session: ConsoleSession, target: TargetWindow, name: str) -> bool:
    """The console's picture shows the block's colour at its centre (within JPEG error)."""
    x, y = target.centre(name)
    fb = session.framebuffer
    if fb.empty or x >= fb.width or y >= fb.height:
        return False
    b, g, r = (int(v) for v in fb.pixels[y, x, :3])
    er, eg, eb = BLOCK_COLOURS[name]
    return max(abs(r - er), abs(g - eg), abs(b - eb)) <= 12


async def until(check, timeout: float = 30.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.05)


async def test_console_sees_the_pc_types_clicks_hands_back_and_ends(
    relay: RelayProcess, client: ConsoleClient, xdisplay: XDisplay
) -> None:
    with TargetWindow.start(xdisplay.env) as target:
        ticket = await client.create_ticket(**CALLER)
        session = await client.start_session(ticket)
        agent = await AgentProcess.connect(relay, str(session.code), xdisplay.env)
        try:
            prompt = await agent.read_until("asks to see your screen")
            assert relay.display_name in prompt  # the name the relay attested
            await agent.read_until("[a] allow control")
            await session.wait_phase(Phase.WAITING_FOR_CONSENT, timeout=30)
            await agent.answer("a")
            await session.wait_phase(Phase.CONTROLLING, timeout=30)

            # frames reproduce the PC's screen: the target's colour blocks, where they are
            await session.wait_frames(1, timeout=30)
            await until(
                lambda: all(block_seen(session, target, n) for n in BLOCK_COLOURS),
                what="the target window's blocks in the console's picture",
            )
            assert session.layout is not None and session.layout.monitors
            assert (session.framebuffer.width, session.framebuffer.height) == (1280, 800)

            # typed text arrives in the Tk Entry; a click presses the Button
            await asyncio.to_thread(target.focus_entry)
            session.type_text(POLISH)
            await until(lambda: target.entry_text() == POLISH, what="the text in the Entry")
            x, y = target.centre("button")
            session.pointer_move(x, y)
            session.pointer_button(MouseButton.LEFT, True, x, y)
            session.pointer_button(MouseButton.LEFT, False, x, y)
            await until(lambda: target.clicks() == 1, what="the button click")

            # hand the keyboard back: the user types a password, then types 'done'
            session.hand_back()
            await session.wait_phase(Phase.HAND_BACK, timeout=30)
            await agent.read_until("type 'done'")
            frames_during = session.stats.frames
            await asyncio.to_thread(target.focus_entry)
            await agent.answer("done")
            await session.wait_phase(Phase.CONTROLLING, timeout=30)
            assert session.stats.frames == frames_during  # nothing was shown meanwhile
            await session.wait_frames(frames_during + 1, timeout=30)  # the picture comes back

            snap = session.stats.snapshot()
            assert snap.codec and snap.frames > 0
            await session.end("fixed, thank you")
            await agent.read_until("Session ended")  # what the user reads on the PC
            assert await agent.wait() == 0, agent.lines[-10:]
        finally:
            await agent.stop()
    assert session.ended is not None
    assert (session.ended.by, session.ended.reason) == (Party.CONSOLE, EndReason.CONSULTANT_ENDED)
    kinds = " ".join(str(e.get("kind")) for e in await client.history(ticket.id)).upper()
    assert "GRANTED" in kinds and "HAND_BACK" in kinds and "ENDED" in kinds, kinds


async def test_user_denies_on_the_real_agent(
    relay: RelayProcess, client: ConsoleClient, xdisplay: XDisplay
) -> None:
    session = await client.start_session(await client.create_ticket(**CALLER))
    agent = await AgentProcess.connect(relay, str(session.code), xdisplay.env)
    try:
        await agent.read_until("[d] deny")
        await agent.answer("d")
        await session.wait_phase(Phase.ENDED, timeout=30)
        assert session.ended is not None and session.ended.reason is EndReason.DENIED
        assert session.framebuffer.empty  # not one pixel before consent
        await agent.wait()
    finally:
        await agent.stop()
        await session.close()
    _ = np  # numpy is what the framebuffer is made of


def test_desktop_app_shows_the_real_screen_and_types_into_it(
    qloop: QtLoop, relay: RelayProcess, xdisplay: XDisplay, tmp_path: Path
) -> None:
    """The app (offscreen) against the real agent: viewer pixels and viewer keystrokes."""
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.show()

    async def scenario(target: TargetWindow) -> None:
        assert await window.log_in(relay.url, relay.username, relay.password)
        ticket = await window.register_ticket(dict(CALLER), start=True)
        assert ticket is not None
        panel = window.code_panel
        await until(lambda: panel.code_label.text()[:1].isdigit(), what="the code")
        agent = await AgentProcess.connect(relay, panel.code_label.text(), xdisplay.env)
        try:
            await agent.read_until("[a] allow control")
            await agent.answer("a")
            await until(lambda: window.session_stack.currentWidget() is window.viewer_area)
            session = window.session
            assert session is not None
            await until(
                lambda: all(block_seen(session, target, n) for n in BLOCK_COLOURS),
                what="the blocks in the framebuffer",
            )
            await asyncio.sleep(0.1)  # one paint
            image = window.viewer.grab().toImage()
            rect, fb = window.viewer.image_rect(), session.framebuffer
            for name, (r, g, b) in BLOCK_COLOURS.items():
                x, y = target.centre(name)
                px = int(rect.x() + (x + 0.5) * rect.width() / fb.width)
                py = int(rect.y() + (y + 0.5) * rect.height() / fb.height)
                shown = image.pixelColor(px, py)
                assert (
                    max(abs(shown.red() - r), abs(shown.green() - g), abs(shown.blue() - b)) <= 16
                ), name

            # a click on the Entry in the viewer focuses it on the PC; keys follow
            ex, ey = target.centre("entry")
            viewer = window.viewer
            point = QPoint(
                int(rect.x() + (ex + 0.5) * rect.width() / fb.width),
                int(rect.y() + (ey + 0.5) * rect.height() / fb.height),
            )
            QTest.mouseClick(
                viewer, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point
            )
            await asyncio.to_thread(target.focus_entry)
            QTest.keyClicks(viewer, "Hello 42")
            await until(lambda: target.entry_text() == "Hello 42", what="keys typed in the viewer")
            QTest.keyClick(viewer, Qt.Key.Key_Backspace)
            await until(lambda: target.entry_text() == "Hello 4", what="backspace")

            window.end_action.trigger()
            await agent.read_until("Session ended")
            assert await agent.wait() == 0
        finally:
            await agent.stop()

    try:
        with TargetWindow.start(xdisplay.env) as target:
            qloop.run(scenario(target), timeout=90)
    finally:
        window.close()
        qloop.run(window.shutdown())
        window.deleteLater()
