"""Console figures: decode, paint, and a session through a real relay on loopback.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.console.bench

Not a test (no assertion on speed, STYLE): it prints medians for docs/console.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simplejpeg

from console.framebuffer import FrameBuffer
from protocol.messages import Encoding, Frame, Region, Rights

W, H = 1920, 1080


def bench(name: str, fn: Callable[[], object], n: int) -> None:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    print(f"{name:<58} median {statistics.median(times) * 1000:7.2f} ms")


def desktop_like() -> np.ndarray:
    """Gradients (photo-like) and a noisy block (worst case for JPEG)."""
    rng = np.random.default_rng(1)
    img = np.zeros((H, W, 4), np.uint8)
    img[..., 3] = 255
    img[:, :, 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    img[200:600, 300:1500, :3] = rng.integers(0, 256, (400, 1200, 3), dtype=np.uint8)
    return img


def decode_and_paint() -> None:
    img = desktop_like()
    jpeg = simplejpeg.encode_jpeg(img, quality=70, colorspace="BGRA")
    full = Region(x=0, y=0, width=W, height=H, encoding=Encoding.JPEG, data=jpeg)
    ztile = zlib.compress(img[0:64, 0:64].tobytes())
    tiles = tuple(
        Region(x=64 * i, y=64 * j, width=64, height=64, encoding=Encoding.ZLIB_BGRA, data=ztile)
        for i in range(10)
        for j in range(5)
    )
    lossless = zlib.compress(img.tobytes(), 1)
    zfull = Region(x=0, y=0, width=W, height=H, encoding=Encoding.ZLIB_BGRA, data=lossless)

    def frame(*regions: Region) -> Frame:
        return Frame(frame_id=1, captured_at_ns=0, width=W, height=H, regions=regions)

    fb = FrameBuffer()
    bench(
        f"apply a full 1080p JPEG q70 frame ({len(jpeg) // 1024} KiB)",
        lambda: fb.apply(frame(full)),
        50,
    )
    bench("apply 50 lossless 64x64 tiles", lambda: fb.apply(frame(*tiles)), 200)
    bench(
        f"apply a full 1080p lossless frame ({len(lossless) // 1024} KiB)",
        lambda: fb.apply(frame(zfull)),
        20,
    )

    from PySide6.QtWidgets import QApplication

    from console.api import RelayApi, Ticket
    from console.app.viewer import Viewer
    from console.session import ConsoleSession

    app = QApplication.instance() or QApplication([])
    ticket = Ticket(
        id="HD-1", title="t", caller_name="", company="", phone="", problem="", status="open"
    )
    session = ConsoleSession(RelayApi("http://127.0.0.1:1"), ticket, consultant="bench")
    session.framebuffer = fb
    viewer = Viewer()
    viewer.attach(session)
    viewer.resize(1280, 800)
    viewer.show()
    app.processEvents()
    bench("render 1080p scaled into a 1280x800 viewer (grab)", viewer.grab, 30)
    viewer.set_scaled(False)
    bench("render 1080p at 1:1 (grab)", viewer.grab, 30)
    viewer.close()


async def through_relay() -> None:
    from console.client import ConsoleClient
    from console.session import Phase
    from tests.console.conftest import TEST_LIMITS
    from tests.console.peer import ScriptedAgent
    from tests.support.relay import start_relay

    data = Path(tempfile.mkdtemp(prefix="zgoda-console-bench-"))
    relay = start_relay(data / "relay", config=TEST_LIMITS)
    try:
        async with ConsoleClient(relay.url) as client:
            await client.login(relay.username, relay.password)
            ticket = await client.create_ticket(
                caller_name="Bench", company="", phone="600000000", problem="bench run"
            )
            session = await client.start_session(ticket)
            assert session.code is not None
            async with ScriptedAgent(
                relay.ws_agent_url, relay.pubkey, relay.org, session.code
            ) as agent:
                await agent.consent_prompt()
                await agent.allow(Rights.VIEW)
                await session.wait_phase(Phase.VIEWING, timeout=30)
                noise = np.random.default_rng(1).integers(0, 256, (64, 64, 4), dtype=np.uint8)
                data_tile = zlib.compress(noise.tobytes())
                for label, count, frames in (("one 64x64 tile", 1, 3000), ("50 tiles", 50, 300)):
                    regions = tuple(
                        Region(
                            x=64 * (k % 30),
                            y=64 * (k // 30),
                            width=64,
                            height=64,
                            encoding=Encoding.ZLIB_BGRA,
                            data=data_tile,
                        )
                        for k in range(count)
                    )
                    first, size0, base = session.stats.frames, session.stats.bytes, agent.ack_count
                    t0 = time.perf_counter()
                    for i in range(1, frames + 1):
                        await agent.wait(
                            lambda i=i, b=base: agent.ack_count - b >= i - 4, timeout=10
                        )
                        await agent.send(
                            Frame(
                                frame_id=base + i,
                                captured_at_ns=0,
                                width=W,
                                height=H,
                                regions=regions,
                            )
                        )
                    await session.wait_frames(first + frames, timeout=60)
                    dt = time.perf_counter() - t0
                    mbit = (session.stats.bytes - size0) * 8 / dt / 1e6
                    rate = f"{frames / dt:8.0f} frames/s {mbit:8.1f} Mbit/s"
                    print(f"relay, ack window 4, {label:<16} {rate}")
                rtts = []
                for _ in range(200):
                    session.stats.rtt_ms = None
                    session.conn.ping(1)
                    session._flush()
                    await session.wait_for(lambda: session.stats.rtt_ms is not None, 5)
                    assert session.stats.rtt_ms is not None
                    rtts.append(session.stats.rtt_ms)
                median = statistics.median(rtts)
                print(f"sealed ping round trip through the relay: median {median:.2f} ms")
                await session.end()
    finally:
        relay.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    decode_and_paint()
    asyncio.run(through_relay())
