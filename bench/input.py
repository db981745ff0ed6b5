"""Input latency benchmark: consultant input → event at the X server, zgoda against VNC.

    .venv/bin/python -m bench.input [--count 300] [--spacing 0.02] [--write FILE]
        [--systems xtest,injector,zgoda,x0vncserver,x11vnc]

One Xvfb display (1920×1080, no window manager) and one listener process: a
full-screen X window (python-xlib) that has the input focus, selects pointer
motion, button and key events, and writes each event with `time.monotonic_ns()`
the moment its client library hands it over (CLOCK_MONOTONIC is one clock for
every process of the machine). Every system injects into that same window:

- zgoda: the console client library (`ConsoleSession.pointer_move`,
  `pointer_button`, `key`, on this process's event loop) → a real relay process
  → the real agent engine (`SessionRunner` with a scripted *Allow control*, in its
  own process, as on a user's PC) → its injector thread → pynput → XTest (and
  XSendEvent for printable characters, as pynput types them);
- x0vncserver (the `X0tigervnc` binary) and x11vnc, driven by `bench.rfb`'s RFB
  client sending PointerEvent / KeyEvent (and reading the updates, as a viewer);
- the limits, in this process: `xtest`, python-xlib's `xtest.fake_input` + sync
  (what any injector must at least pay); `injector`, the agent's own `Injector`
  over its X11 backend without any network (what zgoda's agent pays locally).

Per system three kinds, `--count` events each, one every `--spacing` seconds on
a fixed schedule (so they never queue): `move` (to a new position each time),
`button` (left press / release, alternating, at a fixed point), `key` (letter
down / up, alternating, a…z). Latency = the listener's arrival time − the
timestamp this process took just before the send call. Each arrival is matched
to the event sent (kind, coordinates, button, keysym): lost, extra and wrong
events are counted, not timed.

The screen does not change (the window is black and the pointer invisible), so
this is the input path alone; zgoda's agent still looks at the screen when input
arrives (input wakes its capture). Bounded: every wait has a timeout; the whole
run takes about 2 minutes at the defaults. Not a test: nothing here asserts a
speed (tests/stream/test_input_x11.py checks correctness with tiny counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.rfb import RfbClient
from bench.stream import HEIGHT, READY_TIMEOUT, WIDTH, free_port, start_server, stop_process

SYSTEMS = ("xtest", "injector", "zgoda", "x0vncserver", "x11vnc")
KINDS = ("move", "button", "key")
BUTTON_AT = (960, 540)
"""Where the button events happen: the pointer is moved there first (not timed)."""
LATE_SECONDS = 2.0
"""How long after a kind's last send its last events may still arrive."""
EXTRA_GRACE = 0.1
"""After every expected event arrived, how long to wait for unexpected ones."""
MATCH_WINDOW = 8
"""An arrival is matched to the next expected event among this many (lost ones skipped)."""
REPO = Path(__file__).resolve().parents[1]

Event = tuple[str, int, int]
"""("motion", x, y), ("press" | "release", button, 0), ("keydown" | "keyup", keysym, 0)."""


# ------------------------------------------------------------------ the events


def events_for(kind: str, count: int) -> list[Event]:
    """The `count` events of one kind, as the listener must see them.

    Moves visit distinct points (never `BUTTON_AT`, never the previous point), so
    each produces exactly one MotionNotify; buttons and keys alternate down/up, so
    a count should be even (nothing stays held).

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "move":
        points: list[Event] = []
        for i in range(count):
            x = 100 + (i * 379) % 1700
            y = 100 + (i * 211) % 880
            if (x, y) == BUTTON_AT or (points and points[-1][1:] == (x, y)):
                x += 1
            points.append(("motion", x, y))
        return points
    if kind == "button":
        return [("press" if i % 2 == 0 else "release", 1, 0) for i in range(count)]
    if kind == "key":
        return [
            ("keydown" if i % 2 == 0 else "keyup", ord("a") + (i // 2) % 26, 0)
            for i in range(count)
        ]
    raise ValueError(f"unknown kind {kind!r}")


# ------------------------------------------------------------------ the listener


def listener_child() -> None:
    """The listener process: one focused full-screen window; one line per event on stdout.

    Lines: `ready`, then `KIND A B T` (see `Event`; T is monotonic ns on arrival).
    Runs until killed.
    """
    from Xlib import X, display

    d = display.Display()
    screen = d.screen()
    mask = (
        X.KeyPressMask
        | X.KeyReleaseMask
        | X.ButtonPressMask
        | X.ButtonReleaseMask
        | X.PointerMotionMask
        | X.StructureNotifyMask
    )
    window = screen.root.create_window(
        0,
        0,
        screen.width_in_pixels,
        screen.height_in_pixels,
        0,
        screen.root_depth,
        X.InputOutput,
        X.CopyFromParent,
        background_pixel=screen.black_pixel,
        override_redirect=True,
        event_mask=mask,
    )
    # an invisible pointer: Xvfb paints it in software and the screen must not change
    blank = window.create_pixmap(1, 1, 1)
    window.change_attributes(cursor=blank.create_cursor(blank, (0, 0, 0), (0, 0, 0), 0, 0))
    window.map()
    while d.next_event().type != X.MapNotify:
        pass
    # no window manager: the focus stays where it is put. pynput types printable
    # characters with XSendEvent to the focused window, XTest keys go there too.
    d.set_input_focus(window, X.RevertToPointerRoot, X.CurrentTime)
    d.sync()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    names = {X.ButtonPress: "press", X.ButtonRelease: "release"}
    keys = {X.KeyPress: "keydown", X.KeyRelease: "keyup"}
    while True:
        event = d.next_event()
        now = time.monotonic_ns()  # first thing: the arrival time
        if event.type == X.MotionNotify:
            line = f"motion {event.root_x} {event.root_y} {now}\n"
        elif event.type in names:
            line = f"{names[event.type]} {event.detail} 0 {now}\n"
        elif event.type in keys:
            level = 1 if event.state & X.ShiftMask else 0
            keysym = d.keycode_to_keysym(event.detail, level)
            line = f"{keys[event.type]} {keysym} 0 {now}\n"
        else:
            continue
        out.write(line)
        out.flush()


class Listener:
    """The parent's side of the listener process: arrivals on a queue, read by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.input", "--role", "listener"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.arrivals: queue.Queue[tuple[Event, int]] = queue.Queue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bench-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT):
            self.close()
            raise RuntimeError("the listener window did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts == ["ready"]:
                self._ready.set()
            elif len(parts) == 4:
                self.arrivals.put(((parts[0], int(parts[1]), int(parts[2])), int(parts[3])))

    def take(self) -> list[tuple[Event, int]]:
        """Every arrival so far (not waiting)."""
        taken = []
        while True:
            try:
                taken.append(self.arrivals.get_nowait())
            except queue.Empty:
                return taken

    def close(self) -> None:
        stop_process(self.proc)
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------ the senders


class Sender:
    """One system's way to send an input event; `send` returns the time taken just before."""

    name = ""

    async def open(self, env: dict[str, str], tmp: Path) -> None:
        """Start what the system needs (servers, a session)."""

    def send(self, event: Event) -> int:
        raise NotImplementedError

    async def idle(self, seconds: float) -> None:
        """Let time pass the way this system's client would (reading its link)."""
        await asyncio.sleep(max(0.0, seconds))

    async def close(self) -> None:
        """Stop what `open` started (by PID)."""


class XTestSender(Sender):
    """The limit: XTest from a local process, python-xlib, one sync per event."""

    name = "xtest (limit)"

    async def open(self, env: dict[str, str], tmp: Path) -> None:
        from Xlib import display

        self.display: Any = display.Display(env["DISPLAY"])

    def send(self, event: Event) -> int:
        from Xlib import X
        from Xlib.ext import xtest

        kind, a, b = event
        d = self.display
        if kind == "motion":
            t = time.monotonic_ns()
            xtest.fake_input(d, X.MotionNotify, x=a, y=b)
        elif kind in ("press", "release"):
            t = time.monotonic_ns()
            xtest.fake_input(d, X.ButtonPress if kind == "press" else X.ButtonRelease, a)
        else:
            keycode = d.keysym_to_keycode(a)
            t = time.monotonic_ns()
            xtest.fake_input(d, X.KeyPress if kind == "keydown" else X.KeyRelease, keycode)
        d.sync()
        return t

    async def close(self) -> None:
        self.display.close()


def input_message(event: Event, at: tuple[int, int]) -> Any:
    """The zgoda input message for an event (`at`: where a button is pressed)."""
    from protocol.messages import KeyEvent, MouseButton, PointerButton, PointerMove

    kind, a, b = event
    if kind == "motion":
        return PointerMove(x=a, y=b)
    if kind in ("press", "release"):
        return PointerButton(button=MouseButton.LEFT, down=kind == "press", x=at[0], y=at[1])
    return KeyEvent(key=chr(a), down=kind == "keydown")


class InjectorSender(Sender):
    """The agent's `Injector` and X11 backend in this process: zgoda minus the network."""

    name = "injector (local)"

    async def open(self, env: dict[str, str], tmp: Path) -> None:
        from agent.inject import Injector
        from agent.platform.base import MonitorInfo
        from agent.platform.x11 import X11Platform

        os.environ["DISPLAY"] = env["DISPLAY"]  # pynput's controllers open $DISPLAY
        self.injector = Injector(X11Platform(env["DISPLAY"]).open_input())
        self.monitor = MonitorInfo(index=0, left=0, top=0, width=WIDTH, height=HEIGHT)

    def send(self, event: Event) -> int:
        message = input_message(event, BUTTON_AT)
        t = time.monotonic_ns()
        self.injector.submit(message, self.monitor)
        return t

    async def close(self) -> None:
        await asyncio.to_thread(self.injector.close)


class ZgodaSender(Sender):
    """Console client library → relay process → agent engine process."""

    name = "zgoda"

    async def open(self, env: dict[str, str], tmp: Path) -> None:
        from console.client import ConsoleClient
        from console.session import Phase
        from tests.agent.conftest import TEST_LIMITS
        from tests.support.relay import start_relay

        self.agent: subprocess.Popen[str] | None = None
        self.log: list[tuple[Event, int]] = []  # every send, set-up moves included
        self.trace_path = tmp / "agent-trace.json"
        self.trace: dict[str, list[Any]] = {}
        self.relay = start_relay(tmp / "relay", config=TEST_LIMITS)
        self.client = ConsoleClient(self.relay.url)
        await self.client.__aenter__()
        try:
            await self.client.login(self.relay.username, self.relay.password)
            ticket = await self.client.create_ticket(
                caller_name="Bench", company="", phone="600000000", problem="input bench"
            )
            self.session = await self.client.start_session(ticket)
            code = self.session.code
            assert code is not None
            self.agent = subprocess.Popen(
                [
                    *(sys.executable, "-m", "bench.input", "--role", "agent"),
                    *(self.relay.url, self.relay.pubkey, self.relay.org),
                    *(code.nameplate, code.secret, str(self.trace_path)),
                ],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                text=True,
            )
            await self.session.wait_phase(Phase.CONTROLLING, timeout=READY_TIMEOUT)
            # pointer input waits for the agent's monitor layout, sent with the first frame
            await self.session.wait_frames(1, timeout=READY_TIMEOUT)
        except BaseException:
            await self.close()
            raise

    def send(self, event: Event) -> int:
        message = input_message(event, BUTTON_AT)
        t = time.monotonic_ns()
        self.session.send_input(message)
        self.log.append((event, t))
        return t

    async def close(self) -> None:
        try:
            if hasattr(self, "session"):
                await self.session.end()
        finally:
            if self.agent is not None:
                await asyncio.to_thread(self._stop_agent, self.agent)
            await self.client.close()
            self.relay.stop()
        if self.trace_path.exists():
            self.trace = json.loads(self.trace_path.read_text())

    def breakdown(self, results: Sequence[KindResult]) -> list[Stage]:
        """Where zgoda's time goes, per matched event, from the agent's own timestamps.

        Empty when the agent's trace does not line up one to one with the sends
        (an event was refused or lost): then no stage can be attributed.
        """
        submits: list[int] = self.trace.get("submits", [])
        calls: list[list[Any]] = self.trace.get("calls", [])
        if len(submits) != len(self.log):
            return []
        # each message's backend calls, in order (the injector applies them one by one)
        starts: list[int] = []
        call = 0
        for event, _ in self.log:
            starts.append(int(calls[call][1]) if call < len(calls) else 0)
            call += BACKEND_CALLS[event[0]]
        if call != len(calls):
            return []
        index = {t: i for i, (_, t) in enumerate(self.log)}
        stages = [Stage(name) for name in STAGES]
        for r in results:
            if r.system != self.name:
                continue
            for k, arrived_at in r.matched:
                i = index[r.sent_at[k]]
                sent, submitted, started = r.sent_at[k], submits[i], starts[i]
                for stage, (a, b) in zip(
                    stages,
                    ((sent, submitted), (submitted, started), (started, arrived_at)),
                    strict=True,
                ):
                    stage.ms.append((b - a) / 1e6)
        return stages

    @staticmethod
    def _stop_agent(agent: subprocess.Popen[str]) -> None:
        if agent.stdin is not None:
            agent.stdin.close()  # the child ends its runner on EOF
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            stop_process(agent)


BACKEND_CALLS = {"motion": 1, "press": 2, "release": 2, "keydown": 1, "keyup": 1}
"""The agent backend's calls per message of this benchmark: a button is a move (to
the button's coordinates) then the button; a plain letter is one key call."""
STAGES = (
    "console send → agent's injector.submit (console library, relay, agent loop, open)",
    "submit → the injector thread calls the backend (queue, thread wake-up)",
    "backend call → event at the listener (pynput, XTest/XSendEvent, X server, listener)",
)


@dataclass
class Stage:
    name: str
    ms: list[float] = field(default_factory=list)


def agent_child(url: str, key: str, org: str, nameplate: str, secret: str, trace: str) -> int:
    """The agent process: the real engine, the user's *Allow control* scripted; ends on EOF.

    It times, in its own process, each input message handed to the injector
    (`Injector.submit`, wrapped here) and each call into the input backend (an
    X11 platform whose backend is wrapped), and writes them to `trace` as JSON.
    """
    from agent.config import AgentConfig
    from agent.frontend import ConsentAnswer
    from agent.inject import Injector
    from agent.platform.x11 import X11Platform
    from agent.runner import SessionRunner
    from protocol.codes import PhoneCode
    from tests.agent.scripted_ui import ScriptedUI

    submits: list[int] = []
    calls: list[tuple[str, int, int]] = []
    submit = Injector.submit

    def timed_submit(self: Injector, message: Any, monitor: Any) -> bool:
        submits.append(time.monotonic_ns())
        return submit(self, message, monitor)

    Injector.submit = timed_submit  # type: ignore[method-assign]

    class TimedBackend:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self.inner, name)
            if name not in ("move", "button", "key"):
                return attribute

            def timed(*args: Any) -> Any:
                start = time.monotonic_ns()
                try:
                    return attribute(*args)
                finally:
                    calls.append((name, start, time.monotonic_ns()))

            return timed

    class TimedX11(X11Platform):
        def open_input(self) -> Any:
            return TimedBackend(super().open_input())

    config = AgentConfig(relay_url=url, relay_key=key, org_name=org)
    ui = ScriptedUI(ConsentAnswer.ALLOW_CONTROL)
    code = PhoneCode(nameplate, secret)
    runner = SessionRunner(config, code, ui, platform=TimedX11(), end_hotkey=None)
    runner.start()
    sys.stdin.read()  # until the parent closes our stdin
    ui.done.set()
    runner.end()
    ended = runner.wait(10) is not None
    Path(trace).write_text(json.dumps({"submits": submits, "calls": calls}))
    return 0 if ended else 1


RFB_BUTTON = {1: 1, 2: 2, 3: 4}  # X button → RFB mask bit


class RfbSender(Sender):
    """A VNC server on the display, driven by `bench.rfb` as a viewer would."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind
        self.mask = 0
        self.at = BUTTON_AT

    async def open(self, env: dict[str, str], tmp: Path) -> None:
        port = free_port()
        self.server = start_server(self.kind, env["DISPLAY"], port, env)
        try:
            self.client = RfbClient.connect("127.0.0.1", port, jpeg_quality=6)
        except BaseException:
            stop_process(self.server)
            raise

    def send(self, event: Event) -> int:
        kind, a, b = event
        if kind == "motion":
            self.at = (a, b)
            t = time.monotonic_ns()
            self.client.pointer_event(self.mask, a, b)
        elif kind in ("press", "release"):
            bit = RFB_BUTTON[a]
            self.mask = self.mask | bit if kind == "press" else self.mask & ~bit
            t = time.monotonic_ns()
            self.client.pointer_event(self.mask, *self.at)
        else:
            t = time.monotonic_ns()
            self.client.key_event(kind == "keydown", a)  # Latin-1 keysyms are the code points
        return t

    async def idle(self, seconds: float) -> None:
        # a viewer keeps reading updates; the server is never stuck writing to us
        self.client.pump(time.monotonic() + max(0.0, seconds))

    async def close(self) -> None:
        try:
            self.client.close()
        finally:
            stop_process(self.server)


def make_sender(system: str) -> Sender:
    """Raises ValueError for an unknown system."""
    if system == "xtest":
        return XTestSender()
    if system == "injector":
        return InjectorSender()
    if system == "zgoda":
        return ZgodaSender()
    if system in ("x0vncserver", "x11vnc"):
        return RfbSender(system)
    raise ValueError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")


# ------------------------------------------------------------------ measuring


@dataclass
class KindResult:
    system: str
    kind: str
    sent: list[Event]
    arrived: list[Event] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    extra: int = 0
    stray: int = 0  # events seen before this kind began (left over from set-up)
    echoes: int = 0  # motion to where the pointer already was (sent with a button)
    sent_at: list[int] = field(default_factory=list)
    matched: list[tuple[int, int]] = field(default_factory=list)  # (index in sent, arrival ns)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def match(
    result: KindResult,
    sent_at: Sequence[int],
    arrivals: Sequence[tuple[Event, int]],
    pointer: tuple[int, int] | None = None,
) -> None:
    """Pair arrivals with the events sent, in order; fill latencies, lost and extra.

    `pointer`: where the pointer was when the first event was sent, if known.
    """
    result.sent_at = list(sent_at)
    j = 0
    for event, at in arrivals:
        if event[0] == "motion":
            if event[1:] == pointer:
                # a button event carries coordinates: XTest "moves" the pointer to
                # where it already is and X reports that motion (harmless, not input)
                result.echoes += 1
                continue
            pointer = event[1:]
        result.arrived.append(event)
        window = result.sent[j : j + MATCH_WINDOW]
        if event in window:
            k = j + window.index(event)
            result.lost += k - j
            result.latencies_ms.append((at - sent_at[k]) / 1e6)
            result.matched.append((k, at))
            j = k + 1
        else:
            result.extra += 1
    result.lost += len(result.sent) - j


async def settle(sender: Sender, listener: Listener, quiet: float = 0.2) -> int:
    """Wait until no event arrived for `quiet` seconds (bounded); return how many did."""
    seen = 0
    deadline = time.monotonic() + LATE_SECONDS
    last = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < quiet:
        await sender.idle(0.02)
        got = len(listener.take())
        if got:
            seen += got
            last = time.monotonic()
    return seen


async def measure_kind(
    sender: Sender, listener: Listener, kind: str, count: int, spacing: float
) -> KindResult:
    """Send `count` events of one kind on a fixed schedule; match what arrives."""
    result = KindResult(sender.name, kind, events_for(kind, count))
    if kind == "button":  # the pointer goes to the button's place first (not timed)
        sender.send(("motion", *BUTTON_AT))
    result.stray = await settle(sender, listener)
    if kind == "button":
        result.stray = max(0, result.stray - 1)
    sent_at: list[int] = []
    start = time.monotonic()
    for i, event in enumerate(result.sent):
        sent_at.append(sender.send(event))
        await sender.idle(start + (i + 1) * spacing - time.monotonic())
    arrivals = listener.take()
    deadline = time.monotonic() + LATE_SECONDS
    while len(arrivals) < count and time.monotonic() < deadline:
        await sender.idle(0.01)
        arrivals += listener.take()
    await sender.idle(EXTRA_GRACE)
    arrivals += listener.take()
    match(result, sent_at, arrivals, BUTTON_AT if kind != "move" else None)
    return result


async def measure_systems(
    systems: Sequence[str],
    count: int,
    spacing: float,
    env: dict[str, str],
    tmp: Path,
    report: bool = False,
) -> Run:
    """Each system in turn on the display of `env`, one listener for all.

    Raises:
        ValueError: an unknown system.
        RuntimeError: a part did not start.
    """
    senders = [make_sender(s) for s in systems]
    run = Run()
    with Listener(env) as listener:
        for sender in senders:
            await sender.open(env, tmp)
            try:
                for kind in KINDS:
                    result = await measure_kind(sender, listener, kind, count, spacing)
                    if report:
                        print(row(result), flush=True)
                    run.results.append(result)
            finally:
                await sender.close()
            if isinstance(sender, ZgodaSender):
                run.stages = sender.breakdown(run.results)
    return run


@dataclass
class Run:
    results: list[KindResult] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)  # zgoda's time, stage by stage


# ------------------------------------------------------------------ report


HEADER = (
    "| system | event | sent | p50 ms | p99 ms | max ms | lost | extra |\n"
    "|---|---|---|---|---|---|---|---|"
)


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def row(r: KindResult) -> str:
    worst = max(r.latencies_ms) if r.latencies_ms else None
    cells = [r.system, r.kind, str(len(r.sent)), fmt(r.percentile(0.5))]
    cells += [fmt(r.percentile(0.99)), fmt(worst), str(r.lost), str(r.extra + r.stray)]
    return "| " + " | ".join(cells) + " |"


def combined(results: list[KindResult], system: str) -> KindResult | None:
    """One system's kinds pooled ("all")."""
    mine = [r for r in results if r.system == system]
    if not mine:
        return None
    pooled = KindResult(system, "all", [e for r in mine for e in r.sent])
    pooled.latencies_ms = [v for r in mine for v in r.latencies_ms]
    pooled.lost = sum(r.lost for r in mine)
    pooled.extra = sum(r.extra + r.stray for r in mine)
    return pooled


def ratios(results: list[KindResult]) -> str:
    """zgoda's p50 and p99 divided by each other system's, per kind and pooled."""
    lines = ["| event | zgoda ÷ | p50 ratio | p99 ratio |", "|---|---|---|---|"]
    systems = list(dict.fromkeys(r.system for r in results))

    def pick(system: str, kind: str) -> KindResult | None:
        if kind == "all":
            return combined(results, system)
        return next((r for r in results if r.system == system and r.kind == kind), None)

    for kind in (*KINDS, "all"):
        ours = pick("zgoda", kind)
        if ours is None:
            continue
        for system in systems:
            peer = pick(system, kind)
            if system == "zgoda" or peer is None:
                continue
            cells = []
            for q in (0.5, 0.99):
                a, b = ours.percentile(q), peer.percentile(q)
                cells.append("n/a" if a is None or not b else f"{a / b:.2f}")
            lines.append(f"| {kind} | {system} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def stages_table(stages: list[Stage]) -> str:
    """zgoda's latency split by the agent's own timestamps (empty if none)."""
    if not stages or not stages[0].ms:
        return ""
    lines = ["zgoda, where the time goes (all kinds):", ""]
    lines += ["| stage | p50 ms | p99 ms |", "|---|---|---|"]
    for stage in stages:
        probe = KindResult("", "", [], latencies_ms=stage.ms)
        lines.append(
            f"| {stage.name} | {fmt(probe.percentile(0.5))} | {fmt(probe.percentile(0.99))} |"
        )
    return "\n".join(lines) + "\n\n"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    from tests.support.xdisplay import start_display

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="events per kind and system")
    parser.add_argument("--spacing", type=float, default=0.02, help="seconds between events")
    parser.add_argument("--write", type=Path, help="print the Markdown to this file too")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ", ".join(SYSTEMS),
    )
    parser.add_argument(
        "--role", choices=("bench", "listener", "agent"), default="bench", help=argparse.SUPPRESS
    )
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "listener":
        listener_child()
        return 0
    if args.role == "agent":
        return agent_child(*args.child_args)
    if args.count < 2 or args.count % 2:
        parser.error("--count must be even and at least 2 (presses and releases alternate)")
    systems = [s for s in args.systems.split(",") if s]
    for system in systems:
        if system not in SYSTEMS:
            parser.error(f"unknown system {system!r}")
    # a `timeout` or a kill ends through the finally blocks: no Xvfb, server or relay left
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = uptime()
    display = start_display(window_manager=False, screen=f"{WIDTH}x{HEIGHT}x24")
    tmp = Path(tempfile.mkdtemp(prefix="zgoda-input-bench-"))
    try:
        print(HEADER, flush=True)
        run = asyncio.run(
            measure_systems(systems, args.count, args.spacing, display.env, tmp, report=True)
        )
    finally:
        display.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = uptime()
    results = run.results
    names = dict.fromkeys(r.system for r in results)
    pooled = [p for name in names if (p := combined(results, name)) is not None]
    table = HEADER + "\n" + "\n".join(row(r) for r in results + pooled)
    report = (
        f"{table}\n\nzgoda ÷ each:\n\n{ratios(results)}\n\n{stages_table(run.stages)}"
        f"load before: `{load_before}`\n\nload after: `{load_after}`\n"
    )
    print("\n" + report)
    if args.write:
        args.write.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
