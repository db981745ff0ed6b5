"""What the tray app needs from the desktop it runs on, kept small and behind `Desktop`.

* **single instance**: `SingleInstance` (all platforms): the first start holds
  an exclusive lock on a file in the user's own runtime directory and listens on
  a loopback socket whose port and a random token it writes next to the lock
  (readable by this user only). A second start cannot take the lock, sends the
  token and `show` to that port, and exits; the first opens *Get help*. The
  token keeps other users' processes on the same machine from knocking.
  The listening socket is polled by the Tk thread (`poll()`): no extra thread.
* **autostart honoured**: a start at logon (`tray --autostart`, what the MSI's
  HKLM Run entry is meant to pass) opens no dialog, only the tray icon, and exits
  at once when the user switched the entry off in Task Manager (Windows records
  that under StartupApproved, which a GPO or script start would otherwise ignore).
* **DPI awareness** (Windows): physical pixels, before Tk creates a window.
* **secure desktop** (Windows): while UAC or Ctrl+Alt+Del own the input desktop
  the screen cannot be read. `SecureDesktopGuard` wraps the engine's platform so
  that a grab then fails with a sentence the consultant sees ("the user must
  answer this prompt"), instead of a frozen picture.

Only `WindowsDesktop` calls Windows APIs; it cannot run on the Linux build
machines, so its calls are few and each is one ctypes call.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from agent.platform.base import (
    CursorInfo,
    InputBackend,
    MonitorInfo,
    Platform,
    PlatformError,
    ScreenCapture,
)

KNOCK = b"show"
KNOCK_TIMEOUT = 2.0
"""How long a second start tries to reach the first before giving up (then it exits
anyway: two tray icons would confuse the user more than a missed focus)."""
_MAX_KNOCK = 128


class Desktop(Protocol):
    """The platform pieces of the tray app."""

    def make_dpi_aware(self) -> None:
        """Ask for physical pixels (before any window exists); no-op where not needed."""
        ...

    def autostart_disabled_by_user(self) -> bool:
        """True when the user switched the autostart entry off."""
        ...

    def secure_desktop_active(self) -> bool:
        """True while a secure desktop (UAC, Ctrl+Alt+Del) owns the input."""
        ...


class PosixDesktop:
    """X11/Wayland desktops: no DPI call, no StartupApproved, no secure desktop."""

    def make_dpi_aware(self) -> None:
        return None

    def autostart_disabled_by_user(self) -> bool:
        return False

    def secure_desktop_active(self) -> bool:
        return False


_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
_RUN_VALUE = "zgoda Agent"  # the name of the MSI's HKLM Run entry (installer/agent.wxs)
_UOI_NAME = 2
_DESKTOP_READOBJECTS = 0x0001


class WindowsDesktop:  # pragma: no cover - Windows only; each method is one API call
    def make_dpi_aware(self) -> None:
        from agent.platform.windows import make_dpi_aware

        with contextlib.suppress(Exception):  # already set (e.g. by the manifest)
            make_dpi_aware()

    def autostart_disabled_by_user(self) -> bool:
        if sys.platform != "win32":
            return False
        import winreg

        # Task Manager stores 12 bytes per entry; an odd first byte means disabled.
        for root in (winreg.HKEY_CURRENT_USER, winreg.HKEY_LOCAL_MACHINE):
            try:
                with winreg.OpenKey(root, _RUN_KEY) as key:
                    data, _kind = winreg.QueryValueEx(key, _RUN_VALUE)
            except OSError:
                continue
            if isinstance(data, bytes) and data and data[0] % 2 == 1:
                return True
        return False

    def secure_desktop_active(self) -> bool:
        if sys.platform != "win32":
            return False
        import ctypes

        user32 = ctypes.windll.user32
        desk = user32.OpenInputDesktop(0, False, _DESKTOP_READOBJECTS)
        if not desk:
            return True  # access denied: Winlogon's desktop (UAC, Ctrl+Alt+Del, lock)
        try:
            name = ctypes.create_unicode_buffer(64)
            needed = ctypes.c_ulong()
            user32.GetUserObjectInformationW(
                desk, _UOI_NAME, name, ctypes.sizeof(name), ctypes.byref(needed)
            )
            return name.value.lower() != "default"
        finally:
            user32.CloseDesktop(desk)


def default_desktop() -> Desktop:
    return WindowsDesktop() if sys.platform == "win32" else PosixDesktop()


# ------------------------------------------------------------------ secure desktop


class SecureDesktopGuard:
    """A `Platform` that refuses to grab while a secure desktop owns the input.

    The engine turns the `PlatformError` into a SECURE_DESKTOP notice carrying
    this text, once, and retries until the prompt is gone.
    """

    def __init__(self, inner: Platform, active: Callable[[], bool], sentence: str) -> None:
        self.inner = inner
        self.name = inner.name
        self._active = active
        self._sentence = sentence

    def open_capture(self) -> ScreenCapture:
        return _GuardedCapture(self.inner.open_capture(), self._active, self._sentence)

    def open_input(self) -> InputBackend:
        return self.inner.open_input()

    def __getattr__(self, name: str) -> Any:
        # Whatever else the engine asks of its platform is the wrapped platform's.
        return getattr(self.inner, name)


class _GuardedCapture:
    def __init__(self, inner: ScreenCapture, active: Callable[[], bool], sentence: str) -> None:
        self.inner = inner
        self._active = active
        self._sentence = sentence

    def monitors(self) -> list[MonitorInfo]:
        return self.inner.monitors()

    def grab(self, monitor: MonitorInfo) -> bytes | bytearray | memoryview:
        if self._active():
            raise PlatformError(self._sentence)
        return self.inner.grab(monitor)

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        return self.inner.cursor(known_serial=known_serial)

    def close(self) -> None:
        self.inner.close()


# ------------------------------------------------------------------ single instance


def runtime_dir() -> Path:
    """A directory only this user can write: XDG_RUNTIME_DIR, LOCALAPPDATA, or a private temp."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("LOCALAPPDATA")
    if base:
        path = Path(base) / "zgoda"
    else:
        path = Path(tempfile.gettempdir()) / f"zgoda-{os.getuid() if hasattr(os, 'getuid') else 0}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _lock(handle: IO[bytes]) -> bool:
    """Try an exclusive, non-blocking lock on an open file; False when another holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SingleInstance:
    """One tray app per user; a second start knocks on the first.

    Use: `acquire()`; if False call `knock()` and exit; if True call `poll()`
    periodically (it returns how many knocks arrived) and `close()` at the end.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else runtime_dir()
        self.lock_path = self.directory / "tray.lock"
        self.door_path = self.directory / "tray.door"
        self._lock_file: IO[bytes] | None = None
        self._server: socket.socket | None = None
        self._token = b""

    def acquire(self) -> bool:
        """True if this is the first instance (it then listens for knocks).

        Raises:
            OSError: the runtime directory or loopback socket cannot be used.
        """
        handle = self.lock_path.open("a+b")
        if not _lock(handle):
            handle.close()
            return False
        self._lock_file = handle
        self._token = secrets.token_hex(16).encode()
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server.bind(("127.0.0.1", 0))
            server.listen(4)
            server.setblocking(False)
        except OSError:
            server.close()
            self.close()
            raise
        self._server = server
        port = server.getsockname()[1]
        # Written after listening, replaced atomically: a knocker never reads half a file.
        temp = self.door_path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as door:
            door.write(f"{port} ".encode() + self._token)
        os.replace(temp, self.door_path)
        return True

    def knock(self, timeout: float = KNOCK_TIMEOUT) -> bool:
        """Ask the first instance to show itself; True if it was reached."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port_text, token = self.door_path.read_bytes().split(b" ", 1)
                with socket.create_connection(("127.0.0.1", int(port_text)), timeout=1.0) as s:
                    s.sendall(token + b" " + KNOCK)
            except (OSError, ValueError):
                time.sleep(0.05)  # the first instance is still starting
            else:
                return True
        return False

    def poll(self) -> int:
        """Accept pending knocks without blocking; the number of valid ones."""
        server = self._server
        if server is None:
            return 0
        count = 0
        for _ in range(8):  # bounded: a flood of connections cannot stall the Tk thread
            try:
                client, _addr = server.accept()
            except (BlockingIOError, InterruptedError):
                break
            with client:
                client.settimeout(0.2)
                with contextlib.suppress(OSError):
                    if client.recv(_MAX_KNOCK) == self._token + b" " + KNOCK:
                        count += 1
        return count

    def close(self) -> None:
        """Stop listening and release the lock. Safe to call twice."""
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                self.door_path.unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
