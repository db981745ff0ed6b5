"""Load: N concurrent sessions through one relay for T seconds, nothing lost or doubled.

    .venv/bin/python -m bench.load                         # 500 sessions x 60 s
    .venv/bin/python -m bench.load --sessions 50 --seconds 15
    .venv/bin/python -m bench.load --sessions 50 --seconds 15 --no-baseline

Each session is a real protocol session over WebSockets: `ConsoleConnection` and
`AgentConnection` (protocol/), the full opening (allocate, claim, SPAKE2, key
confirmation, attestation, consent granted), then for `--seconds`:

* the agent sends a sealed `Frame` every 1/`--fps` s (one 64x64 region of
  `--frame-bytes` bytes derived from the frame id, so corruption is detectable);
  the console acknowledges each one;
* the console sends a sealed `PointerMove` every 1/`--input-rate` s, its
  coordinates counting up, and a `Ping` every second (round trip through the relay).

Losses, duplicates and reordering are detectable twice: the channel's counters turn
any of them into a session failure (GapError / ReplayError), and the receivers check
that frame ids and input sequence numbers arrive exactly 0, 1, 2, ...; payloads are
checked byte for byte. The exit status is 1 if anything was lost, doubled, reordered
or corrupted, or a session failed. The relay's CPU and RSS, and the whole machine's
CPU, are sampled from /proc twice a second; the clients report their own CPU.

Clients run in `--workers` processes (default: the CPU count), each with one event
loop (uvloop when installed) and one pacing loop for all its sessions: every slot is
on a fixed schedule from a common start, spread over the period; a slot more than
LATE_LIMIT late is skipped and counted, so a client that cannot keep up shows as
"offered < asked". The sockets are `bench.load_ws` (a lean WebSocket client: one
write per batch, parsing in a callback) rather than the `websockets` client the agent
and console use, which cost the clients half their CPU at 500 sessions.

The same load then runs through a *bare relay* (an aiohttp WebSocket router with the
same wire contract and nothing else: no accounts, audit, limits or back-pressure), to
state the zgoda relay's figures as a ratio to a limit measured on the same machine in
the same run. Every phase is bounded in time; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load_ws import WebSocketClient, WebSocketError, connect
from protocol.attestation import load_public_key
from protocol.codec import decode_envelope, encode
from protocol.connection import (
    AgentConnection,
    CodeReady,
    ConsentRequested,
    ConsoleConnection,
    SessionEnded,
)
from protocol.errors import LocalProtocolError
from protocol.messages import (
    ConsentGranted,
    Encoding,
    EndReason,
    Frame,
    PointerMove,
    Pong,
    Region,
    Rights,
)

REPO = Path(__file__).resolve().parents[1]
SETUP_TIMEOUT = 120.0
DRAIN_SECONDS = 15.0
TICK = 0.01  # the pacing loop's period: each session's slots are checked 100 times a second
LATE_LIMIT = 1.0  # a slot this late is skipped: the shortfall shows as offered < asked
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
LOAD_CONFIG = {
    "hours": "always",
    "claims_per_ip_per_minute": 1_000_000,
    "claims_per_minute": 1_000_000,
    "claim_attempts_per_ip_per_minute": 1_000_000,
    "max_connections_per_ip": 100_000,
    "logins_per_ip_per_minute": 10_000,
    "log_level": "WARNING",
}


def payload(frame_id: int, size: int) -> bytes:
    """Frame content derived from its id: a frame delivered in the wrong place or
    altered on the way differs from what the receiver computes."""
    seed = hashlib.sha256(frame_id.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class Tally:
    """One worker's counts; summed over workers."""

    sessions: int = 0
    keyed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    frames_sent: int = 0
    frames_received: int = 0
    frames_out_of_order: int = 0
    frames_corrupted: int = 0
    inputs_sent: int = 0
    inputs_received: int = 0
    inputs_out_of_order: int = 0
    slots_skipped: int = 0
    frame_latency_ms: list[float] = field(default_factory=list)
    ping_rtt_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    client_backlog_max: int = 0

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.failures) < 5:
            self.failures.append(what)


@dataclass
class Plan:
    console_url: str
    agent_url: str
    token: str
    relay_key: str
    org: str
    consultant: str
    tickets: list[tuple[str, str]]
    seconds: float
    fps: float
    input_rate: float
    frame_bytes: int
    start_at: float  # time.time() when every worker starts sending
    loop: str  # "uvloop" or "asyncio"


class Session:
    """Both ends of one synthetic session in this process: their sockets, their
    protocol objects, and what each receiver expects next."""

    def __init__(self, plan: Plan, ticket: tuple[str, str], tally: Tally, payloads: Payloads):
        self.plan, self.tally, self.payloads = plan, tally, payloads
        self.console = ConsoleConnection(
            ticket_id=ticket[0],
            consultant=plan.consultant,
            ticket_title=ticket[1],
            rights=Rights.CONTROL,
        )
        self.agent: AgentConnection | None = None
        self.cws: WebSocketClient | None = None
        self.aws: WebSocketClient | None = None
        self.code_ready = asyncio.Event()
        self.granted = asyncio.Event()
        self.ended = False
        self.next_frame = 0  # the frame id the console expects next
        self.next_input = 0  # the PointerMove number the agent expects next
        self.frames_sent = 0
        self.inputs_sent = 0
        self.frame_at = self.input_at = 0.0  # the next slots on the pacing loop's clock

    def _end(self, where: str, ended: SessionEnded) -> None:
        if not self.ended and (
            ended.reason not in (EndReason.USER_ENDED, EndReason.CONSULTANT_ENDED) or ended.error
        ):
            self.tally.fail(f"{where}: {ended.reason.name} {ended.detail}")
        self.ended = True

    def on_console(self, data: bytes) -> None:
        conn, tally = self.console, self.tally
        conn.receive_data(data)
        for event in conn.events_received():
            kind = type(event)
            if kind is Frame:
                assert isinstance(event, Frame)
                now = time.monotonic_ns()
                if event.frame_id != self.next_frame:
                    tally.frames_out_of_order += 1
                self.next_frame = event.frame_id + 1
                tally.frames_received += 1
                if event.regions[0].data != self.payloads.get(event.frame_id):
                    tally.frames_corrupted += 1
                tally.frame_latency_ms.append((now - event.captured_at_ns) / 1e6)
                conn.ack(event.frame_id)
            elif kind is Pong:
                assert isinstance(event, Pong)
                tally.ping_rtt_ms.append((time.monotonic_ns() - event.sent_at_ns) / 1e6)
            elif kind is CodeReady:
                self.code_ready.set()
            elif kind is ConsentGranted:
                self.granted.set()
            elif kind is SessionEnded:
                assert isinstance(event, SessionEnded)
                self._end("console", event)
        out = conn.data_to_send()
        if out and self.cws is not None:
            self.cws.send(out)

    def on_agent(self, data: bytes) -> None:
        conn, tally = self.agent, self.tally
        assert conn is not None
        conn.receive_data(data)
        for event in conn.events_received():
            kind = type(event)
            if kind is PointerMove:
                assert isinstance(event, PointerMove)
                if event.x != self.next_input % 30000:
                    tally.inputs_out_of_order += 1
                self.next_input += 1
                tally.inputs_received += 1
            elif kind is ConsentRequested:
                conn.grant(Rights.CONTROL)
            elif kind is SessionEnded:
                assert isinstance(event, SessionEnded)
                self._end("agent", event)
        out = conn.data_to_send()
        if out and self.aws is not None:
            self.aws.send(out)

    async def open(self) -> None:
        """Connect both ends and run the whole opening up to consent granted.

        Raises:
            TimeoutError, OSError, WebSocketError: the opening did not finish.
        """
        plan = self.plan
        headers = {"Authorization": f"Bearer {plan.token}"}
        self.cws = await connect(plan.console_url, self.on_console, headers)
        self.cws.send(self.console.data_to_send())  # AllocateNameplate
        await self.code_ready.wait()
        assert self.console.code is not None
        key = load_public_key(plan.relay_key)
        self.agent = AgentConnection(code=self.console.code, relay_key=key, org=plan.org)
        self.aws = await connect(plan.agent_url, self.on_agent)
        self.aws.send(self.agent.data_to_send())  # ClaimNameplate
        await self.granted.wait()

    def send_frame(self) -> None:
        assert self.agent is not None and self.aws is not None
        i = self.frames_sent
        self.agent.send(
            Frame(
                frame_id=i,
                captured_at_ns=time.monotonic_ns(),
                width=1920,
                height=1080,
                regions=(self.payloads.region(i),),
            )
        )
        self.frames_sent += 1
        self.tally.frames_sent += 1
        self.aws.send(self.agent.data_to_send())

    def send_input(self) -> None:
        assert self.cws is not None
        i = self.inputs_sent
        self.console.send(PointerMove(x=i % 30000, y=i % 1000))
        self.inputs_sent += 1
        self.tally.inputs_sent += 1
        if i % max(1, round(self.plan.input_rate)) == 0:
            self.console.ping(i)  # one round trip a second
        self.cws.send(self.console.data_to_send())

    @property
    def delivered(self) -> bool:
        return self.next_frame >= self.frames_sent and self.next_input >= self.inputs_sent

    async def close(self) -> None:
        if self.console.session.live:
            self.console.end(EndReason.CONSULTANT_ENDED)
            if self.cws is not None:
                self.cws.send(self.console.data_to_send())
        for ws in (self.cws, self.aws):
            if ws is not None:
                await ws.close()


class Payloads:
    """`payload(i)` and its `Region` for every frame id, built once per process: every
    session sends frame ids 0, 1, 2, ..., so one table serves all of them (each
    `Frame` is still built, validated, encoded and sealed per session and message)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: list[bytes] = []
        self._regions: list[Region] = []

    def get(self, frame_id: int) -> bytes:
        data = self._data
        while len(data) <= frame_id:
            data.append(payload(len(data), self.size))
        return data[frame_id]

    def region(self, frame_id: int) -> Region:
        regions = self._regions
        while len(regions) <= frame_id:
            regions.append(
                Region(
                    x=0,
                    y=0,
                    width=64,
                    height=64,
                    encoding=Encoding.JPEG,
                    data=self.get(len(regions)),
                )
            )
        return regions[frame_id]


async def pace(sessions: list[Session], plan: Plan, tally: Tally) -> None:
    """Send every session's frames and inputs on a fixed schedule from `plan.start_at`.

    One loop for all sessions of this process, waking every TICK seconds: no task or
    timer per message. Session k's slots are spread over the period (offset by its
    index) so the process does not send in bursts. A slot due more than LATE_LIMIT s
    ago is skipped, not sent: a client that cannot keep up shows as "offered < asked"
    instead of stretching the run.
    """
    loop = asyncio.get_running_loop()
    begin = loop.time() + (plan.start_at - time.time())
    stop = begin + plan.seconds
    frame_period, input_period = 1.0 / plan.fps, 1.0 / plan.input_rate
    n = max(1, len(sessions))
    for k, s in enumerate(sessions):
        s.frame_at = begin + (k + 0.5) / n * frame_period
        s.input_at = begin + ((k * 7 + 3) % n + 0.5) / n * input_period  # not in step
    await asyncio.sleep(max(0.0, begin - loop.time()))
    cpu0 = time.process_time()
    tick = 0
    lag = tally.send_lag_ms  # how long after its slot each message went out
    while True:
        now = loop.time()
        horizon = min(now, stop)
        for s in sessions:
            if s.ended:
                continue
            try:
                while s.frame_at <= horizon:
                    late = now - s.frame_at
                    if late > LATE_LIMIT:
                        tally.slots_skipped += 1
                    else:
                        s.send_frame()
                        lag.append(late * 1e3)
                    s.frame_at += frame_period
                while s.input_at <= horizon:
                    late = now - s.input_at
                    if late > LATE_LIMIT:
                        tally.slots_skipped += 1
                    else:
                        s.send_input()
                        lag.append(late * 1e3)
                    s.input_at += input_period
            except LocalProtocolError as exc:  # the session ended under us: counted once
                if not s.ended:
                    tally.fail(f"send: {exc}")
                s.ended = True
        if now >= stop:
            break
        tick = max(tick + 1, int((loop.time() - begin) / TICK))
        await asyncio.sleep(max(0.0, begin + tick * TICK - loop.time()))
    tally.client_cpu_seconds = time.process_time() - cpu0
    tally.client_backlog_max = max(
        (ws.buffered() for s in sessions for ws in (s.cws, s.aws) if ws is not None), default=0
    )


async def worker_main(plan: Plan) -> Tally:
    tally = Tally()
    payloads = Payloads(plan.frame_bytes)
    sessions = [Session(plan, t, tally, payloads) for t in plan.tickets]
    tally.sessions = len(sessions)

    async def open_one(s: Session) -> bool:
        try:
            async with asyncio.timeout(SETUP_TIMEOUT):
                await s.open()
        except (TimeoutError, OSError, WebSocketError) as exc:
            tally.fail(f"setup: {exc!r}")
            s.ended = True
            return False
        tally.keyed += 1
        return True

    try:
        opened = await asyncio.gather(*(open_one(s) for s in sessions))
        live = [s for s, ok in zip(sessions, opened, strict=True) if ok]
        await pace(live, plan, tally)
        # let what is in flight arrive (bounded), then end as the consultant would
        drain_until = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < drain_until and not all(s.ended or s.delivered for s in live):
            await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return tally


def worker(plan_json: str) -> dict[str, Any]:
    plan = Plan(**json.loads(plan_json))
    plan.tickets = [tuple(t) for t in plan.tickets]  # type: ignore[misc]
    if plan.loop == "uvloop":
        import uvloop

        return asdict(uvloop.run(worker_main(plan)))
    return asdict(asyncio.run(worker_main(plan)))


# ------------------------------------------------------------------ the bare relay


async def bare_relay(port: int, key_hex: str, org: str) -> None:
    """An aiohttp router with zgoda's wire contract and nothing else."""
    from aiohttp import WSMsgType, web
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol import attestation as attest
    from protocol.codec import is_sealed
    from protocol.messages import (
        AllocateNameplate,
        Claimed,
        ClaimNameplate,
        NameplateAllocated,
        PeerJoined,
        SessionOpened,
    )

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex))
    waiting: dict[str, web.WebSocketResponse] = {}
    peers: dict[int, web.WebSocketResponse] = {}
    counter = iter(range(100, 1000))

    async def endpoint(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.BINARY:
                break
            data = msg.data
            other = peers.get(id(ws))
            if other is not None and (is_sealed(data) or data[1] in (9, 10)):
                await other.send_bytes(data)
                continue
            message = decode_envelope(data)
            if isinstance(message, AllocateNameplate):
                nameplate = f"{next(counter):03d}"
                expires = time.time() + 600
                blob = attest.sign(
                    attest.Attestation(
                        nameplate=nameplate,
                        consultant="Anna Nowak",
                        ticket_id=message.ticket_id,
                        ticket_title=f"title {message.ticket_id}",
                        org=org,
                        expires_at=expires,
                    ),
                    key,
                )
                waiting[nameplate] = ws
                await ws.send_bytes(
                    encode(
                        NameplateAllocated(
                            nameplate=nameplate, expires_at=expires, attestation=blob
                        )
                    )
                )
            elif isinstance(message, ClaimNameplate):
                console = waiting.pop(message.nameplate)
                peers[id(ws)], peers[id(console)] = console, ws
                await ws.send_bytes(encode(Claimed(expires_at=time.time() + 600)))
                for end in (console, ws):
                    await end.send_bytes(encode(SessionOpened(session_id="s", resume_token=b"")))
                    await end.send_bytes(encode(PeerJoined()))
        other = peers.pop(id(ws), None)
        if other is not None:
            peers.pop(id(other), None)
            await other.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws/agent", endpoint)
    app.router.add_get("/ws/console", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"bare relay listening on {port}", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # until the parent closes our stdin
    await runner.cleanup()


# ------------------------------------------------------------------ the run


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def run_phase(
    name: str, pid: int, base: dict[str, Any], tickets: list[tuple[str, str]], args: Any
) -> dict[str, Any]:
    workers = max(1, min(args.workers, len(tickets)))
    start_at = time.time() + args.ramp
    plans = [
        json.dumps(
            {**base, "tickets": tickets[i::workers], "start_at": start_at, "loop": args.loop}
        )
        for i in range(workers)
    ]
    # (wall time, relay cpu s, relay rss MiB, machine busy cpu s)
    samples: list[tuple[float, float, float, float]] = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending = pool.map_async(worker, plans)
        deadline = time.monotonic() + args.ramp + args.seconds + DRAIN_SECONDS + SETUP_TIMEOUT
        while not pending.ready() and time.monotonic() < deadline:
            time.sleep(0.5)
            samples.append((time.time(), cpu_seconds(pid), rss_mib(pid), machine_busy_seconds()))
        results = pending.get(timeout=max(1.0, deadline - time.monotonic()))
    total = Tally()
    for r in results:
        for key, value in r.items():
            if key == "client_backlog_max":
                total.client_backlog_max = max(total.client_backlog_max, value)
            else:
                setattr(total, key, getattr(total, key) + value)
    window = [s for s in samples if start_at <= s[0] <= start_at + args.seconds]
    nan = float("nan")
    span = window[-1][0] - window[0][0] if len(window) >= 2 else nan
    cpu = (window[-1][1] - window[0][1]) / span * 100 if len(window) >= 2 else nan
    machine = (window[-1][3] - window[0][3]) / span * 100 if len(window) >= 2 else nan
    rss = max((s[2] for s in samples), default=nan)
    return {
        "name": name,
        "tally": total,
        "workers": workers,
        "relay_cpu_percent": cpu,
        "relay_rss_mib_max": rss,
        "machine_cpu_percent": machine,
        "client_cpu_percent": total.client_cpu_seconds / args.seconds * 100,
        "messages_per_second": (total.frames_received + total.inputs_received) / args.seconds,
        "target_messages": round(len(tickets) * args.seconds * (args.fps + args.input_rate)),
    }


def clean(t: Tally) -> bool:
    """Every session opened and ended well, and every message sent arrived once, in
    order and intact."""
    return (
        t.failed == 0
        and t.keyed == t.sessions
        and t.frames_received == t.frames_sent
        and t.inputs_received == t.inputs_sent
        and t.frames_out_of_order == t.frames_corrupted == t.inputs_out_of_order == 0
    )


def report(phase: dict[str, Any]) -> None:
    t: Tally = phase["tally"]
    lost_frames = t.frames_sent - t.frames_received
    lost_inputs = t.inputs_sent - t.inputs_received
    print(f"== {phase['name']}")
    target = phase["target_messages"]
    offered = t.frames_sent + t.inputs_sent
    print(
        f"offered {offered} of the {target} messages asked for ({offered / target:.1%}); "
        f"{t.slots_skipped} slots skipped as over {LATE_LIMIT:g} s late "
        "(below 100 % the client processes, not the relay, set the pace)"
    )
    print(
        f"sessions {t.sessions}, keyed {t.keyed}, failed {t.failed} {t.failures[:3]}; "
        f"frames sent {t.frames_sent} received {t.frames_received} (lost {lost_frames}, "
        f"out of order/duplicated {t.frames_out_of_order}, corrupted {t.frames_corrupted}); "
        f"inputs sent {t.inputs_sent} received {t.inputs_received} (lost {lost_inputs}, "
        f"out of order/duplicated {t.inputs_out_of_order})"
    )
    fl, rtt, lag = t.frame_latency_ms, t.ping_rtt_ms, t.send_lag_ms
    print(
        f"frame latency ms p50 {percentile(fl, 0.5):.1f} p99 {percentile(fl, 0.99):.1f} "
        f"max {max(fl, default=float('nan')):.1f}; ping rtt ms p50 {percentile(rtt, 0.5):.1f} "
        f"p99 {percentile(rtt, 0.99):.1f}; delivered {phase['messages_per_second']:.0f} msg/s"
    )
    print(
        f"relay cpu {phase['relay_cpu_percent']:.0f} % of a core, rss max "
        f"{phase['relay_rss_mib_max']:.0f} MiB; clients ({phase['workers']} processes) cpu "
        f"{phase['client_cpu_percent']:.0f} % of a core, sent after their slot by ms p50 "
        f"{percentile(lag, 0.5):.1f} p99 {percentile(lag, 0.99):.1f} max "
        f"{max(lag, default=float('nan')):.1f}, send backlog at the end "
        f"{t.client_backlog_max} B"
    )
    others = phase["machine_cpu_percent"] - phase["relay_cpu_percent"] - phase["client_cpu_percent"]
    print(
        f"whole machine {phase['machine_cpu_percent']:.0f} % of {100 * (os.cpu_count() or 1)} "
        f"(relay + clients {phase['relay_cpu_percent'] + phase['client_cpu_percent']:.0f} %, "
        f"other processes and the kernel {others:.0f} %)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--input-rate", type=float, default=20.0)
    parser.add_argument("--frame-bytes", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to open sessions")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        help="client event loop (default uvloop when installed)",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--serve-bare", nargs=3, metavar=("PORT", "KEY", "ORG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_bare:
        asyncio.run(bare_relay(int(args.serve_bare[0]), args.serve_bare[1], args.serve_bare[2]))
        return 0
    if not args.ramp:
        args.ramp = 5.0 + args.sessions / 25  # PAKEs are pure Python: give them time
    from tests.support.relay import start_relay

    common = {
        "seconds": args.seconds,
        "fps": args.fps,
        "input_rate": args.input_rate,
        "frame_bytes": args.frame_bytes,
    }
    print(
        f"{args.sessions} sessions x {args.seconds:.0f} s, frames {args.fps:g}/s of "
        f"{args.frame_bytes} B, input {args.input_rate:g}/s, {args.workers} client processes "
        f"({args.loop}); load average before: {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="zgoda-load-") as tmp:
        relay = start_relay(Path(tmp) / "relay", config=LOAD_CONFIG)
        try:
            token = relay.token()
            tickets = []
            for _ in range(args.sessions):
                t = relay.create_ticket(token)
                tickets.append((t["id"], t["title"]))
            base = {
                **common,
                "console_url": relay.ws_console_url,
                "agent_url": relay.ws_agent_url,
                "token": token,
                "relay_key": relay.pubkey,
                "org": relay.org,
                "consultant": relay.display_name,
            }
            zgoda = run_phase("zgoda relay", relay.pid, base, tickets, args)
        finally:
            relay.stop()
    report(zgoda)
    if args.no_baseline:
        return 0 if clean(zgoda["tally"]) else 1
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.attestation import public_key_text
    from tests.support.relay import DEFAULT_ORG

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--serve-bare", str(port), raw.hex(), DEFAULT_ORG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert bare.stdout is not None
        assert bare.stdout.readline().startswith("bare relay listening")
        base = {
            **common,
            "console_url": f"ws://127.0.0.1:{port}/ws/console",
            "agent_url": f"ws://127.0.0.1:{port}/ws/agent",
            "token": "none",
            "relay_key": public_key_text(key.public_key()),
            "org": DEFAULT_ORG,
            "consultant": "Anna Nowak",
        }
        bare_tickets = [(f"T-{i}", f"title T-{i}") for i in range(args.sessions)]
        baseline = run_phase("bare aiohttp router (limit)", bare.pid, base, bare_tickets, args)
    finally:
        if bare.stdin is not None:
            bare.stdin.close()
        try:
            bare.wait(15)
        except subprocess.TimeoutExpired:
            bare.kill()
            bare.wait(5)
        if bare.stdout is not None:
            bare.stdout.close()
    report(baseline)
    z, b = zgoda["relay_cpu_percent"], baseline["relay_cpu_percent"]
    print(
        f"ratio zgoda/bare: relay cpu {z / max(b, 1e-9):.2f}x; delivered msg/s "
        f"{zgoda['messages_per_second'] / max(baseline['messages_per_second'], 1e-9):.2f}x; "
        f"frame latency p50 {statistics.median(zgoda['tally'].frame_latency_ms or [0]):.1f} vs "
        f"{statistics.median(baseline['tally'].frame_latency_ms or [0]):.1f} ms"
    )
    return 0 if clean(zgoda["tally"]) and clean(baseline["tally"]) else 1


if __name__ == "__main__":
    sys.exit(main())
