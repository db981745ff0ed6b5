"""Running the console app's coroutines in tests: one QApplication, a qasync loop per test."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication

T = TypeVar("T")
WAIT = 30.0


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    """The one QApplication; offscreen (no X window) unless a test run says otherwise."""
    if QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication(["zgoda-console-tests"])
    assert isinstance(app, QApplication)
    return app


class QtLoop:
    """`run(coro)` runs a coroutine on a qasync loop: Qt events and asyncio together."""

    def __init__(self, app: QApplication) -> None:
        self.loop = qasync.QEventLoop(app)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def close(self) -> None:
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[QtLoop]:
    loop = QtLoop(qapp)
    asyncio.set_event_loop(loop.loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def until(check: Callable[[], object], timeout: float = WAIT, what: str = "") -> None:
    """Let Qt and asyncio run until `check()` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)
