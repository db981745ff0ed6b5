"""Relay test fixtures: `relay` (a fresh process per test) and `shared_relay` (per module)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support.relay import RelayProcess, relay, start_relay

__all__ = ["relay"]


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One relay for a whole module, for tests that do not change its state in a lasting way."""
    process = start_relay(tmp_path_factory.mktemp("relay"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
