"""Fixtures of the security tests: the real relay, a hostile relay in front of it,
the real agent engine on Xvfb with a real Tk target window, a headless consultant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.conftest import TEST_LIMITS
from tests.agent.conftest import agent as agent
from tests.agent.conftest import target as target
from tests.agent.consultant import Consultant
from tests.security.hostile import HostileRelay, HostileView
from tests.support.relay import RelayProcess, module_relay
from tests.support.xdisplay import mark_x11_tests
from tests.support.xdisplay import xdisplay as xdisplay

shared_relay = module_relay(
    "One real relay for a module's tests that do not stop or kill it.", TEST_LIMITS
)


@pytest.fixture
async def hostile(shared_relay: RelayProcess) -> AsyncIterator[HostileRelay]:
    h = HostileRelay(shared_relay)
    await h.start()
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def consultant(
    shared_relay: RelayProcess, hostile: HostileRelay
) -> AsyncIterator[Consultant]:
    """A consultant whose WebSocket runs through the hostile relay."""
    c = Consultant(HostileView(shared_relay, hostile))  # type: ignore[arg-type]
    try:
        yield c
    finally:
        await c.close()


def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    del config
    mark_x11_tests(items, Path(__file__).parent)
