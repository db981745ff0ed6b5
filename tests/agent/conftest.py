"""Fixtures of the agent's tests: an X display, a real relay, a real target window."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.frontend import ConsentAnswer
from agent.runner import SessionRunner
from tests.agent.consultant import WAIT, Consultant
from tests.agent.scripted_ui import ScriptedUI
from tests.support.relay import TEST_LIMITS as LOOPBACK_LIMITS
from tests.support.relay import RelayProcess, module_relay
from tests.support.relay import relay as relay  # the fixture, re-exported
from tests.support.targets import TargetWindow
from tests.support.xdisplay import XDisplay, mark_x11_tests
from tests.support.xdisplay import xdisplay as xdisplay

TEST_LIMITS = {**LOOPBACK_LIMITS, "resume_grace": 2.0}
"""The shared test limits (every test session claims from 127.0.0.1), and a short
resume grace so that tests where an end leaves finish in seconds."""

shared_relay = module_relay(
    "One relay for a module's tests that do not stop or kill it.", TEST_LIMITS
)


def config_for(relay: RelayProcess) -> AgentConfig:
    return AgentConfig(relay_url=relay.url, relay_key=relay.pubkey, org_name=relay.org)


@pytest.fixture
def target(xdisplay: XDisplay) -> Iterator[TargetWindow]:
    with TargetWindow.start(xdisplay.env) as window:
        yield window


async def wait_event(event: threading.Event, timeout: float = WAIT) -> None:
    """Wait for a threading.Event without blocking the test's loop."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError("timed out waiting for the agent")


async def until(check: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll a condition on the agent's side (another thread), bounded.

    Raises AssertionError when it does not hold within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


class AgentSide:
    """A runner with a scripted UI, started on the user's 'click' and always ended."""

    def __init__(self, relay: RelayProcess, ui: ScriptedUI, **options: object) -> None:
        self.ui = ui
        self.relay = relay
        self.options = options
        self.runner: SessionRunner | None = None

    def connect(self, code: object, **config: str) -> SessionRunner:
        base = config_for(self.relay)
        cfg = AgentConfig(
            relay_url=config.get("relay_url", base.relay_url),
            relay_key=config.get("relay_key", base.relay_key),
            org_name=config.get("org_name", base.org_name),
            tls_pin=config.get("tls_pin"),
        )
        self.runner = SessionRunner(cfg, code, self.ui, **self.options)  # type: ignore[arg-type]
        self.runner.start()
        return self.runner

    async def ended(self, timeout: float = WAIT) -> None:
        await wait_event(self.ui.ended, timeout)
        assert self.runner is not None
        await asyncio.to_thread(self.runner.wait, timeout)

    def stop(self) -> None:
        if self.runner is not None and not self.runner.finished:
            self.runner.end()
            assert self.runner.wait(WAIT) is not None


@pytest.fixture
def agent(shared_relay: RelayProcess, xdisplay: XDisplay) -> Iterator[AgentSide]:
    """The agent engine on the display, answering consent with "allow control"."""
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    try:
        yield side
    finally:
        side.stop()


@pytest.fixture
async def consultant(shared_relay: RelayProcess) -> AsyncIterator[Consultant]:
    c = Consultant(shared_relay)
    try:
        yield c
    finally:
        await c.close()


def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    del config
    mark_x11_tests(items, Path(__file__).parent)
