"""Nameplate brute force against a real relay: do the claim limits hold, and what are the odds?

    .venv/bin/python -m bench.bruteforce                      # 10,000 + 10,000 attempts
    .venv/bin/python -m bench.bruteforce --attempts 2000 --addresses 250

Two attacks, each `--attempts` claims of random nameplates (`ClaimNameplate` on
`/ws/agent`, one WebSocket per attempt as a real agent opens one):

* from one address (127.0.0.1);
* spread over `--addresses` addresses of 127.0.0.0/8 (client sockets bound to
  127.x.y.z), round-robin, which is what a botnet behind many addresses does.

The relay runs with its production limits (only `hours = always`), and one
consultant keeps `--live` nameplates waiting, as a busy hotline would. Each answer is
counted: `NAMEPLATE_UNKNOWN` (the relay looked the nameplate up: an *accepted*
attempt), `Claimed` (a hit on a live nameplate), `RATE_LIMITED`, or a refusal before
the upgrade (HTTP 429, too many sockets from one address). Both phases are bounded in
attempts and in time (`--seconds` each).

From the measured accepted rate R (attempts per second that reached the directory),
with W live nameplates among 10^3 and a 6-digit secret, the attacker's best odds in
one hour are

    P(hit a waiting nameplate)  = 1 - (1 - W/1000) ** (R * 3600)   (burns it: denial of service)
    P(a keyed session)         <= R * 3600 * (W/1000) * 10**-6     (must also guess the secret)

A keyed session with a consultant would still show the consultant's name to nobody:
the attacker is on the agent's side, and the PC it would have to reach is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol.codec import decode_envelope, encode
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    AllocateNameplate,
    Claimed,
    ClaimNameplate,
    NameplateAllocated,
    RelayError,
    RelayErrorCode,
)
from tests.support.relay import RelayProcess, start_relay

ATTEMPT_TIMEOUT = 10.0
CONCURRENCY = 48
PRODUCTION_LIMITS = {"hours": "always", "log_level": "WARNING"}


@dataclass
class Phase:
    """What one attack got back."""

    name: str
    attempts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    hits: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        """Claims the relay looked up in its directory (not refused by a limit)."""
        return self.outcomes["unknown"] + self.outcomes["claimed"]

    def accepted_per_second(self) -> float:
        # A sliding 60 s window: a short run still sees the whole first window's quota,
        # so the rate is quoted over at least one window.
        return self.accepted / max(self.seconds, 60.0)

    def odds_per_hour(self, live: int) -> tuple[float, float]:
        per_hour = self.accepted_per_second() * 3600
        hijack = 1 - (1 - live / 1000) ** per_hour
        session = per_hour * (live / 1000) * 1e-6
        return hijack, session


async def attempt(url: str, nameplate: str, source: str) -> str:
    """One claim from `source`; returns the outcome's name (never raises)."""
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT):
            async with connect(
                url, local_addr=(source, 0), open_timeout=ATTEMPT_TIMEOUT, compression=None
            ) as ws:
                await ws.send(
                    encode(ClaimNameplate(nameplate=nameplate, protocol_version=PROTOCOL_VERSION))
                )
                reply = decode_envelope(await ws.recv())  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return f"http_{exc.response.status_code}"
    except (ConnectionClosed, OSError, TimeoutError) as exc:
        return type(exc).__name__
    if isinstance(reply, Claimed):
        return "claimed"
    if isinstance(reply, RelayError):
        if reply.code is RelayErrorCode.NAMEPLATE_UNKNOWN:
            return "unknown"
        return reply.code.name.lower()
    return type(reply).__name__


async def attack(
    url: str, name: str, sources: list[str], attempts: int, seconds: float, seed: int
) -> Phase:
    """`attempts` claims of random nameplates, round-robin over `sources`, bounded in time."""
    rng = random.Random(seed)
    phase = Phase(name)
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for i in range(attempts):
        queue.put_nowait((f"{rng.randrange(1000):03d}", sources[i % len(sources)]))
    started = time.monotonic()
    deadline = started + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                nameplate, source = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = await attempt(url, nameplate, source)
            phase.attempts += 1
            phase.outcomes[outcome] += 1
            if outcome == "claimed":
                phase.hits.append(nameplate)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    phase.seconds = time.monotonic() - started
    return phase


def spread_addresses(count: int) -> list[str]:
    """`count` distinct addresses in 127.0.0.0/8, none of them 127.0.0.1."""
    out = []
    for i in range(count):
        n = i + 2
        out.append(f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}")
    return out


class LiveNameplates:
    """A consultant holding `count` nameplates open, as a hotline waiting for callers."""

    def __init__(self, relay: RelayProcess, count: int) -> None:
        self.relay = relay
        self.count = count
        self.nameplates: list[str] = []
        self._sockets: list[Any] = []

    async def __aenter__(self) -> LiveNameplates:
        token = await asyncio.to_thread(self.relay.token)
        for _ in range(self.count):
            ticket = await asyncio.to_thread(self.relay.create_ticket, token)
            ws = await connect(
                self.relay.ws_console_url,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
            )
            self._sockets.append(ws)
            await ws.send(encode(AllocateNameplate(ticket_id=ticket["id"])))
            reply = decode_envelope(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(reply, NameplateAllocated), reply
            self.nameplates.append(reply.nameplate)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self._sockets:
            with contextlib.suppress(Exception):
                await ws.close()


async def legit_claim_after(relay: RelayProcess, source: str) -> str:
    """Right after an attack: does a real user's claim of a real nameplate get through?"""
    async with LiveNameplates(relay, 1) as live:
        return await attempt(relay.ws_agent_url, live.nameplates[0], source)


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="zgoda-bruteforce-") as tmp:
        relay = start_relay(Path(tmp) / "relay", config=PRODUCTION_LIMITS)
        try:
            results = []
            for name, sources in (
                ("one address", ["127.0.0.1"]),
                (f"{args.addresses} addresses", spread_addresses(args.addresses)),
            ):
                async with LiveNameplates(relay, args.live) as live:
                    phase = await attack(
                        relay.ws_agent_url, name, sources, args.attempts, args.seconds, args.seed
                    )
                    phase.hits = [h for h in phase.hits if h in live.nameplates]
                after = await legit_claim_after(relay, "127.255.255.254")
                results.append((phase, after))
                if name == "one address" and args.addresses:
                    # let the sliding windows empty before the second attack
                    await asyncio.sleep(61)
            print_results(results, args)
        finally:
            relay.stop()
    return 0


def print_results(results: list[tuple[Phase, str]], args: argparse.Namespace) -> None:
    print(f"relay limits: production defaults; live nameplates waiting: {args.live}")
    for phase, after in results:
        hijack, session = phase.odds_per_hour(args.live)
        print(
            f"{phase.name}: {phase.attempts} attempts in {phase.seconds:.1f} s "
            f"({phase.attempts / phase.seconds:.0f}/s); outcomes {dict(phase.outcomes)}; "
            f"accepted {phase.accepted} ({phase.accepted_per_second() * 60:.1f}/min); "
            f"hits on live nameplates {len(phase.hits)}"
        )
        print(
            f"  best odds per hour at this rate: hit a waiting nameplate {hijack:.4f}, "
            f"keyed session {session:.2e}; a real user's claim right after: {after}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bruteforce", description=__doc__)
    parser.add_argument("--attempts", type=int, default=10_000, help="claims per attack")
    parser.add_argument("--addresses", type=int, default=1_000, help="addresses of 127/8")
    parser.add_argument("--live", type=int, default=10, help="nameplates kept waiting")
    parser.add_argument("--seconds", type=float, default=300.0, help="time bound per attack")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
