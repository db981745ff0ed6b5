"""Fixtures of the console tests: a real relay process and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from console.client import ConsoleClient
from tests.console.qt import qapp, qloop  # noqa: F401  (fixtures of the app's tests)
from tests.support.relay import RelayProcess, start_relay

TEST_LIMITS = {
    "claims_per_ip_per_minute": 1000,
    "claims_per_minute": 1000,
    "claim_attempts_per_ip_per_minute": 1000,
    "logins_per_ip_per_minute": 1000,
}
"""Every test claims and logs in from 127.0.0.1: the relay's per-address limits would
otherwise refuse the eleventh claim of a minute (which is what they are for)."""


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One real relay per test module (tests that stop it use `own_relay`)."""
    process = start_relay(tmp_path_factory.mktemp("relay") / "data", config=TEST_LIMITS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def own_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path / "relay", config=TEST_LIMITS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(relay: RelayProcess) -> AsyncIterator[ConsoleClient]:
    async with ConsoleClient(relay.url) as c:
        await c.login(relay.username, relay.password)
        yield c
