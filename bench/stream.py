"""Streaming benchmark: zgoda against x0vncserver and x11vnc on the same screen.

    .venv/bin/python -m bench.stream [--seconds 5] [--write FILE]
        [--systems zgoda,x0vncserver,x11vnc] [--workloads idle,typing,scrolling,fullscreen]
        [--link MBIT,MS]   # the agent / VNC server behind an emulated slow link
        [--tun-link MBIT,MS]   # the same in the kernel's packet path (root; bench.tunlink)

One Xvfb display at 1920×1080 (no window manager) shows scripted workloads, each
a full-screen Tk window driven by its own timer (so nothing in this process
paces the screen): `idle` (a static page of text), `typing` (one character every
100 ms into a text widget, terminal style), `scrolling` (a long document scrolled
one line every 16.7 ms: 60 changes a second) and `fullscreen` (a photo panning
16 px every 33 ms: the whole screen changes 30 times a second, like a video).

Systems, read in turn on the same display and workloads:
- zgoda: the real agent engine (`SessionRunner`, in its own process,
  `bench.stream_agent`, as on a real PC) → a real relay process → the console
  client library (`ConsoleSession`, on this process's main thread) on loopback;
- x0vncserver and x11vnc read by `bench.rfb` with Tight + JPEG quality 6 and
  with lossless Tight.

Per workload and system, over a window of `--seconds` while the workload plays:
- fps: zgoda frames applied per second / VNC FramebufferUpdates per second;
- KB/s: bytes received by the viewer (zgoda: sealed WebSocket messages);
- agent/server CPU and console/viewer CPU in % of one core (zgoda: the agent
  process from /proc, ended threads included, minus the benchmark's sampling
  hook; the console: this process's main thread; VNC: the server process);
- latency p50/p99 (zgoda only): capture timestamp → frame decoded in the
  console; RFB carries no capture time, so VNC shows "n/a";
- PSNR: zgoda, of the console framebuffer against the very frame the agent
  captured (sampled); all systems, "PSNR still": of the viewer's framebuffer
  against the screen 100 ms after the workload stopped (∞ if already exact);
- exact: seconds from the workload's last change to the viewer's framebuffer
  equal to the screen bit for bit (RGB), watched for 3 s ("never" if not).

Every run is bounded: each wait has a timeout and the whole run takes a few
minutes. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import queue
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.rfb import RfbClient
from bench.stream_agent import SAMPLE_EVERY
from bench.tunlink import TunLink, why_no_tunlink

WIDTH, HEIGHT = 1920, 1080

SAMPLE_WAIT_SECONDS = 0.5
"""How long the PSNR check waits for the agent's copy of a sampled frame (its
writer thread may be a few milliseconds behind the frame; a sample it skipped
never comes)."""
WORKLOADS = ("idle", "typing", "scrolling", "fullscreen")
EXACT_WATCH_SECONDS = 3.0
READY_TIMEOUT = 30.0
TICK = os.sysconf("SC_CLK_TCK")
Pixels = npt.NDArray[np.uint8]

WORKLOAD_SCRIPT = r"""
import sys, time, tkinter as tk
mode, duration, photo = sys.argv[1], float(sys.argv[2]), sys.argv[3]
root = tk.Tk()
root.overrideredirect(True)
root.geometry("1920x1080+0+0")
# no pointer sprite: Xvfb draws it in software, so servers that scrape the screen
# would see it in the pixels and a screenshot would not (zgoda sends it apart)
root.configure(cursor="none")
WORDS = ("the quick brown fox jumps over the lazy dog while the helpdesk consultant "
         "reads the error message aloud and the printer queue is cleared ").split()
changes = 0
if mode == "fullscreen":
    base = tk.PhotoImage(file=photo)
    frames = []
    for k in range(30):
        f = tk.PhotoImage(width=1920, height=1080)
        f.tk.call(f, "copy", base, "-from", 16 * k, 0, 16 * k + 1920, 1080)
        frames.append(f)
    label = tk.Label(root, image=frames[0], bd=0, cursor="none")
    label.pack()
else:
    text = tk.Text(root, font=("DejaVu Sans Mono", 11), bg="#101418", fg="#d8dee9",
                   insertwidth=0, bd=0, highlightthickness=0, cursor="none")
    text.pack(fill="both", expand=True)
    lines = 3000 if mode == "scrolling" else 20
    for i in range(lines):
        row = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12 + i % 9))
        text.insert("end", f"{i:5d}  {row}\n")
root.update()

def later(period_ms, k, end):
    # on an absolute schedule: a slow redraw does not stretch the period
    due = started + (k + 1) * period_ms / 1000
    root.after(max(1, int((due - time.monotonic()) * 1000)), step, k + 1, end)

def step(k, end):
    global changes
    if time.monotonic() >= end:
        root.update_idletasks()
        print("still", time.time_ns(), changes, flush=True)
        return
    if mode == "fullscreen":
        label.configure(image=frames[k % 30])
        later(1000 / 30, k, end)
    elif mode == "typing":
        ch = "the quick brown fox jumps over the lazy dog. "[k % 45]
        text.insert("end", ch if (k + 1) % 70 else ch + "\n")
        text.see("end")
        later(100, k, end)
    elif mode == "scrolling":
        text.yview_scroll(1, "units")
        later(1000 / 60, k, end)
    else:
        root.after(100, step, k + 1, end)
        return
    changes += 1

def go(*_):
    global started
    sys.stdin.readline()
    root.deletefilehandler(sys.stdin)
    print("start", time.time_ns(), flush=True)
    started = time.monotonic()
    step(0, started + duration)

root.tk.createfilehandler(sys.stdin, tk.READABLE, go)
print("ready", flush=True)
root.mainloop()
"""


# ------------------------------------------------------------------ helpers


def thread_cpu(tid: int) -> float:
    """CPU seconds (user + system) of one thread of this process."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def psnr(a: Pixels, b: Pixels) -> float:
    """PSNR in dB of the RGB channels of two BGRA/BGRX images (inf when equal)."""
    diff = a[:, :, :3].astype(np.int16) - b[:, :, :3]
    mse = float(np.mean(np.square(diff, dtype=np.int32)))
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


def grab(display: str) -> Pixels:
    import mss

    with mss.MSS(display=display) as shot:
        return np.array(shot.grab(shot.monitors[1]), dtype=np.uint8)


def rgb_equal(a: Pixels, b: Pixels) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a[:, :, :3], b[:, :, :3]))


class Workload:
    """One workload process on the display; `go()` starts it, `still()` waits for its end."""

    def __init__(self, mode: str, seconds: float, env: dict[str, str], photo: Path) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKLOAD_SCRIPT, mode, str(seconds), str(photo)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.changes = 0
        self._line("ready", READY_TIMEOUT)

    def _line(self, word: str, timeout: float) -> list[str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                parts = line.split()
                if parts and parts[0] == word:
                    return parts
        raise RuntimeError(f"workload {self.mode} never said {word!r}")

    def go(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self._line("start", 10)[1])

    def still(self, timeout: float) -> int:
        parts = self._line("still", timeout)
        self.changes = int(parts[2])
        return int(parts[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@dataclass
class Result:
    system: str
    workload: str
    fps: float
    kb_per_s: float
    server_cpu: float
    console_cpu: float
    latency_p50: float | None = None
    latency_p99: float | None = None
    psnr_frames: float | None = None
    psnr_still: float = math.nan
    exact_s: float | None = None
    changes: int = 0
    seconds: float = 1.0


# ------------------------------------------------------------------ viewers


class Viewer:
    """What the measurement loop needs from zgoda's console or the RFB client."""

    name = ""

    def counters(self) -> tuple[int, int]:
        """(frames or updates, bytes) so far."""
        raise NotImplementedError

    def pixels(self) -> Pixels:
        raise NotImplementedError

    async def pump(self, seconds: float) -> None:
        raise NotImplementedError

    def cpu(self) -> tuple[float, float]:
        """(agent or server CPU seconds, console CPU seconds) so far."""
        raise NotImplementedError

    latencies: list[float]
    frame_psnr: list[float]


class RfbViewer(Viewer):
    def __init__(
        self, name: str, server_pid: int, port: int, quality: int | None, host: str = "127.0.0.1"
    ) -> None:
        self.name = name
        self.server_pid = server_pid
        self.client = RfbClient.connect(host, port, jpeg_quality=quality)
        self.latencies, self.frame_psnr = [], []

    def counters(self) -> tuple[int, int]:
        return self.client.updates, self.client.bytes

    def pixels(self) -> Pixels:
        return self.client.pixels

    async def pump(self, seconds: float) -> None:
        self.client.pump(time.monotonic() + seconds)  # blocking: nothing else runs meanwhile

    def cpu(self) -> tuple[float, float]:
        return process_cpu(self.server_pid), time.thread_time()

    def close(self) -> None:
        self.client.close()


class ZgodaViewer(Viewer):
    """Agent engine (its own process, `bench.stream_agent`) → relay process →
    ConsoleSession (this process's main thread).

    The agent runs apart, as on a real PC: its CPU is that process's, and its
    threads do not share an interpreter lock with the console's decoding.
    """

    name = "zgoda"

    def __init__(self) -> None:
        self.latencies, self.frame_psnr = [], []
        self._bench_cpu = 0.0  # console-thread CPU spent sampling for PSNR, subtracted
        # framebuffer copies waiting for their PSNR (bounded: a slow check skips samples)
        self._checks: queue.Queue[tuple[int, Pixels] | None] = queue.Queue(maxsize=4)
        self._main_tid = threading.get_native_id()
        self.agent: subprocess.Popen[bytes] | None = None

    @property
    def measuring(self) -> bool:
        return (self.samples / "measuring").exists()

    @measuring.setter
    def measuring(self, on: bool) -> None:
        flag = self.samples / "measuring"
        if on:
            for sample in self.samples.glob("*.raw"):  # a sample left from before
                sample.unlink(missing_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    async def checked(self, timeout: float = 3.0) -> None:
        """Wait until the PSNR checks queued so far are done (at most `timeout` s),
        then drop the samples nobody will compare."""
        deadline = time.monotonic() + timeout
        while self._checks.unfinished_tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for sample in self.samples.glob("*.raw"):
            sample.unlink(missing_ok=True)

    async def open(
        self,
        tmp: Path,
        env: dict[str, str],
        link: tuple[float, float] | None = None,
        tun: TunLink | None = None,
    ) -> None:
        from console.client import ConsoleClient
        from console.session import FrameApplied, Phase
        from tests.agent.conftest import TEST_LIMITS
        from tests.support.relay import start_relay

        self.samples = tmp / "samples"
        self.samples.mkdir()
        if tun is None:
            self.relay = start_relay(tmp / "relay", config=TEST_LIMITS)
        else:  # on the host's end of the link: the agent reaches it across, the console locally
            config = {**TEST_LIMITS, "insecure": True}
            bind = ("--bind", tun.host_address)
            self.relay = start_relay(tmp / "relay", config=config, args=bind)
        self.client = ConsoleClient(self.relay.url)
        await self.client.__aenter__()
        await self.client.login(self.relay.username, self.relay.password)
        ticket = await self.client.create_ticket(
            caller_name="Bench", company="", phone="600000000", problem="stream bench"
        )
        self.session = await self.client.start_session(ticket)
        assert self.session.code is not None
        relay_url = self.relay.url
        relay_port = int(relay_url.rsplit(":", 1)[1].split("/")[0])
        self.link = SlowLink(relay_port, *link) if link else None
        if self.link is not None:  # the PC's uplink: agent ⇄ relay
            relay_url = relay_url.replace(f":{relay_port}", f":{self.link.start()}")
        agent_env = dict(env)
        agent_env.update(
            ZGODA_RELAY_URL=relay_url,
            ZGODA_RELAY_KEY=self.relay.pubkey,
            ZGODA_ORG_NAME=self.relay.org,
            ZGODA_LANGUAGE="en",
            XDG_CONFIG_HOME=str(tmp / "agent-config"),  # no stray agent.toml
        )
        command = [sys.executable, "-m", "bench.stream_agent", str(self.session.code)]
        command.append(str(self.samples))
        spawn = subprocess.Popen if tun is None else tun.popen  # the PC, behind the link
        self.agent = spawn(command, env=agent_env, stdout=subprocess.DEVNULL)
        await self.session.wait_phase(Phase.VIEWING, timeout=30)
        await self.session.wait_frames(1, timeout=30)

        def applied(update: object) -> None:
            # the sampled frames' pictures are copied here and compared on a thread of
            # their own: reading 8 MB and a PSNR on this thread delayed the acks (the
            # agent's frame window closed, every fifth frame stalled the stream)
            if not isinstance(update, FrameApplied) or update.frame_id % SAMPLE_EVERY:
                return
            if not self.measuring or self._checks.full():
                return
            t = time.thread_time()
            self._checks.put_nowait((update.frame_id, self.session.framebuffer.pixels.copy()))
            self._bench_cpu += time.thread_time() - t

        def timed(update: object) -> None:
            if isinstance(update, FrameApplied) and self.measuring:
                self.latencies.append((time.time_ns() - self.session.last_captured_at_ns) / 1e6)

        self.session.add_listener(timed)
        self.session.add_listener(applied)
        threading.Thread(target=self._check_samples, name="bench-psnr", daemon=True).start()

    def _check_samples(self) -> None:
        """PSNR of each copied framebuffer against the agent's capture of that frame,
        once the agent's writer has put it on disk (skipped if it never comes)."""
        while True:
            item = self._checks.get()
            try:
                if item is None:
                    return
                self._check(*item)
            finally:
                self._checks.task_done()

    def _check(self, frame_id: int, shown: Pixels) -> None:
        sample = self.samples / f"{frame_id}.raw"
        deadline = time.monotonic() + SAMPLE_WAIT_SECONDS
        while not sample.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        with contextlib.suppress(FileNotFoundError):
            data = sample.read_bytes()
            sample.unlink(missing_ok=True)
            if len(data) == HEIGHT * WIDTH * 4:
                capture = np.frombuffer(data, np.uint8).reshape(HEIGHT, WIDTH, 4)
                self.frame_psnr.append(psnr(shown, capture))
        # samples of earlier frames the console skipped (its queue was full) go too,
        # or they would fill the agent's MAX_PENDING and stop its sampling
        for older in self.samples.glob("*.raw"):
            with contextlib.suppress(ValueError):
                if int(older.stem) < frame_id:
                    older.unlink(missing_ok=True)

    def counters(self) -> tuple[int, int]:
        return self.session.stats.frames, self.session.stats.bytes

    def pixels(self) -> Pixels:
        return self.session.framebuffer.pixels

    async def pump(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def cpu(self) -> tuple[float, float]:
        assert self.agent is not None
        hook = 0.0
        with contextlib.suppress(FileNotFoundError, ValueError):
            hook = float((self.samples / "hook-cpu").read_text())
        agent = process_cpu(self.agent.pid) - hook
        return agent, thread_cpu(self._main_tid) - self._bench_cpu

    async def close(self) -> None:
        try:
            await self.session.end()
        finally:
            if self.agent is not None:
                try:
                    await asyncio.to_thread(self.agent.wait, 10)
                except subprocess.TimeoutExpired:
                    stop_process(self.agent)
            await self.client.close()
            self.relay.stop()
            with contextlib.suppress(queue.Full):
                self._checks.put_nowait(None)  # the checking thread ends
            if self.link is not None:
                self.link.close()


class SlowLink:
    """A TCP proxy on its own thread that behaves like a slow link (both ways).

    Each chunk leaves after the ones before it at `rate` bytes/s and arrives
    `delay` seconds later; the buffer is unbounded, like a bloated router's, so a
    sender that does not pace itself builds a queue and its latency grows.
    (`tc netem` in a network namespace would be the kernel's way; this kernel has
    no sch_netem, see docs/benchmarks.md.)
    """

    def __init__(self, upstream_port: int, rate: float, delay: float) -> None:
        self.upstream_port, self.rate, self.delay = upstream_port, rate, delay
        self.native_id = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._port = 0
        self._thread = threading.Thread(target=self._run, name="bench-slow-link", daemon=True)

    def start(self) -> int:
        """Start the proxy; return its port."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the link emulator did not start")
        return self._port

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.CancelledError, ConnectionError):
            # the emulator is shutting down: end quietly (a cancelled connection
            # callback would be logged as an error by asyncio's stream server)
            writer.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                arrive, data = await queue.get()
                await asyncio.sleep(max(0.0, arrive - loop.time()))
                if not data:
                    sink.close()
                    return
                sink.write(data)
                await sink.drain()

        task = loop.create_task(deliver())
        free_at = 0.0
        try:
            while True:
                try:
                    data = await source.read(16384)
                except ConnectionError:
                    data = b""
                free_at = max(loop.time(), free_at) + len(data) / self.rate
                queue.put_nowait((free_at + self.delay, data))
                if not data:
                    break
            await task
        except (ConnectionError, asyncio.CancelledError):
            task.cancel()


# ------------------------------------------------------------------ measuring


async def measure(
    viewer: Viewer, workload: str, seconds: float, env: dict[str, str], photo: Path
) -> Result:
    display = env["DISPLAY"]
    load = Workload(workload, seconds, env, photo)
    try:
        # let the viewer catch up with the new window (bounded), then measure
        deadline = time.monotonic() + 10
        screen = grab(display)
        while time.monotonic() < deadline and not rgb_equal(viewer.pixels(), screen):
            await viewer.pump(0.05)
        await viewer.pump(0.3)
        if isinstance(viewer, ZgodaViewer):
            viewer.latencies.clear()
            viewer.frame_psnr.clear()
            viewer.measuring = True
        frames0, bytes0 = viewer.counters()
        server0, console0 = viewer.cpu()
        t0 = time.monotonic()
        load.go()
        end = t0 + seconds
        while time.monotonic() < end:
            await viewer.pump(min(0.05, end - time.monotonic()))
        frames1, bytes1 = viewer.counters()
        server1, console1 = viewer.cpu()
        elapsed = time.monotonic() - t0
        if isinstance(viewer, ZgodaViewer):
            viewer.measuring = False
            await viewer.checked()  # the PSNR checks still queued, bounded
        still_ns = load.still(10)
        result = Result(
            system=viewer.name,
            workload=workload,
            fps=(frames1 - frames0) / elapsed,
            kb_per_s=(bytes1 - bytes0) / elapsed / 1000,
            server_cpu=100 * (server1 - server0) / elapsed,
            console_cpu=100 * (console1 - console0) / elapsed,
            changes=load.changes,
            seconds=elapsed,
        )
        if viewer.latencies:
            ordered = sorted(viewer.latencies)
            result.latency_p50 = statistics.median(ordered)
            result.latency_p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        if viewer.frame_psnr:
            result.psnr_frames = statistics.mean(viewer.frame_psnr)
        await exactness(viewer, result, display, still_ns)
        return result
    finally:
        load.stop()


async def exactness(viewer: Viewer, result: Result, display: str, still_ns: int) -> None:
    """Watch the viewer's framebuffer from the moment the screen went still (bounded).

    The screenshot is taken at once (the screen no longer changes); PSNR is taken
    at the first check 100 ms or more after the last change, unless exact sooner.
    """
    screen = grab(display)
    psnr_at = still_ns + 100_000_000
    deadline = time.monotonic() + EXACT_WATCH_SECONDS
    last = None
    while True:
        now = time.time_ns()
        counters = viewer.counters()
        if counters != last:
            last = counters
            if rgb_equal(viewer.pixels(), screen):
                # the moment of the check, not of the frame: an upper bound within ~10 ms
                result.exact_s = max(0.0, (now - still_ns) / 1e9)
                if math.isnan(result.psnr_still):
                    result.psnr_still = math.inf
                return
        if math.isnan(result.psnr_still) and now >= psnr_at:
            result.psnr_still = psnr(viewer.pixels(), screen)
        if time.monotonic() >= deadline:
            if math.isnan(result.psnr_still):
                result.psnr_still = psnr(viewer.pixels(), screen)
            return
        await viewer.pump(0.01)


def start_server(
    kind: str, display: str, port: int, env: dict[str, str], tun: TunLink | None = None
) -> subprocess.Popen[bytes]:
    """A VNC server on `display`: on loopback, or on "the PC" behind `tun`."""
    host = "127.0.0.1" if tun is None else tun.pc_address
    if kind == "x0vncserver":
        # the Debian x0vncserver is a Perl wrapper that daemonizes: run the binary itself
        cmd = ["X0tigervnc", "-display", display, "-rfbport", str(port)]
        cmd += ["-SecurityTypes", "None", "-AlwaysShared", "-interface", host]
    else:
        cmd = ["x11vnc", "-display", display, "-rfbport", str(port), "-listen", host]
        cmd += ["-nopw", "-forever", "-shared", "-quiet", "-norc"]
    spawn = subprocess.Popen if tun is None else tun.popen
    proc: subprocess.Popen[bytes] = spawn(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"{kind} did not listen on {port}")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_all(
    seconds: float,
    env: dict[str, str],
    photo: Path,
    tmp: Path,
    systems: list[str],
    workloads: list[str],
    link: tuple[float, float] | None = None,
    tun: TunLink | None = None,
) -> list[Result]:
    results: list[Result] = []

    async def each(viewer: Viewer, closing: Callable[[], Awaitable[None] | None]) -> None:
        try:
            for workload in workloads:
                result = await measure(viewer, workload, seconds, env, photo)
                print(row(result), flush=True)
                results.append(result)
        finally:
            closed = closing()
            if closed is not None:
                await closed

    if "zgoda" in systems:
        viewer = ZgodaViewer()
        await viewer.open(tmp, env, link, tun)
        await each(viewer, viewer.close)
    for kind in ("x0vncserver", "x11vnc"):
        for quality, label in ((6, "Tight+JPEG6"), (None, "Tight lossless")):
            name = f"{kind} {label}"
            if not any(s in name for s in systems):
                continue
            port = free_port()
            server = start_server(kind, env["DISPLAY"], port, env, tun)
            slow = SlowLink(port, *link) if link else None  # never with `tun`
            host = "127.0.0.1" if tun is None else tun.pc_address
            try:
                rfb = RfbViewer(name, server.pid, slow.start() if slow else port, quality, host)
                await each(rfb, rfb.close)
            finally:
                if slow is not None:
                    slow.close()
                stop_process(server)
    return results


# ------------------------------------------------------------------ report


def fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    return format(value, spec)


def row(r: Result) -> str:
    exact = "never" if r.exact_s is None else f"{r.exact_s:.2f}"
    cells = [
        r.workload,
        f"{r.changes / r.seconds:.0f}",
        r.system,
        f"{r.fps:.1f}",
        f"{r.kb_per_s:.1f}",
        f"{r.server_cpu:.0f}",
        f"{r.console_cpu:.0f}",
        fmt(r.latency_p50, ".1f"),
        fmt(r.latency_p99, ".1f"),
        fmt(r.psnr_frames, ".1f"),
        fmt(r.psnr_still, ".1f"),
        exact,
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| workload | screen changes/s | system | fps | KB/s | agent/server CPU % | console CPU % | "
    "latency p50 ms | p99 ms | PSNR frames dB | PSNR still dB | exact after s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def ratios(results: list[Result]) -> str:
    """zgoda's figures divided by each peer's, per workload (fps, bytes/s, CPU)."""
    lines = [
        "| workload | peer | fps ratio | bytes/s ratio | agent CPU ratio |",
        "|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        ours = next((r for r in results if r.system == "zgoda" and r.workload == workload), None)
        if ours is None:
            continue
        for peer in results:
            if peer.workload != workload or peer.system == "zgoda":
                continue

            def ratio(a: float, b: float) -> str:
                return "∞" if b == 0 and a > 0 else ("1" if b == 0 else f"{a / b:.2f}")

            lines.append(
                f"| {workload} | {peer.system} | {ratio(ours.fps, peer.fps)} | "
                f"{ratio(ours.kb_per_s, peer.kb_per_s)} | "
                f"{ratio(ours.server_cpu, peer.server_cpu)} |"
            )
    return "\n".join(lines)


def make_photo(path: Path) -> None:
    size = f"{WIDTH + 16 * 30}x{HEIGHT}"
    subprocess.run(
        ["convert", "-seed", "7", "-size", size, "plasma:fractal", str(path)],
        check=True,
        timeout=120,
    )


def main(argv: list[str] | None = None) -> None:
    from tests.support.xdisplay import start_display

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    parser.add_argument("--write", type=Path, help="print the Markdown to this file too")
    parser.add_argument(
        "--systems",
        default="zgoda,x0vncserver,x11vnc",
        help="comma-separated subset: zgoda, x0vncserver, x11vnc, JPEG6, lossless",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ", ".join(WORKLOADS),
    )
    parser.add_argument(
        "--link",
        help="put the agent's (and each VNC server's) side behind an emulated link, "
        "'MBIT,MS': rate in Mbit/s each way and one-way delay (e.g. 5,20: 40 ms RTT)",
    )
    parser.add_argument(
        "--tun-link",
        help="the same link in the kernel's packet path: the agent and each VNC server in a "
        "network namespace, tc tbf for the rate, a TUN delay line (root; bench.tunlink)",
    )
    parser.add_argument(
        "--pc-tcp",
        default="reno",
        help="with --tun-link: the PC's TCP congestion control, one the kernel allows in a "
        "namespace (here reno or bbr; Windows' CUBIC is not among them); 'default' keeps "
        "this machine's",
    )
    args = parser.parse_args(argv)
    if args.link and args.tun_link:
        parser.error("--link or --tun-link, not both")
    link = None
    if args.link or args.tun_link:
        mbit, ms = (float(v) for v in (args.link or args.tun_link).split(","))
        link = (mbit * 1e6 / 8, ms / 1000)
    reason = why_no_tunlink() if args.tun_link else None
    if reason:
        parser.error(f"--tun-link: {reason}")
    workloads = [w for w in args.workloads.split(",") if w in WORKLOADS]
    # a `timeout` or a kill ends through the finally blocks: no Xvfb, server or relay left
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    systems = args.systems.split(",")
    display = start_display(window_manager=False, screen=f"{WIDTH}x{HEIGHT}x24")
    os.environ["DISPLAY"] = display.name  # the agent engine opens the display from here
    tmp = Path(tempfile.mkdtemp(prefix="zgoda-stream-bench-"))
    try:
        photo = tmp / "photo.png"
        make_photo(photo)
        print(HEADER, flush=True)
        tun = None
        with contextlib.ExitStack() as stack:
            if args.tun_link and link is not None:
                congestion = "" if args.pc_tcp == "default" else args.pc_tcp
                tun = stack.enter_context(TunLink.create(*link, congestion=congestion))
                link = None  # the kernel's link instead of the proxy
            results = asyncio.run(
                run_all(args.seconds, display.env, photo, tmp, systems, workloads, link, tun)
            )
    finally:
        display.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    table = HEADER + "\n" + "\n".join(row(r) for r in results)
    report = f"{table}\n\nzgoda ÷ peer:\n\n{ratios(results)}\n"
    if tun is not None:
        report += f"\n{tun.report}\n"
    print("\n" + report)
    if args.write:
        args.write.write_text(report)


if __name__ == "__main__":
    main()
