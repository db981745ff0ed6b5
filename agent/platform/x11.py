"""The X11 platform: mss for pixels, XFixes for the cursor, pynput for input.

Used for real under Xvfb in the tests (DESIGN §5) and on Linux desktops.
"""

from __future__ import annotations

import os
from typing import Any

from agent.platform.base import LOOK_NOW, CursorInfo, MonitorInfo, PlatformError, mss_grab
from agent.platform.pynput_input import PynputInput
from protocol.limits import MAX_CURSOR_DIMENSION, MAX_MONITORS
from protocol.messages import CursorShape

_STANDARD_DPI = 96
_GRAB_FAILED = "cannot read the screen"

POINTER_REFRESH_LOOKS = 30
"""With XInput 2 raw motion, the pointer's position is asked of the server only when
it moved, or after this many looks without motion (an application's warp)."""

PREMAPPED_LETTERS = {
    "ą": ("aogonek", "Aogonek"),
    "ć": ("cacute", "Cacute"),
    "ę": ("eogonek", "Eogonek"),
    "ł": ("lstroke", "Lstroke"),
    "ń": ("nacute", "Nacute"),
    "ó": ("oacute", "Oacute"),
    "ś": ("sacute", "Sacute"),
    "ź": ("zacute", "Zacute"),
    "ż": ("zabovedot", "Zabovedot"),
}
"""Letters (with their capitals) put on spare keycodes when input opens, if the
keyboard layout lacks them (a US layout). pynput would otherwise "borrow" a keycode
for each one by changing the keyboard mapping just before the key event, and an X
client that handles the event before the mapping change drops the letter (seen
under load: "Zażółć" arrived as "Zażół"). Mapped once, ahead of time, the race is
gone. Other characters missing from the layout still go through pynput's borrowing.
"""


class X11Capture:
    """A `ScreenCapture` over one mss instance and one Xlib connection (for the cursor)."""

    def __init__(self, display: str | None = None) -> None:
        name = display if display is not None else os.environ.get("DISPLAY")
        if not name:
            raise PlatformError("no X display: DISPLAY is not set")
        try:
            import mss
            from Xlib import display as xdisplay
            from Xlib.error import ConnectionClosedError, DisplayError
        except ImportError as exc:
            raise PlatformError(f"screen capture is not available here: {exc}") from None
        from Xlib.ext import ge

        self._generic_event: int = ge.GenericEventCode  # what XI2 events arrive as
        self._x_errors: tuple[type[Exception], ...] = (OSError, ConnectionClosedError, DisplayError)
        try:
            self._mss: Any = mss.MSS(display=name)
        except mss.ScreenShotError as exc:
            raise PlatformError(f"cannot open X display {name}: {exc}") from None
        self._screenshot_error: type[Exception] = mss.ScreenShotError
        try:
            self._x: Any = xdisplay.Display(name)
        except (DisplayError, ConnectionClosedError, OSError) as exc:
            self._mss.close()
            raise PlatformError(f"cannot open X display {name}: {exc}") from None
        self._root = self._x.screen().root
        self._xfixes = self._x.has_extension("XFIXES")
        self._cursor_serial: int | None = None  # of the last shape fetched
        self._cursor_changed = True
        if self._xfixes:
            from Xlib.ext import xfixes

            self._x.xfixes_query_version()
            # a DisplayCursorNotify per new shape: the image is fetched only then
            self._x.xfixes_select_cursor_input(self._root, xfixes.XFixesDisplayCursorNotifyMask)
        self._damage: int | None = None
        self._damage_event = -1
        self._damaged = True  # nothing grabbed yet
        self._box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 since the last look
        self._whole = True  # the next look covers the whole screen (nothing grabbed yet)
        self._area: tuple[int, int, int, int] | None = None  # what the last True covered
        if self._x.has_extension("DAMAGE"):
            from Xlib.ext import damage

            self._x.damage_query_version()
            # a DamageNotify each time the damage's bounding box grows, with the box;
            # `changed()` subtracts the damage, which starts a new box
            self._damage = self._root.damage_create(damage.DamageReportBoundingBox)
            first_event = self._x.query_extension("DAMAGE").first_event
            self._damage_event = first_event + damage.DamageNotifyCode
        self._pointer_events = False
        self._pointer: tuple[int, int] | None = None  # root position at the last answer
        self._pointer_moved = True  # raw motion seen since then
        self._pointer_age = 0  # answers given from `_pointer` since it was asked for
        if self._damage is not None and self._x.has_extension("XInputExtension"):
            from Xlib.ext import xinput

            try:
                # XI2 raw motion: an event per pointer movement, so a still screen is
                # waited on (`wake_fd`) rather than polled for the pointer
                # announce XI 2.2: under 2.0 the server holds raw events back while
                # another client grabs the pointer (an open menu, a drag)
                reply = xinput.XIQueryVersion(
                    display=self._x.display,
                    opcode=self._x.display.get_extension_major(xinput.extname),
                    major_version=2,
                    minor_version=2,
                )
                if (reply.major_version, reply.minor_version) >= (2, 1):
                    self._root.xinput_select_events(
                        [(xinput.AllMasterDevices, xinput.RawMotionMask)]
                    )
                    self._pointer_events = True
            except self._x_errors:
                self._pointer_events = False
        self._x.sync()
        self._scale = _scale_percent(self._x)
        self._closed = False

    def wake_fd(self) -> int | None:
        """A descriptor that becomes readable when the screen is drawn on, the cursor
        changes shape or the pointer moves; LOOK_NOW when that is already known; None
        when the caller must poll instead (no DAMAGE or XInput 2 here).

        Called only between grabs, never while another call runs (one thread at a time).
        """
        if self._damage is None or not self._pointer_events:
            return None
        if self._damaged or self._cursor_changed or self._x.display.event_queue:
            # already known or queued (read while the cursor was asked for): the server
            # sends nothing more until the next look, so the descriptor would stay silent
            return LOOK_NOW
        return int(self._x.fileno())

    def _drain(self) -> None:
        """Read the events that arrived (never blocks): damage and cursor-shape changes."""
        try:
            while self._x.pending_events():
                event = self._x.next_event()
                if self._damage is not None and event.type == self._damage_event:
                    self._damaged = True
                    a = event.area
                    self._box = _union(self._box, (a.x, a.y, a.x + a.width, a.y + a.height))
                elif event.type == self._generic_event:
                    self._pointer_moved = True  # XI2 raw motion
                else:  # the only other events selected: a new cursor shape
                    self._cursor_changed = True
        except self._x_errors as exc:
            raise PlatformError(f"lost the X display: {exc}") from None

    def changed(self) -> bool | None:
        """Whether anything was drawn on the screen since the last call (X DAMAGE).

        True the first time. None when the server has no DAMAGE extension: the
        caller must grab and compare to know.

        Raises:
            PlatformError: the display connection was lost.
        """
        if self._damage is None:
            return None
        self._drain()
        if not self._damaged:
            return False
        # clear the damage before the grab that follows, and wait until the server has
        # done so (the grab goes over mss's own connection): a drawing after this
        # point raises a new DamageNotify, one before it is in the grab
        try:
            self._x.damage_subtract(self._damage)
            self._x.sync()
        except self._x_errors as exc:
            raise PlatformError(f"lost the X display: {exc}") from None
        box, whole = self._box, self._whole
        self._box, self._whole, self._damaged = None, False, False
        # boxes reported between the first look and the subtract belong to this grab;
        # ones after it too (they are drawn before the grab), and they stay pending,
        # since the server now holds damage that the next look must clear again
        self._drain()
        self._area = None if whole or box is None else _union(box, self._box)
        return True

    def damaged_area(self) -> tuple[int, int, int, int] | None:
        """The bounding box (x, y, width, height, root coordinates) of what was drawn,
        as of the last `changed()` that answered True; None: the whole screen."""
        if self._area is None:
            return None
        x0, y0, x1, y1 = self._area
        return x0, y0, x1 - x0, y1 - y0

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
        return mss_grab(self._mss, self._screenshot_error, monitor, None, _GRAB_FAILED)

    def grab_area(self, monitor: MonitorInfo, area: tuple[int, int, int, int]) -> bytearray:
        """BGRA pixels of `area` (x, y, width, height, relative to the monitor).

        Raises:
            PlatformError: the screen could not be read.
        """
        return mss_grab(self._mss, self._screenshot_error, monitor, area, _GRAB_FAILED)

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        if not self._xfixes:
            pointer = self._root.query_pointer()
            return CursorInfo(x=pointer.root_x, y=pointer.root_y)
        self._drain()
        if self._cursor_changed or known_serial is None or known_serial != self._cursor_serial:
            # a new shape (or a caller that has not seen ours): one request gives
            # position, serial and image, and the image becomes a message only
            # when its serial is not the caller's
            self._cursor_changed = False
            reply = self._x.xfixes_get_cursor_image(self._root)
            self._cursor_serial = reply.cursor_serial
            shape = _cursor_shape(reply) if reply.cursor_serial != known_serial else None
            self._pointer, self._pointer_moved, self._pointer_age = (reply.x, reply.y), False, 0
            return CursorInfo(x=reply.x, y=reply.y, serial=reply.cursor_serial, shape=shape)
        if (
            self._pointer_events
            and not self._pointer_moved
            and self._pointer is not None
            and self._pointer_age < POINTER_REFRESH_LOOKS
        ):
            # no raw motion since the last answer: the pointer is where it was (a round
            # trip and a reply to parse saved per frame); a warp by an application makes
            # no raw motion, so the position is asked for anyway every so many looks
            self._pointer_age += 1
            x, y = self._pointer
            return CursorInfo(x=x, y=y, serial=self._cursor_serial)
        # the same shape: the position alone is a much smaller reply to parse
        pointer = self._root.query_pointer()
        self._pointer, self._pointer_moved, self._pointer_age = (
            (pointer.root_x, pointer.root_y),
            False,
            0,
        )
        return CursorInfo(x=pointer.root_x, y=pointer.root_y, serial=self._cursor_serial)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mss.close()
        self._x.close()


Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def _union(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both (None: no box)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


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


def premap_letters(
    display: str | None, letters: dict[str, tuple[str, str]] = PREMAPPED_LETTERS
) -> int:
    """Put `letters` (lower case on level 1, upper case on level 2) on keycodes that
    have no keysym, unless the layout has them already. Returns how many were added.

    The mapping is left in place when the session ends: spare keycodes that no
    physical key produces change nothing for the user, and removing the letters
    could race with the last characters the consultant typed.

    Raises:
        PlatformError: the display cannot be opened.
    """
    from Xlib import XK
    from Xlib import display as xdisplay
    from Xlib.error import ConnectionClosedError, DisplayError

    try:
        x = xdisplay.Display(display)
    except (DisplayError, ConnectionClosedError, OSError) as exc:
        raise PlatformError(f"cannot open X display {display}: {exc}") from None
    try:
        first = x.display.info.min_keycode
        count = x.display.info.max_keycode - first + 1
        mapping = x.get_keyboard_mapping(first, count)
        present = {sym for row in mapping for sym in row if sym}
        spare = [first + i for i, row in enumerate(mapping) if not any(row)]
        added = 0
        XK.load_keysym_group("latin2")  # the legacy keysyms pynput looks these letters up by
        for lower_name, upper_name in letters.values():
            lower = XK.string_to_keysym(lower_name)
            upper = XK.string_to_keysym(upper_name)
            if not lower or lower in present or not spare:
                continue
            width = len(mapping[0])
            row = [lower, upper, lower, upper] + [0] * max(0, width - 4)
            x.change_keyboard_mapping(spare.pop(), [tuple(row[:width])])
            added += 1
        x.sync()
        return added
    finally:
        x.close()


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
        premap_letters(self.display or os.environ.get("DISPLAY"))
        return PynputInput()
