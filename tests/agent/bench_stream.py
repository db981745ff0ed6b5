"""Measure the agent's screen pipeline and a session's frame rate (not a test).

    .venv/bin/python -m tests.agent.bench_stream

On a fresh Xvfb 1920×1080 showing a photo-like background (ImageMagick plasma) and
the Tk target window: per-frame costs of grab, changed-tile detection and encoding
(median of 40), then a view-only session through a real relay on loopback with a
constantly blinking 120×120 block, acknowledged by a headless consultant: frames per
second, bytes per frame and the send→ack round trip. Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.frontend import ConsentAnswer
from agent.platform.x11 import X11Capture
from agent.runner import SessionRunner
from agent.screen import FrameEncoder, TileDiff
from protocol.messages import Frame, Rights
from tests.agent.conftest import TEST_LIMITS, config_for
from tests.agent.consultant import Consultant
from tests.agent.scripted_ui import ScriptedUI
from tests.support.relay import start_relay
from tests.support.targets import TargetWindow
from tests.support.xdisplay import start_display

WIDTH, HEIGHT = 1920, 1080
RUNS = 40
SESSION_SECONDS = 5.0
WALLPAPER = """
import sys, tkinter as tk
root = tk.Tk(); root.attributes("-type", "desktop"); root.geometry("+0+0")
image = tk.PhotoImage(file=sys.argv[1]); tk.Label(root, image=image, bd=0).pack()
root.mainloop()
"""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def pipeline(display: str) -> list[tuple[str, str]]:
    capture = X11Capture(display)
    try:
        monitor = capture.monitors()[1]
        encoder = FrameEncoder()
        diff = TileDiff(monitor.width, monitor.height)
        grab, detect_full, encode_full, detect_small, sizes = [], [], [], [], []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            raw = capture.grab(monitor)
            t1 = time.perf_counter()
            bgra = np.frombuffer(raw, np.uint8).reshape(monitor.height, monitor.width, 4)
            pixels = bgra.view(np.uint32).reshape(monitor.height, monitor.width)
            diff.reset()
            rects = diff.changed(pixels)
            t2 = time.perf_counter()
            regions = encoder.encode(bgra, rects)
            t3 = time.perf_counter()
            changed = pixels.copy()
            changed[500:520, 900:1000] ^= 0x00FFFFFF  # a small change: a caret, a tooltip
            t4 = time.perf_counter()
            small = diff.changed(changed)
            t5 = time.perf_counter()
            assert len(small) == 2
            grab.append(t1 - t0)
            detect_full.append(t2 - t1)
            encode_full.append(t3 - t2)
            detect_small.append(t5 - t4)
            sizes.append(sum(len(r.data) for r in regions))
    finally:
        capture.close()
    return [
        ("grab 1920×1080 (mss, MIT-SHM, BGRA)", f"{median_ms(grab):.1f} ms"),
        ("changed-tile detection, no previous frame", f"{median_ms(detect_full):.1f} ms"),
        ("changed-tile detection, small change", f"{median_ms(detect_small):.1f} ms"),
        ("encode full frame (SOLID/JPEG q70 regions)", f"{median_ms(encode_full):.1f} ms"),
        ("full frame size", f"{statistics.median(sizes) / 1024:.0f} KiB"),
    ]


async def session(display_env: dict[str, str], target: TargetWindow) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        relay = start_relay(Path(tmp) / "relay", config=TEST_LIMITS)
        consultant = Consultant(relay, rights=Rights.VIEW)
        runner: SessionRunner | None = None
        try:
            code = await consultant.open()
            runner = SessionRunner(config_for(relay), code, ScriptedUI(ConsentAnswer.VIEW_ONLY))
            runner.start()
            await consultant.wait_for(Frame)
            target.animate()
            start_frames, start_bytes = runner.stats.frames_sent, runner.stats.frame_bytes_sent
            rtts = []
            deadline = time.monotonic() + SESSION_SECONDS
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                if runner._pacer.round_trip is not None:
                    rtts.append(runner._pacer.round_trip)
            frames = runner.stats.frames_sent - start_frames
            sent = runner.stats.frame_bytes_sent - start_bytes
        finally:
            if runner is not None:
                runner.end()
                await asyncio.to_thread(runner.wait, 10)
            await consultant.close()
            relay.stop()
    return [
        ("session, blinking block: frames/s (cap 30)", f"{frames / SESSION_SECONDS:.1f}"),
        ("session, bytes per frame", f"{sent / max(frames, 1) / 1024:.1f} KiB"),
        ("session, frame sent → ack (median)", f"{median_ms(rtts):.1f} ms"),
    ]


def main() -> None:
    display = start_display(screen=f"{WIDTH}x{HEIGHT}x24")
    os.environ["DISPLAY"] = display.name  # the engine opens the display from the environment
    try:
        with tempfile.TemporaryDirectory() as tmp:
            background = Path(tmp) / "desk.png"
            subprocess.run(
                [
                    "convert",
                    "-seed",
                    "7",
                    "-size",
                    f"{WIDTH}x{HEIGHT}",
                    "plasma:fractal",
                    str(background),
                ],
                check=True,
                timeout=60,
            )
            wallpaper = subprocess.Popen(
                [sys.executable, "-c", WALLPAPER, str(background)], env=display.env
            )
            time.sleep(1.0)  # Tk paints a 1080p PNG well within this
            try:
                with TargetWindow.start(display.env) as target:
                    rows = pipeline(display.name)
                    rows += asyncio.run(session(display.env, target))
            finally:
                wallpaper.terminate()
                wallpaper.wait(5)
    finally:
        display.stop()
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
