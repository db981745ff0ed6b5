"""What the session engine needs from the operating system, as small interfaces.

The engine (`agent.runner`) never imports mss, pynput, Xlib or ctypes itself:
it asks a `Platform` for a `ScreenCapture` when the user allows viewing and for
an `InputBackend` when the user allows control, and closes them when the right
goes away. Until then they do not exist (DESIGN §2), and neither does their
display connection.

Coordinates are in the virtual screen's pixels (all monitors together), the same
space mss and pynput use; the engine converts the consultant's
monitor-relative coordinates before calling an `InputBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from protocol.messages import CursorShape, Monitor, MouseButton


class PlatformError(Exception):
    """The display or input system is unavailable or refused a call.

    The message is a sentence a user or admin can act on.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorInfo:
    """One screen area the consultant may watch.

    Index 0 is every monitor together (the virtual screen); 1.. are the single
    monitors, as mss numbers them.
    """

    index: int
    left: int
    top: int
    width: int
    height: int
    primary: bool = False
    name: str = ""
    scale_percent: int = 100

    def to_message(self) -> Monitor:
        return Monitor(
            index=self.index,
            x=self.left,
            y=self.top,
            width=self.width,
            height=self.height,
            scale_percent=self.scale_percent,
            primary=self.primary,
            name=self.name[:64],
        )

    def clamp(self, x: int, y: int) -> tuple[int, int]:
        """Monitor-relative (x, y) → virtual-screen pixels, kept on this monitor."""
        x = min(max(x, 0), self.width - 1)
        y = min(max(y, 0), self.height - 1)
        return self.left + x, self.top + y


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorInfo:
    """Where the pointer is (virtual-screen pixels) and, when it changed, its shape.

    `serial` identifies the shape; `shape` is set only when the caller asked
    for it and the platform can read it cheaply.
    """

    x: int
    y: int
    visible: bool = True
    serial: int | None = None
    shape: CursorShape | None = None


LOOK_NOW = -1
"""`ScreenCapture.wake_fd()`: a drawing or a cursor change is already known; do not wait."""


class ScreenCapture(Protocol):
    """Reads the screen. Used from one thread at a time (the engine's capture thread)."""

    def monitors(self) -> list[MonitorInfo]:
        """Index 0 = all monitors, then each monitor.

        Raises:
            PlatformError: the display cannot be queried.
        """
        ...

    def changed(self) -> bool | None:
        """Whether anything was drawn on the screen since the last call (True the
        first time); None when the platform cannot tell, so the caller grabs and
        compares. A platform that answers must not miss a drawing between its
        answer and the `grab` that follows.

        Raises:
            PlatformError: the display cannot be queried.
        """
        ...

    def damaged_area(self) -> tuple[int, int, int, int] | None:
        """The bounding box (x, y, width, height; root coordinates) of what was drawn,
        as of the last `changed()` that answered True; None: not known (the whole
        screen). Only meaningful right after such a `changed()`."""
        ...

    def grab_area(
        self, monitor: MonitorInfo, area: tuple[int, int, int, int]
    ) -> bytes | bytearray | memoryview:
        """BGRA pixels of `area` (x, y, width, height, relative to the monitor).

        Raises:
            PlatformError: the screen could not be read.
        """
        ...

    def wake_fd(self) -> int | None:
        """A file descriptor that becomes readable when `changed()` may answer True or
        the pointer moves, so a still screen is waited on instead of polled; LOOK_NOW:
        something is already known to be pending, look at once; None: the platform
        cannot tell, poll."""
        ...

    def grab(self, monitor: MonitorInfo) -> bytes | bytearray | memoryview:
        """BGRA pixels of the monitor, `width*height*4` bytes, rows top to bottom.

        Raises:
            PlatformError: the screen could not be read (display gone, secure desktop).
        """
        ...

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        """The pointer; the shape is included when its serial differs from `known_serial`.

        Raises:
            PlatformError: the display cannot be queried.
        """
        ...

    def close(self) -> None:
        """Release the display connection. Safe to call twice."""
        ...


class InputBackend(Protocol):
    """Raw injection calls. Used from one thread at a time (the injector's thread).

    Keys are named as in `protocol.messages.KeyEvent`: one printable character,
    or a `NAMED_KEYS` name.
    """

    def blocked_reason(self) -> str | None:
        """Why input would not arrive now (e.g. the focused window is elevated and the
        OS drops injected input into it), or None. Must be cheap: asked per event."""
        ...

    def move(self, x: int, y: int) -> None: ...

    def button(self, button: MouseButton, down: bool) -> None: ...

    def scroll(self, dx: int, dy: int) -> None:
        """Scroll by wheel notches (positive dy = away from the user, i.e. up)."""
        ...

    def key(self, key: str, down: bool) -> None:
        """Press or release one key.

        Raises:
            PlatformError: this platform has no such key (e.g. F21 on X11).
        """
        ...

    def type_character(self, char: str) -> None:
        """Type one character as the user's keyboard would, whatever the layout."""
        ...

    def close(self) -> None:
        """Release the input connection. Safe to call twice."""
        ...


class Platform(Protocol):
    """Opens capture and input; opening does the OS work, constructing does none."""

    name: str

    def open_capture(self) -> ScreenCapture:
        """Raises:
        PlatformError: no display, or capture is not possible in this session.
        """
        ...

    def open_input(self) -> InputBackend:
        """Raises:
        PlatformError: input injection is not possible in this session.
        """
        ...


def mss_grab(
    mss: Any,
    error: type[Exception],
    monitor: MonitorInfo,
    area: tuple[int, int, int, int] | None,
    failure: str,
) -> bytearray:
    """BGRA pixels of `area` (x, y, width, height, relative to `monitor`; None: all
    of it) through an mss instance; `.raw`, never `.rgb` (a 13 ms conversion per frame).

    Raises:
        PlatformError: mss raised `error`; the message starts with `failure`.
    """
    x, y, width, height = area if area is not None else (0, 0, monitor.width, monitor.height)
    box = {"left": monitor.left + x, "top": monitor.top + y, "width": width, "height": height}
    try:
        raw: bytearray = mss.grab(box).raw
    except error as exc:
        raise PlatformError(f"{failure}: {exc}") from None
    return raw
