"""protocol/ imports no I/O or GUI module (STYLE §1), checked in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import protocol

FORBIDDEN = (
    "asyncio",
    "websockets",
    "aiohttp",
    "mss",
    "pynput",
    "pystray",
    "tkinter",
    "PySide6",
    "socket",
    "selectors",
    "threading",
    "qasync",
)


def test_protocol_modules_import_no_io_or_gui_module() -> None:
    modules = [f"protocol.{m.name}" for m in pkgutil.iter_modules(protocol.__path__)]
    assert "protocol.connection" in modules
    program = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in modules)
        + f"bad = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"protocol/ pulled in: {result.stdout.strip()}"
