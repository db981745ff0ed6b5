"""Relay test fixtures: `relay` (a fresh process per test) and `shared_relay` (per module)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.relay import RelayProcess, module_relay, relay, start_relay

__all__ = ["relay"]


# production limits (no TEST_LIMITS): the relay's own tests check them
shared_relay = module_relay(
    "One relay for a whole module, for tests that do not change its state in a lasting way."
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
    # Closing the session closes its transports with call_soon callbacks; give
    # them a turn before pytest-asyncio closes the loop, or their sockets leak.
    for _ in range(3):
        await asyncio.sleep(0.01)


@pytest.fixture
def make_relay(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Start relays with their own config (`make_relay(config={...})`); all stopped after."""
    started: list[RelayProcess] = []

    def make(**kwargs: Any) -> RelayProcess:
        process = start_relay(tmp_path / f"relay{len(started)}", **kwargs)
        started.append(process)
        return process

    try:
        yield make
    finally:
        for process in started:
            process.stop()
