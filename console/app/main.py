"""`zgoda console`: start the desktop app on a qasync event loop."""

from __future__ import annotations

import asyncio
import sys

import qasync
from PySide6.QtWidgets import QApplication

from console.app.window import MainWindow


def run_app(argv: list[str] | None = None) -> int:
    """Run the console until its window closes; returns the exit status."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("zgoda console")
    app.setOrganizationName("zgoda")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    window = MainWindow()
    window.show()
    with loop:
        loop.run_until_complete(closed.wait())
        loop.run_until_complete(window.shutdown())
    return 0
