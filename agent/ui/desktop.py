"""What the tray app needs from the desktop it runs on, kept small and behind `Desktop`.

* **single instance**: `SingleInstance` (all platforms): the first start holds
  an exclusive lock on a file in the user's own private runtime directory. A
  second start cannot take the lock, drops a knock file there and exits; the
  first, which looks for knock files from its Tk loop, opens *Get help*. No
  socket and no port: until the user's *Connect* the agent opens none at all
  (DESIGN §1/§2). Only this user can write into the directory (0700).
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
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.platform.base import (
    CursorInfo,
    InputBackend,
    MonitorInfo,
    Platform,
    PlatformError,
    ScreenCapture,
)

KNOCK = b"show"
KNOCK_PREFIX = "knock-"
KNOCK_POLL_MS = 300
"""How often the first instance looks for knocks: a second start shows *Get help*
within a blink, and an idle agent reads one small directory three times a second."""
KNOCK_TIMEOUT = 5.0
"""How long a second start waits for the first to take its knock (then it exits
anyway: two tray icons would confuse the user more than a missed focus)."""
KNOCK_WAIT_STEP = 0.05
STALE_KNOCK = 60.0
"""A knock older than this (its knocker gave up long ago) is dropped unheard."""
MAX_KNOCKS_PER_POLL = 16


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

    def changed(self) -> bool | None:
        # the secure desktop is found by grabbing: grab while it shows
        return True if self._active() else self.inner.changed()

    def wake_fd(self) -> int | None:
        return None if self._active() else self.inner.wake_fd()

    def damaged_area(self) -> tuple[int, int, int, int] | None:
        return self.inner.damaged_area()

    def grab_area(
        self, monitor: MonitorInfo, area: tuple[int, int, int, int]
    ) -> bytes | bytearray | memoryview:
        if self._active():
            raise PlatformError(self._sentence)
        return self.inner.grab_area(monitor, area)

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
    """A directory only this user can use: XDG_RUNTIME_DIR, LOCALAPPDATA, or a private temp.

    On POSIX the directory must belong to this user and is kept mode 0700: it is
    what keeps other users from knocking (a squatter's directory under /tmp is refused).

    Raises:
        OSError: it cannot be created, or it is not this user's own private directory.
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("LOCALAPPDATA")
    if base:
        path = Path(base) / "zgoda"
    elif sys.platform == "win32":
        path = Path(tempfile.gettempdir()) / "zgoda"  # the per-user %TEMP%
    else:
        path = Path(tempfile.gettempdir()) / f"zgoda-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionError(f"{path} is not a directory of this user's own")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
    return path


def _lock(fd: int) -> bool:
    """Try an exclusive, non-blocking lock on an open file; False when another holds it.

    The operating system drops the lock when the process ends, however it ends:
    a crashed agent never blocks the next start.
    """
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SingleInstance:
    """One tray app per user; a second start knocks on the first. No socket, no port.

    The first start holds an exclusive lock on `tray.lock` in the user's private
    runtime directory (`runtime_dir()`). A second start cannot take the lock; it
    writes a knock file there (`knock-…`, written under a temporary name and renamed,
    so it is never seen half-written) and waits for the first to consume it. The
    first looks for knock files from its Tk loop (`poll()`, every KNOCK_POLL_MS): no
    extra thread, nothing listening. Other users cannot write into the directory
    (0700), and a knock file owned by anyone else is ignored anyway.

    Use: `acquire()`; if False call `knock()` and exit; if True call `poll()`
    periodically (it returns how many knocks arrived) and `close()` at the end.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else runtime_dir()
        self.lock_path = self.directory / "tray.lock"
        self.owner_path = self.directory / "tray.owner"
        self._lock_fd: int | None = None

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def acquire(self) -> bool:
        """True if this is the first instance (it then answers knocks through `poll()`).

        Raises:
            OSError: the lock file cannot be opened.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _lock(fd):
            os.close(fd)
            return False
        self._lock_fd = fd
        # Who holds the lock, for people and tests; written whole, then renamed.
        _write_atomically(self.owner_path, str(os.getpid()).encode())
        return True

    def knock(self, timeout: float = KNOCK_TIMEOUT) -> bool:
        """Ask the first instance to show itself; True once it took the knock.

        When it does not within `timeout` the knock stays for it to find later (it
        may still be starting), unless it is older than STALE_KNOCK by then.

        Raises:
            OSError: the knock cannot be written.
        """
        path = self.directory / f"{KNOCK_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        _write_atomically(path, KNOCK)
        deadline = time.monotonic() + timeout
        while True:
            if not path.exists():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(KNOCK_WAIT_STEP)

    def poll(self) -> int:
        """Consume pending knocks without blocking; the number of valid ones."""
        if self._lock_fd is None:
            return 0
        count = 0
        try:
            entries = [e for e in os.scandir(self.directory) if e.name.startswith(KNOCK_PREFIX)][
                :MAX_KNOCKS_PER_POLL
            ]  # bounded: a flood of files cannot stall the Tk thread
        except OSError:
            return 0
        now = time.time()
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                valid = (
                    stat.S_ISREG(info.st_mode)
                    and _own(info)
                    and now - info.st_mtime < STALE_KNOCK
                    and _read_small(entry.path) == KNOCK
                )
                os.unlink(entry.path)
            except OSError:
                continue  # taken away meanwhile, or unreadable: not a knock
            count += valid
        return count

    def close(self) -> None:
        """Release the lock. Safe to call twice."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                self.owner_path.unlink()
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


def _own(info: os.stat_result) -> bool:
    """The file belongs to this user (always so on Windows, where the directory is per user)."""
    if sys.platform == "win32":
        return True
    return info.st_uid == os.getuid()


def _read_small(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(len(KNOCK) + 1)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) under a temporary name, then rename it into place."""
    temp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)  # Windows: no \r\n
    fd = os.open(temp, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)
