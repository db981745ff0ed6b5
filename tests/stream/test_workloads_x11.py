"""The benchmark's workloads as correctness regressions (not speed), on the real path.

A 1920×1080 Xvfb plays the workloads of `bench.stream` (typing, scrolling, a
full-screen pan); the real agent engine streams them through a real relay
process to the console client library. Once the screen is still, the console's
framebuffer must equal the screen bit for bit, whatever codecs carried it. A
hand-back must still withhold every frame, refinements included, until the
user's Done. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import mss
import numpy as np
import numpy.typing as npt
import pytest

from agent.frontend import ConsentAnswer
from agent.runner import SessionRunner
from bench.stream import Workload, make_photo
from console.client import ConsoleClient
from console.session import ConsoleSession, Phase
from protocol.messages import Encoding
from tests.agent.conftest import TEST_LIMITS, config_for
from tests.agent.scripted_ui import ScriptedUI
from tests.support.relay import RelayProcess, start_relay
from tests.support.xdisplay import XDisplay, start_display

pytestmark = pytest.mark.x11
WAIT = 20.0
PLAY_SECONDS = 1.5


@pytest.fixture(scope="module")
def screen() -> Iterator[XDisplay]:
    display = start_display(window_manager=False, screen="1920x1080x24")
    try:
        yield display
    finally:
        display.stop()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    make_photo(path)
    return path


@pytest.fixture(scope="module")
def stream_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("relay") / "data", config=TEST_LIMITS)
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Live:
    session: ConsoleSession
    runner: SessionRunner
    ui: ScriptedUI


@pytest.fixture
def consent() -> ConsentAnswer:
    """What the scripted user answers; a test parametrizes it to override."""
    return ConsentAnswer.VIEW_ONLY


@pytest.fixture
async def live(
    screen: XDisplay,
    stream_relay: RelayProcess,
    monkeypatch: pytest.MonkeyPatch,
    consent: ConsentAnswer,
) -> AsyncIterator[Live]:
    monkeypatch.setenv("DISPLAY", screen.name)  # the engine opens the display from here
    async with ConsoleClient(stream_relay.url) as client:
        await client.login(stream_relay.username, stream_relay.password)
        ticket = await client.create_ticket(
            caller_name="Stream", company="", phone="600000000", problem="stream workloads"
        )
        session = await client.start_session(ticket)
        assert session.code is not None
        ui = ScriptedUI(consent)
        runner = SessionRunner(config_for(stream_relay), session.code, ui, end_hotkey=None)
        runner.start()
        try:
            phase = Phase.VIEWING if consent is ConsentAnswer.VIEW_ONLY else Phase.CONTROLLING
            await session.wait_phase(phase, timeout=WAIT)
            await session.wait_frames(1, timeout=WAIT)
            yield Live(session, runner, ui)
        finally:
            ui.done.set()  # a hand-back left open would hold the end
            runner.end()
            assert await asyncio.to_thread(runner.wait, WAIT) is not None
            await session.close()


def grab(display: XDisplay) -> npt.NDArray[np.uint8]:
    with mss.MSS(display=display.name) as shot:
        return np.array(shot.grab(shot.monitors[1]), dtype=np.uint8)


async def becomes_exact(live: Live, display: XDisplay, timeout: float = WAIT) -> None:
    """Wait (bounded) until the console's framebuffer equals the still screen in RGB."""
    expected = grab(display)
    deadline = time.monotonic() + timeout
    fb = live.session.framebuffer
    while time.monotonic() < deadline:
        if fb.pixels.shape == expected.shape and np.array_equal(
            fb.pixels[:, :, :3], expected[:, :, :3]
        ):
            return
        await asyncio.sleep(0.05)
    wrong = int((fb.pixels[:, :, :3] != expected[:, :, :3]).any(axis=2).sum())
    raise AssertionError(f"the console's picture still differs in {wrong} pixels")


async def play(mode: str, display: XDisplay, photo: Path) -> Workload:
    load = await asyncio.to_thread(Workload, mode, PLAY_SECONDS, display.env, photo)
    await asyncio.to_thread(load.go)
    await asyncio.to_thread(load.still, WAIT)
    return load


@pytest.mark.parametrize("mode", ["typing", "scrolling", "fullscreen"])
async def test_the_console_shows_the_screen_exactly_once_it_is_still(
    live: Live, screen: XDisplay, photo: Path, mode: str
) -> None:
    load = await play(mode, screen, photo)
    try:
        assert load.changes > 0
        await becomes_exact(live, screen)
        assert live.runner.stats.frames_sent > 1
        if mode != "typing":  # large changes travel lossy first, then lossless
            assert Encoding.ZLIB_BGRA in live.session.framebuffer.encodings
    finally:
        await asyncio.to_thread(load.stop)


@pytest.mark.parametrize("consent", [ConsentAnswer.ALLOW_CONTROL])
async def test_a_hand_back_withholds_every_frame_until_done_then_the_picture_is_exact(
    live: Live, screen: XDisplay, photo: Path
) -> None:
    live.session.hand_back()
    await asyncio.to_thread(live.ui.hand_back_shown.wait, WAIT)
    await live.session.wait_for(lambda: live.session.hand_back_by is not None, WAIT)
    frames = live.session.stats.frames
    load = await play("scrolling", screen, photo)  # the user's screen changes a lot
    try:
        await asyncio.sleep(0.5)  # refinement would have gone out by now
        assert live.session.stats.frames == frames
        live.ui.done.set()
        await live.session.wait_for(lambda: live.session.hand_back_by is None, WAIT)
        await becomes_exact(live, screen)
    finally:
        await asyncio.to_thread(load.stop)
