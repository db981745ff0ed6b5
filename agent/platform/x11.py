"""The X11 platform: mss for pixels, XFixes for the cursor, pynput for input.

Used for real under Xvfb in the tests (DESIGN §5) and on Linux desktops.
"""

from __future__ import annotations

import os
from typing import Any

from agent.platform.base import CursorInfo, MonitorInfo, PlatformError
from agent.platform.pynput_input import PynputInput
from protocol.limits import MAX_CURSOR_DIMENSION, MAX_MONITORS
from protocol.messages import CursorShape

_STANDARD_DPI = 96


class X11Capture:
    """A `ScreenCapture` over one mss instance and one Xlib connection (for the cursor)."""

    def __init__(self, display: str | None = None) -> None:
        name = display if display is not None else os.environ.get("DISPLAY")
        if not name:
            raise PlatformError("no X display: DISPLAY is not set")
        try:
            import mss
            from Xlib import display as xdisplay
            from Xlib.error import DisplayError
        except ImportError as exc:
            raise PlatformError(f"screen capture is not available here: {exc}") from None
        try:
            self._mss: Any = mss.MSS(display=name)
        except mss.ScreenShotError as exc:
            raise PlatformError(f"cannot open X display {name}: {exc}") from None
        self._screenshot_error: type[Exception] = mss.ScreenShotError
        try:
            self._x: Any = xdisplay.Display(name)
        except (DisplayError, OSError) as exc:
            self._mss.close()
            raise PlatformError(f"cannot open X display {name}: {exc}") from None
        self._root = self._x.screen().root
        self._xfixes = self._x.has_extension("XFIXES")
        if self._xfixes:
            self._x.xfixes_query_version()
        self._scale = _scale_percent(self._x)
        self._closed = False

    def monitors(self) -> list[MonitorInfo]:
        try:
            raw = self._mss.monitors
        except self._screenshot_error as exc:
            raise PlatformError(f"cannot list monitors: {exc}") from None
        result = []
        for index, mon in enumerate(raw[:MAX_MONITORS]):
            result.append(
                MonitorInfo(
                    index=index,
                    left=mon["left"],
                    top=mon["top"],
                    width=mon["width"],
                    height=mon["height"],
                    # mss marks none primary on Xvfb; the first monitor is then the primary
                    primary=bool(mon.get("is_primary")) or (index == 1 and len(raw) == 2),
                    name="all monitors" if index == 0 else str(mon.get("output", f"{index}")),
                    scale_percent=self._scale,
                )
            )
        return result

    def grab(self, monitor: MonitorInfo) -> bytearray:
        box = {
            "left": monitor.left,
            "top": monitor.top,
            "width": monitor.width,
            "height": monitor.height,
        }
        try:
            shot = self._mss.grab(box)
        except self._screenshot_error as exc:
            raise PlatformError(f"cannot read the screen: {exc}") from None
        raw: bytearray = shot.raw  # BGRA; never `.rgb` (a 13 ms conversion per frame)
        return raw

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        if not self._xfixes:
            pointer = self._root.query_pointer()
            return CursorInfo(x=pointer.root_x, y=pointer.root_y)
        # One request gives position, serial and image; the image is turned into a
        # message only when the serial changed (a new cursor shape).
        reply = self._x.xfixes_get_cursor_image(self._root)
        shape = None
        if reply.cursor_serial != known_serial:
            shape = _cursor_shape(reply)
        return CursorInfo(x=reply.x, y=reply.y, serial=reply.cursor_serial, shape=shape)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mss.close()
        self._x.close()


def _cursor_shape(reply: Any) -> CursorShape | None:
    width, height = reply.width, reply.height
    if not (0 < width <= MAX_CURSOR_DIMENSION and 0 < height <= MAX_CURSOR_DIMENSION):
        return None
    # XFixes gives premultiplied ARGB as 32-bit words; RGBA bytes are what the console paints.
    rgba = bytearray(width * height * 4)
    for i, argb in enumerate(reply.cursor_image[: width * height]):
        rgba[4 * i] = (argb >> 16) & 0xFF
        rgba[4 * i + 1] = (argb >> 8) & 0xFF
        rgba[4 * i + 2] = argb & 0xFF
        rgba[4 * i + 3] = (argb >> 24) & 0xFF
    return CursorShape(
        width=width,
        height=height,
        hot_x=min(reply.xhot, width - 1),
        hot_y=min(reply.yhot, height - 1),
        rgba=bytes(rgba),
    )


def _scale_percent(x: Any) -> int:
    """DPI scale from the Xft.dpi resource desktops set (96 dpi = 100 %), else 100."""
    atom = x.intern_atom("RESOURCE_MANAGER")
    prop = x.screen().root.get_full_property(atom, 0)
    if prop is None:
        return 100
    value = prop.value.decode("latin-1") if isinstance(prop.value, bytes) else str(prop.value)
    for line in value.splitlines():
        name, _, dpi = line.partition(":")
        if name.strip() == "Xft.dpi":
            try:
                percent = round(float(dpi.strip()) * 100 / _STANDARD_DPI)
            except ValueError:
                return 100
            return min(max(percent, 50), 500)
    return 100


class X11Platform:
    """Opens X11 capture and pynput input on `display` (default: $DISPLAY)."""

    name = "x11"

    def __init__(self, display: str | None = None) -> None:
        self.display = display

    def open_capture(self) -> X11Capture:
        return X11Capture(self.display)

    def open_input(self) -> PynputInput:
        if self.display is not None:
            # pynput reads DISPLAY when first imported; an explicit display must be set first
            os.environ.setdefault("DISPLAY", self.display)
        return PynputInput()
