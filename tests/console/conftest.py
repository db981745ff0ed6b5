"""Fixtures of the console tests: a real relay process and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from console.client import ConsoleClient
from tests.console.qt import qapp, qloop  # noqa: F401  (fixtures of the app's tests)
from tests.support.relay import TEST_LIMITS as TEST_LIMITS  # re-exported for the tests
from tests.support.relay import RelayProcess, module_relay, running_relay

relay = module_relay(
    "One real relay per test module (tests that stop it use `own_relay`).", TEST_LIMITS
)


@pytest.fixture
def own_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay of the test's own, which it may stop or kill."""
    with running_relay(tmp_path / "relay", config=TEST_LIMITS) as process:
        yield process


@pytest.fixture
async def client(relay: RelayProcess) -> AsyncIterator[ConsoleClient]:
    async with ConsoleClient(relay.url) as c:
        await c.login(relay.username, relay.password)
        yield c
