"""Fixtures of the security tests: the real relay, a hostile relay in front of it,
the real agent engine on Xvfb with a real Tk target window, a headless consultant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.frontend import ConsentAnswer
from tests.agent.conftest import TEST_LIMITS, AgentSide
from tests.agent.consultant import Consultant
from tests.agent.scripted_ui import ScriptedUI
from tests.security.hostile import HostileRelay, HostileView
from tests.support.relay import RelayProcess, start_relay
from tests.support.targets import TargetWindow
from tests.support.xdisplay import XDisplay
from tests.support.xdisplay import xdisplay as xdisplay


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One real relay for a module's tests that do not stop or kill it."""
    process = start_relay(tmp_path_factory.mktemp("relay") / "data", config=TEST_LIMITS)
    try:
        yield process
    finally:
        process.stop()


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


@pytest.fixture
def agent(shared_relay: RelayProcess, xdisplay: XDisplay) -> Iterator[AgentSide]:
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    try:
        yield side
    finally:
        side.stop()


@pytest.fixture
def target(xdisplay: XDisplay) -> Iterator[TargetWindow]:
    with TargetWindow.start(xdisplay.env) as window:
        yield window


def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    del config
    here = Path(__file__).parent
    for item in items:
        names = getattr(item, "fixturenames", ())
        if here in Path(str(item.fspath)).parents and "xdisplay" in names:
            item.add_marker(pytest.mark.x11)
