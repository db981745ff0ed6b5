"""Nameplate guessing against a real relay with its production limits.

10,000 claims of random nameplates from one address, then 10,000 spread over 1,000
addresses of 127.0.0.0/8 (client sockets bound to 127.x.y.z). The relay must look up
at most its per-address quota from one address and its global quota from all of
them, per sliding minute; refuse the rest with RATE_LIMITED; log an ALARM; and keep
serving. The attacker's odds per hour are computed from these counts in
`bench.bruteforce` and docs/reliability.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bruteforce import attack, spread_addresses
from tests.support.relay import RelayProcess, start_relay

ATTEMPTS = 10_000
ADDRESSES = 1_000
PHASE_BOUND = 120.0  # seconds: a bound, not an expectation (~15 s here)


@pytest.fixture
def production_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path / "relay", config={"hours": "always"})
    try:
        yield process
    finally:
        process.stop()


async def test_ten_thousand_guesses_from_one_and_from_many_addresses_meet_the_limits(
    production_relay: RelayProcess,
) -> None:
    url = production_relay.ws_agent_url
    started = time.monotonic()
    single = await attack(url, "one", ["127.0.0.1"], ATTEMPTS, PHASE_BOUND, seed=1)
    spread = await attack(url, "many", spread_addresses(ADDRESSES), ATTEMPTS, PHASE_BOUND, seed=2)
    windows = 1 + math.floor((time.monotonic() - started) / 60.0)

    for phase in (single, spread):
        assert phase.attempts == ATTEMPTS, phase  # every attempt got an answer in time
        # only two answers exist: looked up (and unknown), or refused by a limit
        assert set(phase.outcomes) <= {"unknown", "rate_limited", "http_429"}, phase.outcomes
        assert not phase.hits
    # production limits: 5 failed claims per address and 20 in all, per sliding minute
    failed_single, failed_spread = single.outcomes["unknown"], spread.outcomes["unknown"]
    assert 1 <= failed_single <= 5 * windows
    assert failed_single + failed_spread <= 20 * windows
    assert failed_spread >= 1  # the global quota, not an accident, stopped the many
    assert "ALARM nameplate guessing suspected" in production_relay.log()
    status, info = production_relay.api("GET", "/api/relay")
    assert status == 200, info
