"""The Windows platform: mss (GDI) for pixels, pynput (SendInput) for input.

Written against the same interfaces as the X11 platform; it cannot run on the
Linux build machines, so its Windows-only calls are kept to the few below
(DPI awareness, per-monitor DPI, cursor position) and everything else is shared
with X11 (`PynputInput`, the mss calls).

The agent runs in the user's session (DESIGN §4): on the secure desktop (UAC,
Ctrl+Alt+Del, lock screen) GDI capture fails; the engine turns that
`PlatformError` into a SECURE_DESKTOP notice for the consultant.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from agent.platform.base import CursorInfo, MonitorInfo, PlatformError, mss_grab
from agent.platform.pynput_input import PynputInput
from protocol.limits import MAX_MONITORS

_STANDARD_DPI = 96
_GRAB_FAILED = "cannot read the screen (secure desktop?)"
_PER_MONITOR_AWARE_V2 = -4  # DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2
_MDT_EFFECTIVE_DPI = 0
_MONITOR_DEFAULTTONEAREST = 2
_CURSOR_SHOWING = 1


def _user32() -> Any:
    if sys.platform != "win32":
        raise PlatformError("the Windows platform runs only on Windows")
    import ctypes

    return ctypes.windll.user32


def make_dpi_aware() -> None:
    """Ask for physical pixels, so mss, pynput and the monitor layout agree.

    Process-wide and idempotent: a second call fails harmlessly (access denied).
    """
    _user32().SetProcessDpiAwarenessContext(_PER_MONITOR_AWARE_V2)


def monitor_scale_percent(x: int, y: int) -> int:
    """The effective DPI of the monitor holding (x, y), as a percentage of 96 dpi."""
    if sys.platform != "win32":
        raise PlatformError("the Windows platform runs only on Windows")
    import ctypes
    from ctypes import wintypes

    point = wintypes.POINT(x, y)
    monitor = ctypes.windll.user32.MonitorFromPoint(point, _MONITOR_DEFAULTTONEAREST)
    dpi_x, dpi_y = wintypes.UINT(), wintypes.UINT()
    result = ctypes.windll.shcore.GetDpiForMonitor(
        monitor, _MDT_EFFECTIVE_DPI, ctypes.byref(dpi_x), ctypes.byref(dpi_y)
    )
    if result != 0:
        return 100
    return min(max(round(dpi_x.value * 100 / _STANDARD_DPI), 50), 500)


def cursor_info() -> CursorInfo:
    """Pointer position and visibility; the handle stands in for the shape's serial.

    The shape itself is not read on Windows yet (GetIconInfo + GetDIBits); the
    console draws its own arrow there.
    """
    if sys.platform != "win32":
        raise PlatformError("the Windows platform runs only on Windows")
    import ctypes
    from ctypes import wintypes

    class CURSORINFO(ctypes.Structure):
        _fields_ = (
            ("cbSize", wintypes.DWORD),
            ("flags", wintypes.DWORD),
            ("hCursor", wintypes.HANDLE),
            ("ptScreenPos", wintypes.POINT),
        )

    info = CURSORINFO()
    info.cbSize = ctypes.sizeof(CURSORINFO)
    if not ctypes.windll.user32.GetCursorInfo(ctypes.byref(info)):
        raise PlatformError("cannot read the cursor (secure desktop?)")
    return CursorInfo(
        x=info.ptScreenPos.x,
        y=info.ptScreenPos.y,
        visible=bool(info.flags & _CURSOR_SHOWING),
        serial=int(info.hCursor or 0),
    )


_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_TOKEN_QUERY = 0x0008
_TOKEN_ELEVATION = 20  # TOKEN_INFORMATION_CLASS.TokenElevation
ELEVATION_CHECK_SECONDS = 0.5
"""The foreground window's elevation is re-read at most twice a second."""


def _process_elevated(pid: int | None) -> bool:
    """True if the process (None: this one) runs elevated (UAC "as administrator")."""
    if sys.platform != "win32":
        raise PlatformError("the Windows platform runs only on Windows")
    import ctypes
    from ctypes import wintypes

    kernel32, advapi32 = ctypes.windll.kernel32, ctypes.windll.advapi32
    process = (
        kernel32.GetCurrentProcess()
        if pid is None
        else kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    )
    if not process:
        return True  # we may not even look at it: it is above us
    token = wintypes.HANDLE()
    try:
        if not advapi32.OpenProcessToken(process, _TOKEN_QUERY, ctypes.byref(token)):
            return True
        try:
            elevated, size = wintypes.DWORD(), wintypes.DWORD()
            ok = advapi32.GetTokenInformation(
                token, _TOKEN_ELEVATION, ctypes.byref(elevated), 4, ctypes.byref(size)
            )
            return bool(ok and elevated.value)
        finally:
            kernel32.CloseHandle(token)
    finally:
        if pid is not None:
            kernel32.CloseHandle(process)


def foreground_elevated_above_us() -> bool:
    """The focused window belongs to an elevated process and this one is not: Windows
    (UIPI) silently drops our injected input into it."""
    if sys.platform != "win32":
        raise PlatformError("the Windows platform runs only on Windows")
    import ctypes
    from ctypes import wintypes

    window = ctypes.windll.user32.GetForegroundWindow()
    if not window:
        return False
    pid = wintypes.DWORD()
    ctypes.windll.user32.GetWindowThreadProcessId(window, ctypes.byref(pid))
    return _process_elevated(pid.value) and not _process_elevated(None)


class WindowsInput(PynputInput):
    """pynput's SendInput, plus telling when the focused window cannot receive it."""

    def __init__(self) -> None:
        super().__init__()
        self._checked_at = -ELEVATION_CHECK_SECONDS
        self._blocked = False

    def blocked_reason(self) -> str | None:
        now = time.monotonic()
        if now - self._checked_at >= ELEVATION_CHECK_SECONDS:
            self._checked_at = now
            self._blocked = foreground_elevated_above_us()
        if self._blocked:
            return "The focused window runs as administrator; the user must use it."
        return None


class WindowsCapture:
    """A `ScreenCapture` over mss's GDI backend."""

    def __init__(self) -> None:
        import mss

        self._screenshot_error: type[Exception] = mss.ScreenShotError
        self._mss: Any = mss.MSS()
        self._closed = False

    def monitors(self) -> list[MonitorInfo]:
        try:
            raw = self._mss.monitors
        except self._screenshot_error as exc:
            raise PlatformError(f"cannot list monitors: {exc}") from None
        return [
            MonitorInfo(
                index=index,
                left=mon["left"],
                top=mon["top"],
                width=mon["width"],
                height=mon["height"],
                primary=bool(mon.get("is_primary")),
                name="all monitors" if index == 0 else str(mon.get("name", f"{index}")),
                scale_percent=monitor_scale_percent(
                    mon["left"] + mon["width"] // 2, mon["top"] + mon["height"] // 2
                ),
            )
            for index, mon in enumerate(raw[:MAX_MONITORS])
        ]

    def changed(self) -> bool | None:
        """None: GDI cannot tell what was drawn (DXGI desktop duplication could, not
        used yet), so the engine grabs and compares."""
        return None

    def wake_fd(self) -> int | None:
        """None: nothing to wait on (see `changed`)."""
        return None

    def damaged_area(self) -> tuple[int, int, int, int] | None:
        """None: not known (see `changed`)."""
        return None

    def grab_area(self, monitor: MonitorInfo, area: tuple[int, int, int, int]) -> bytearray:
        return mss_grab(self._mss, self._screenshot_error, monitor, area, _GRAB_FAILED)

    def grab(self, monitor: MonitorInfo) -> bytearray:
        return mss_grab(self._mss, self._screenshot_error, monitor, None, _GRAB_FAILED)

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        return cursor_info()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._mss.close()


class WindowsPlatform:
    name = "windows"

    def __init__(self) -> None:
        make_dpi_aware()

    def open_capture(self) -> WindowsCapture:
        return WindowsCapture()

    def open_input(self) -> WindowsInput:
        return WindowsInput()
