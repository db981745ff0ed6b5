"""Fuzz the relay's WebSocket input path over real sockets (mutation, not coverage-guided).

    .venv/bin/python -m bench.fuzz.relay_ws --seconds 120

A real `zgoda relay serve` process; for `--seconds`, connections to /ws/agent and
/ws/console (with a valid bearer token) send valid envelopes mutated at random (bit
flips, truncation, splicing, random tags, random bytes, text frames), a few per
connection. Each connection must end in a RelayError and/or a close code of the
protocol (4000-4999) or of WebSocket (1000-1011), never hang; the relay must stay up,
answer /healthz and log no internal error. Prints the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol.codec import encode
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    Abort,
    AbortReason,
    AllocateNameplate,
    AuditKind,
    AuditReport,
    ClaimNameplate,
    Confirm,
    Pake,
    Resume,
    Rewind,
    Sealed,
)
from tests.support.relay import start_relay

SEEDS = [
    encode(ClaimNameplate(nameplate="123", protocol_version=PROTOCOL_VERSION)),
    encode(AllocateNameplate(ticket_id="HD-1001")),
    encode(Pake(body=bytes(33))),
    encode(Confirm(mac=bytes(32))),
    encode(Sealed(box=bytes(40))),
    encode(Abort(reason=AbortReason.WRONG_CODE)),
    encode(AuditReport(kind=AuditKind.GRANTED, rights=2, detail="x")),
    encode(Resume(session_id="s-0123456789abcdef", token=bytes(16))),
    encode(Rewind(next_counter=0)),
]
REPLY_TIMEOUT = 15.0
CONFIG = {
    "hours": "always",
    "claims_per_ip_per_minute": 1_000_000,
    "claims_per_minute": 1_000_000,
    "claim_attempts_per_ip_per_minute": 1_000_000,
    "max_connections_per_ip": 100_000,
    "log_level": "WARNING",
}


def mutate(rng: random.Random) -> bytes:
    data = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            del data[rng.randrange(len(data)) :]
        elif op == 2:
            data[rng.randrange(len(data) + 1) : 0] = rng.choice(SEEDS)
        elif op == 3 and len(data) > 1:
            data[1] = rng.randrange(256)  # the tag
        elif op == 4:
            data = bytearray(rng.randbytes(rng.randrange(64)))
        elif op == 5 and data:
            data[rng.randrange(len(data))] = rng.choice([0xC0, 0xC1, 0xDC, 0xDE, 0xFF, 0x7F])
    return bytes(data)


async def one_connection(url: str, headers: dict[str, str], rng: random.Random) -> str:
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            async with connect(url, additional_headers=headers, compression=None) as ws:
                for _ in range(rng.randint(1, 3)):
                    if rng.random() < 0.05:
                        await ws.send("text " + rng.randbytes(8).hex())
                    else:
                        await ws.send(mutate(rng))
                async for _ in ws:  # RelayErrors, then the close
                    pass
                code = ws.close_code
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
    except InvalidStatus as exc:
        return f"http_{exc.response.status_code}"
    except TimeoutError:
        return "no close within the timeout"
    if code is None or not (1000 <= code <= 1011 or 4000 <= code <= 4999):
        return f"bad close {code}"
    return f"close_{code}"


async def run(seconds: float, seed: int) -> int:
    with tempfile.TemporaryDirectory(prefix="zgoda-fuzz-relay-") as tmp:
        relay = start_relay(Path(tmp) / "relay", config=CONFIG)
        try:
            token = relay.token()
            endpoints = [
                (relay.ws_agent_url, {}),
                (relay.ws_console_url, {"Authorization": f"Bearer {token}"}),
            ]
            rng = random.Random(seed)
            outcomes: Counter[str] = Counter()
            deadline = time.monotonic() + seconds
            inputs = 0

            async def worker(worker_seed: int) -> None:
                nonlocal inputs
                local = random.Random(worker_seed)
                while time.monotonic() < deadline:
                    url, headers = local.choice(endpoints)
                    outcomes[await one_connection(url, headers, local)] += 1
                    inputs += 1

            await asyncio.gather(*(worker(rng.randrange(2**32)) for _ in range(16)))
            status, _ = relay.api("GET", "/healthz")
            internal = relay.log().count("internal error")
            alive = relay.proc.poll() is None
        finally:
            relay.stop()
    bad = {k: v for k, v in outcomes.items() if not k.startswith(("close_", "http_"))}
    print(
        f"bench.fuzz.relay_ws: connections={inputs} seconds={seconds:.0f} "
        f"outcomes={dict(sorted(outcomes.items()))} relay_alive={alive} healthz={status} "
        f"internal_errors={internal} crashes={len(bad) + (not alive) + (internal > 0)}"
    )
    return 1 if bad or not alive or internal or status != 200 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz.relay_ws")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.seconds, args.seed))


if __name__ == "__main__":
    sys.exit(main())
