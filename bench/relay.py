"""Relay benchmark: bulk throughput, interactive round trips, idle memory per session.

    .venv/bin/python -m bench.relay            # full run (~1-2 minutes)
    .venv/bin/python -m bench.relay --quick    # smaller counts, for a smoke run

Every peer runs on this machine in the same run, driven by the same client
code: socat (`-b 8192`, a plain TCP pipe between two clients) and websockify
(WebSocket in, TCP out). The zgoda relay is a real `zgoda relay serve` process
on loopback. Figures are printed; nothing is asserted. Each phase is bounded
in message count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from protocol.codec import decode_envelope, encode
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import AllocateNameplate, ClaimNameplate, NameplateAllocated, Sealed
from tests.support.relay import RelayProcess, start_relay

PHASE_TIMEOUT = 180.0
BULK_MESSAGE = 64 * 1024  # a sealed box of this size: the envelope adds a few bytes
PING_SIZE = 200

BENCH_CONFIG = {
    "hours": "always",
    "claims_per_ip_per_minute": 1_000_000,
    "claims_per_minute": 1_000_000,
    "claim_attempts_per_ip_per_minute": 1_000_000,
    "max_connections_per_ip": 100_000,
    "logins_per_ip_per_minute": 1_000,
    "log_level": "WARNING",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port}")


# -------------------------------------------------------------- a lean WS client


class RawWs:
    """A minimal WebSocket client for bulk runs: frames built once, no per-send masking.

    aiohttp's client masks every message into a new buffer; that cost would be
    the client's, not the relay's. Here a bulk frame is masked once and written
    again and again, and received frames are read with `readexactly`, so the
    client costs what a socat client costs and the relay is what is measured.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, headers: dict[str, str] | None = None) -> RawWs:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"upgrade refused: {head[:80]!r}")
        return cls(reader, writer)

    @staticmethod
    def frame(payload: bytes, opcode: int = 0x2) -> bytes:
        """A masked frame (clients must mask; the mask is fixed per frame)."""
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            n, "big"
        )
        return header + mask + masked

    async def send_frame(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def recv(self) -> bytes:
        """The next data frame's payload (pings answered, other control frames skipped)."""
        while True:
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            opcode = first & 0x0F
            if opcode == 0x9:
                self.writer.write(self.frame(payload, 0xA))
                continue
            if opcode == 0x8:
                raise ConnectionError("closed by the server")
            if opcode in (0x1, 0x2):
                return payload

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# --------------------------------------------------------------------- zgoda pairs


class Zgoda:
    """Pairs through a running relay: console and agent sockets, control messages consumed."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.port = int(relay.url.rsplit(":", 1)[1])
        self.token = relay.token()
        self.ticket = relay.create_ticket(self.token)["id"]

    async def pair(self) -> tuple[RawWs, RawWs]:
        auth = {"Authorization": f"Bearer {self.token}"}
        con = await RawWs.connect(self.port, "/ws/console", auth)
        await con.send_frame(RawWs.frame(encode(AllocateNameplate(ticket_id=self.ticket))))
        allocated = decode_envelope(await con.recv())
        assert isinstance(allocated, NameplateAllocated), allocated
        ag = await RawWs.connect(self.port, "/ws/agent")
        claim = ClaimNameplate(nameplate=allocated.nameplate, protocol_version=PROTOCOL_VERSION)
        await ag.send_frame(RawWs.frame(encode(claim)))
        for _ in range(3):  # Claimed, SessionOpened, PeerJoined
            await ag.recv()
        for _ in range(2):  # SessionOpened, PeerJoined
            await con.recv()
        return con, ag


# ------------------------------------------------------------------------- bulk


async def bulk_ws(send: RawWs, recv: RawWs, frame: bytes, count: int, size: int) -> float:
    """Send `count` copies of `frame` one way; MB/s of the `size`-byte messages received.

    The receiver counts bytes as socat's receiver does, instead of parsing each
    frame: a server frame of this size has a 10-byte header and no mask.
    """
    header = 10 if size >= 65536 else 4
    total = count * (size + header)

    async def sender() -> None:
        for _ in range(count):
            await send.send_frame(frame)

    async def receiver() -> None:
        got = 0
        while got < total:
            chunk = await recv.reader.read(1 << 20)
            if not chunk:
                raise ConnectionError("relay closed early")
            got += len(chunk)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(sender(), receiver()), PHASE_TIMEOUT)
    return count * size / (time.perf_counter() - start) / 1e6


async def bulk_tcp(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, payload: bytes, count: int
) -> float:
    total = count * len(payload)

    async def sender() -> None:
        for _ in range(count):
            writer.write(payload)
            await writer.drain()

    async def receiver() -> None:
        got = 0
        while got < total:
            chunk = await reader.read(1 << 20)
            if not chunk:
                raise RuntimeError("peer closed early")
            got += len(chunk)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(sender(), receiver()), PHASE_TIMEOUT)
    return total / (time.perf_counter() - start) / 1e6


async def bench_bulk_zgoda(zgoda: Zgoda, count: int) -> float:
    con, ag = await zgoda.pair()
    envelope = encode(Sealed(box=os.urandom(BULK_MESSAGE)))
    frame = RawWs.frame(envelope)
    await bulk_ws(ag, con, frame, count // 10, len(envelope))  # warm-up
    rate = await bulk_ws(ag, con, frame, count, len(envelope))
    await ag.close()
    await con.close()
    return rate


@contextlib.asynccontextmanager
async def process(*argv: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def bench_bulk_socat(count: int) -> float:
    """socat between two TCP listeners: the first client in is one end, the second the other."""
    p1, p2 = free_port(), free_port()
    async with process(
        "socat", "-b", "8192", f"TCP-LISTEN:{p1},bind=127.0.0.1,reuseaddr",
        f"TCP-LISTEN:{p2},bind=127.0.0.1,reuseaddr",
    ):  # fmt: skip
        # socat's listeners are one-shot: the first connection that succeeds is
        # the real client, and only then does socat listen on the second port
        r1, w1 = await open_retry(p1)
        r2, w2 = await open_retry(p2)
        payload = os.urandom(BULK_MESSAGE)
        await bulk_tcp(w1, r2, payload, count // 10)
        rate = await bulk_tcp(w1, r2, payload, count)
        for w in (w1, w2):
            w.close()
        del r1
        return rate


async def open_retry(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for _ in range(200):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def bench_bulk_websockify(count: int) -> float:
    """websockify: the sender speaks WebSocket, a TCP sink behind it receives."""
    received: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    done = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await received.put(reader)
        await done.wait()  # keep the connection open until the measurement ends
        writer.close()

    sink = await asyncio.start_server(accept, "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    port = free_port()
    try:
        async with process("websockify", f"127.0.0.1:{port}", f"127.0.0.1:{sink_port}"):
            await wait_port(port)
            ws = await RawWs.connect(port, "/", {"Sec-WebSocket-Protocol": "binary"})
            reader = await asyncio.wait_for(received.get(), 30)
            payload = os.urandom(BULK_MESSAGE)
            frame = RawWs.frame(payload)

            async def measure(n: int) -> float:
                total = n * len(payload)

                async def sender() -> None:
                    for _ in range(n):
                        await ws.send_frame(frame)

                async def receiver() -> None:
                    got = 0
                    while got < total:
                        got += len(await reader.read(1 << 20))

                start = time.perf_counter()
                await asyncio.wait_for(asyncio.gather(sender(), receiver()), PHASE_TIMEOUT)
                return total / (time.perf_counter() - start) / 1e6

            await measure(count // 10)
            rate = await measure(count)
            await ws.close()
            return rate
    finally:
        done.set()
        await asyncio.sleep(0.05)
        sink.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sink.wait_closed(), 1)


# ------------------------------------------------------------------ interactive


async def bench_interactive(zgoda: Zgoda, pairs: int, rounds: int) -> dict[str, float]:
    """`pairs` sessions each doing `rounds` sequential 200 B ping/pongs, all at once."""
    setup: list[Any] = []
    for first in range(0, pairs, 50):  # allocate in batches: nameplates are single use
        setup += await asyncio.gather(*(zgoda.pair() for _ in range(min(50, pairs - first))))
    ping = RawWs.frame(encode(Sealed(box=os.urandom(PING_SIZE))))
    latencies: list[float] = []

    async def echo(con: RawWs) -> None:
        # the relay forwards blind, so the echo may resend the same prepared frame
        for _ in range(rounds):
            await con.recv()
            await con.send_frame(ping)

    async def pinger(ag: RawWs) -> None:
        for _ in range(rounds):
            sent = time.perf_counter()
            await ag.send_frame(ping)
            await ag.recv()
            latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    tasks = [echo(con) for con, _ in setup] + [pinger(ag) for _, ag in setup]
    await asyncio.wait_for(asyncio.gather(*tasks), PHASE_TIMEOUT)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(end.close() for pair in setup for end in pair))
    latencies.sort()
    return {
        "round_trips_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


# ------------------------------------------------------------------------- idle


async def bench_idle(zgoda: Zgoda, sessions: int) -> dict[str, float]:
    await asyncio.sleep(0.5)
    before = rss_kib(zgoda.relay.pid)
    pairs: list[Any] = []
    for start in range(0, sessions, 50):
        pairs += await asyncio.gather(*(zgoda.pair() for _ in range(min(50, sessions - start))))
    await asyncio.sleep(1.0)
    after = rss_kib(zgoda.relay.pid)
    await asyncio.gather(*(end.close() for pair in pairs for end in pair))
    return {
        "sessions": sessions,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kb_per_session": (after - before) * 1024 / sessions / 1000,
    }


# ------------------------------------------------------------------------- main


async def run(quick: bool) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    bulk_count = 500 if quick else 4000
    data_dir = Path(tempfile.mkdtemp(prefix="zgoda-bench-relay-"))
    relay = start_relay(data_dir, config=BENCH_CONFIG)
    try:
        zgoda = Zgoda(relay)
        rounds = 3 if quick else 5
        print(
            f"bulk: {bulk_count} x {BULK_MESSAGE // 1024} KiB messages through one pair, "
            f"{rounds} alternating rounds (median; best in brackets)"
        )
        runs: dict[str, list[float]] = {"zgoda relay": [], "socat -b 8192": [], "websockify": []}
        # Peers alternate round by round so that load from elsewhere on the
        # machine falls on all of them alike; the median is reported.
        for _ in range(rounds):
            runs["zgoda relay"].append(await bench_bulk_zgoda(zgoda, bulk_count))
            runs["socat -b 8192"].append(await bench_bulk_socat(bulk_count))
            runs["websockify"].append(await bench_bulk_websockify(bulk_count))
        results = {name: statistics.median(rates) for name, rates in runs.items()}
        for name, rates in runs.items():
            print(f"  {name:<14} {results[name]:8.0f} MB/s  [{max(rates):.0f}]")
        z = results["zgoda relay"]
        print(f"  ratio vs socat      {z / results['socat -b 8192']:.2f}x  (goal >= 1.0x)")
        print(f"  ratio vs websockify {z / results['websockify']:.2f}x  (goal >= 2x)")

        for pairs, pings in ((100, 200), (1000, 20)) if not quick else ((100, 50),):
            r = await bench_interactive(zgoda, pairs, pings)
            print(
                f"interactive: {pairs} pairs x {pings} ping/pongs of {PING_SIZE} B: "
                f"{r['round_trips_per_s']:,.0f} round trips/s, "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                + ("  (goal p99 <= 10 ms)" if pairs == 100 else "")
            )

        idle = await bench_idle(zgoda, 200 if quick else 2000)
        print(
            f"idle: {idle['sessions']:.0f} paired sessions: relay RSS "
            f"{idle['rss_before_mib']:.1f} -> {idle['rss_after_mib']:.1f} MiB, "
            f"{idle['kb_per_session']:.1f} KB per session  (goal <= 50 KB)"
        )
    finally:
        relay.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args(argv)
    for tool in ("socat", "websockify"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    asyncio.run(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
