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
checked byte for byte. The relay's CPU and RSS are sampled from /proc every second.

Clients run in `--workers` processes (default: the CPU count). The same load then
runs through a *bare relay* (an aiohttp WebSocket router with the same wire contract
and nothing else: no accounts, audit, limits or back-pressure), to state the
zgoda relay's figures as a ratio to a limit measured on the same machine in the same
run. Every phase is bounded in time; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
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

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.attestation import load_public_key
from protocol.codec import decode_envelope, encode
from protocol.codes import PhoneCode
from protocol.connection import (
    AgentConnection,
    CodeReady,
    ConsentRequested,
    ConsoleConnection,
    SessionEnded,
)
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
    frame_latency_ms: list[float] = field(default_factory=list)
    ping_rtt_ms: list[float] = field(default_factory=list)


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


class End:
    """One end's socket and protocol object, with a reader task feeding it."""

    def __init__(self, ws: ClientConnection, conn: ConsoleConnection | AgentConnection) -> None:
        self.ws, self.conn = ws, conn
        self.lock = asyncio.Lock()

    async def flush(self) -> None:
        async with self.lock:
            for data in self.conn.data_to_send():
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(data)


async def run_session(plan: Plan, ticket: tuple[str, str], tally: Tally) -> None:
    tally.sessions += 1
    console_conn = ConsoleConnection(
        ticket_id=ticket[0],
        consultant=plan.consultant,
        ticket_title=ticket[1],
        rights=Rights.CONTROL,
    )
    headers = {"Authorization": f"Bearer {plan.token}"}
    options: dict[str, Any] = {"max_size": None, "compression": None, "open_timeout": 60}
    cws = await connect(plan.console_url, additional_headers=headers, **options)
    console = End(cws, console_conn)
    code: PhoneCode | None = None
    agent: End | None = None
    granted = asyncio.Event()
    done = asyncio.Event()
    state = {"next_frame": 0, "next_input": 0, "frames_sent": 0, "inputs_sent": 0}

    def fail(where: str, ended: SessionEnded) -> None:
        if ended.reason not in (EndReason.USER_ENDED, EndReason.CONSULTANT_ENDED) or ended.error:
            tally.failed += 1
            if len(tally.failures) < 5:
                tally.failures.append(f"{where}: {ended.reason.name} {ended.detail}")
        done.set()

    async def read_console() -> None:
        nonlocal code
        with contextlib.suppress(ConnectionClosed):
            async for data in cws:
                console_conn.receive_data(data)  # type: ignore[arg-type]
                for event in console_conn.events_received():
                    if isinstance(event, CodeReady):
                        code = event.code
                    elif isinstance(event, ConsentGranted):
                        granted.set()
                    elif isinstance(event, Frame):
                        now = time.monotonic_ns()
                        if event.frame_id != state["next_frame"]:
                            tally.frames_out_of_order += 1
                        state["next_frame"] = event.frame_id + 1
                        tally.frames_received += 1
                        if event.regions[0].data != payload(event.frame_id, plan.frame_bytes):
                            tally.frames_corrupted += 1
                        if time.time() >= plan.start_at:
                            tally.frame_latency_ms.append((now - event.captured_at_ns) / 1e6)
                        console_conn.ack(event.frame_id)
                    elif isinstance(event, Pong):
                        tally.ping_rtt_ms.append((time.monotonic_ns() - event.sent_at_ns) / 1e6)
                    elif isinstance(event, SessionEnded):
                        fail("console", event)
                await console.flush()
        done.set()

    async def read_agent(end: End) -> None:
        assert isinstance(end.conn, AgentConnection)
        conn = end.conn
        with contextlib.suppress(ConnectionClosed):
            async for data in end.ws:
                conn.receive_data(data)  # type: ignore[arg-type]
                for event in conn.events_received():
                    if isinstance(event, ConsentRequested):
                        conn.grant(Rights.CONTROL)
                    elif isinstance(event, PointerMove):
                        if event.x != state["next_input"] % 30000:
                            tally.inputs_out_of_order += 1
                        state["next_input"] += 1
                        tally.inputs_received += 1
                    elif isinstance(event, SessionEnded):
                        fail("agent", event)
                await end.flush()
        done.set()

    tasks: list[asyncio.Task[None]] = []
    try:
        await console.flush()  # AllocateNameplate
        tasks.append(asyncio.create_task(read_console()))
        async with asyncio.timeout(SETUP_TIMEOUT):
            while code is None:
                await asyncio.sleep(0.01)
            aws = await connect(plan.agent_url, **options)
            key = load_public_key(plan.relay_key)
            agent = End(aws, AgentConnection(code=code, relay_key=key, org=plan.org))
            await agent.flush()
            tasks.append(asyncio.create_task(read_agent(agent)))
            await granted.wait()
        tally.keyed += 1
        await asyncio.sleep(max(0.0, plan.start_at - time.time()))
        stop_at = time.monotonic() + plan.seconds

        async def frames() -> None:
            assert agent is not None
            i = 0
            begin = time.monotonic()
            while time.monotonic() < stop_at and not done.is_set():
                region = Region(
                    x=0,
                    y=0,
                    width=64,
                    height=64,
                    encoding=Encoding.JPEG,
                    data=payload(i, plan.frame_bytes),
                )
                agent.conn.send(
                    Frame(
                        frame_id=i,
                        captured_at_ns=time.monotonic_ns(),
                        width=1920,
                        height=1080,
                        regions=(region,),
                    )
                )
                i += 1
                state["frames_sent"] = i
                tally.frames_sent += 1
                await agent.flush()
                # a fixed schedule, not sleep-after-work: a busy client falls behind the
                # target rate visibly (sent < target) instead of silently slowing down
                await asyncio.sleep(max(0.0, begin + i / plan.fps - time.monotonic()))

        async def inputs() -> None:
            i = 0
            begin = time.monotonic()
            last_ping = 0.0
            while time.monotonic() < stop_at and not done.is_set():
                console_conn.send(PointerMove(x=i % 30000, y=i % 1000))
                i += 1
                state["inputs_sent"] = i
                tally.inputs_sent += 1
                if time.monotonic() - last_ping >= 1.0:
                    last_ping = time.monotonic()
                    console_conn.ping(i)
                await console.flush()
                await asyncio.sleep(max(0.0, begin + i / plan.input_rate - time.monotonic()))

        await asyncio.gather(frames(), inputs())
        # let what is in flight arrive, then end as the consultant would
        drain_until = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < drain_until and not done.is_set():
            if (
                state["next_frame"] >= state["frames_sent"]
                and state["next_input"] >= state["inputs_sent"]
            ):
                break
            await asyncio.sleep(0.05)
        if console_conn.session.live:
            console_conn.end(EndReason.CONSULTANT_ENDED)
            await console.flush()
    except (TimeoutError, OSError, ConnectionClosed) as exc:
        tally.failed += 1
        if len(tally.failures) < 5:
            tally.failures.append(f"setup: {exc!r}")
    finally:
        for end in (console, agent):
            if end is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(end.ws.close(), 5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def worker_main(plan: Plan) -> Tally:
    tally = Tally()
    await asyncio.gather(
        *(run_session(plan, t, tally) for t in plan.tickets), return_exceptions=False
    )
    return tally


def worker(plan_json: str) -> dict[str, Any]:
    plan = Plan(**json.loads(plan_json))
    plan.tickets = [tuple(t) for t in plan.tickets]  # type: ignore[misc]
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


def run_phase(
    name: str, pid: int, base: dict[str, Any], tickets: list[tuple[str, str]], args: Any
) -> dict[str, Any]:
    workers = max(1, min(args.workers, len(tickets)))
    start_at = time.time() + args.ramp
    plans = [
        json.dumps({**base, "tickets": tickets[i::workers], "start_at": start_at})
        for i in range(workers)
    ]
    samples: list[tuple[float, float, float]] = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending = pool.map_async(worker, plans)
        deadline = time.monotonic() + args.ramp + args.seconds + DRAIN_SECONDS + SETUP_TIMEOUT
        while not pending.ready() and time.monotonic() < deadline:
            time.sleep(1.0)
            samples.append((time.time(), cpu_seconds(pid), rss_mib(pid)))
        results = pending.get(timeout=max(1.0, deadline - time.monotonic()))
    total = Tally()
    for r in results:
        for key, value in r.items():
            setattr(total, key, getattr(total, key) + value)
    window = [s for s in samples if start_at <= s[0] <= start_at + args.seconds]
    cpu = (
        (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) * 100
        if len(window) >= 2
        else float("nan")
    )
    rss = max((s[2] for s in samples), default=float("nan"))
    return {
        "name": name,
        "tally": total,
        "relay_cpu_percent": cpu,
        "relay_rss_mib_max": rss,
        "messages_per_second": (total.frames_received + total.inputs_received) / args.seconds,
        "target_messages": round(len(tickets) * args.seconds * (args.fps + args.input_rate)),
    }


def report(phase: dict[str, Any]) -> None:
    t: Tally = phase["tally"]
    lost_frames = t.frames_sent - t.frames_received
    lost_inputs = t.inputs_sent - t.inputs_received
    print(f"== {phase['name']}")
    target = phase["target_messages"]
    offered = t.frames_sent + t.inputs_sent
    print(
        f"offered {offered} of the {target} messages asked for ({offered / target:.0%}); "
        "below 100 % the client processes, not the relay, set the pace"
    )
    print(
        f"sessions {t.sessions}, keyed {t.keyed}, failed {t.failed} {t.failures[:3]}; "
        f"frames sent {t.frames_sent} received {t.frames_received} (lost {lost_frames}, "
        f"out of order/duplicated {t.frames_out_of_order}, corrupted {t.frames_corrupted}); "
        f"inputs sent {t.inputs_sent} received {t.inputs_received} (lost {lost_inputs}, "
        f"out of order/duplicated {t.inputs_out_of_order})"
    )
    fl, rtt = t.frame_latency_ms, t.ping_rtt_ms
    print(
        f"frame latency ms p50 {percentile(fl, 0.5):.1f} p99 {percentile(fl, 0.99):.1f} "
        f"max {max(fl, default=float('nan')):.1f}; ping rtt ms p50 {percentile(rtt, 0.5):.1f} "
        f"p99 {percentile(rtt, 0.99):.1f}; delivered {phase['messages_per_second']:.0f} msg/s; "
        f"relay cpu {phase['relay_cpu_percent']:.0f} % of a core, rss max "
        f"{phase['relay_rss_mib_max']:.0f} MiB"
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
        f"{args.frame_bytes} B, input {args.input_rate:g}/s, {args.workers} client processes"
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
        return 0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
