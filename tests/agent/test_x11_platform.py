"""The X11 platform on a real Xvfb display: monitors, BGRA grabs, the cursor, keymap."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from Xlib import XK, X
from Xlib import display as xdisplay_module
from Xlib.ext import xtest

from agent.platform.base import LOOK_NOW, PlatformError
from agent.platform.x11 import POINTER_REFRESH_LOOKS, X11Capture, premap_letters
from tests.support.xdisplay import XDisplay


def test_capture_lists_monitors_grabs_bgra_and_reads_the_cursor(xdisplay: XDisplay) -> None:
    capture = X11Capture(xdisplay.name)
    try:
        everything, screen = capture.monitors()
        assert (everything.index, screen.index) == (0, 1)
        assert (screen.width, screen.height, screen.primary) == (1280, 800, True)
        assert screen.scale_percent == 100
        pixels = capture.grab(screen)
        assert len(pixels) == 1280 * 800 * 4
        cursor = capture.cursor(known_serial=None)
        assert 0 <= cursor.x < 1280 and 0 <= cursor.y < 800
        assert cursor.shape is not None  # XFixes gives the image the first time
        assert len(cursor.shape.rgba) == cursor.shape.width * cursor.shape.height * 4
        again = capture.cursor(known_serial=cursor.serial)
        assert again.shape is None  # unchanged shape: not sent again
    finally:
        capture.close()
        capture.close()


def test_capture_reports_drawing_through_damage_and_misses_none(
    capture: X11Capture, x: Any
) -> None:
    screen = capture.monitors()[1]
    assert capture.changed() is True  # nothing grabbed yet
    capture.grab(screen)
    # settle: whatever else is drawing on the shared display (bounded)
    for _ in range(50):
        if capture.changed() is False:
            break
        capture.grab(screen)
    assert capture.changed() is False
    window = _square(x, 10, 64, x.screen().white_pixel)
    assert _eventually(capture.changed)  # a window appeared: drawing was reported
    # ... with where: around the window, not the whole screen (other windows of the
    # shared display may blink meanwhile: their boxes are added, bounded)
    boxes = [capture.damaged_area()]
    for _ in range(50):
        if _covers(boxes, (10, 10, 74, 74)):
            break
        time.sleep(0.01)
        if capture.changed():
            boxes.append(capture.damaged_area())
    assert _covers(boxes, (10, 10, 74, 74)), boxes
    assert all(b is not None and b[2] * b[3] < screen.width * screen.height for b in boxes)
    before = capture.grab(screen)
    window.change_attributes(background_pixel=x.screen().black_pixel)
    window.clear_area()
    x.sync()
    # the drawing after `changed()` answered is in the next answer, and the grab differs
    assert _eventually(capture.changed)
    assert capture.grab(screen) != before
    block = capture.grab_area(screen, (10, 10, 64, 64))  # the window alone: black
    assert len(block) == 64 * 64 * 4
    assert set(bytes(block)[0::4]) == {0} and set(bytes(block)[2::4]) == {0}
    window.destroy()
    x.sync()


def test_a_new_cursor_shape_is_fetched_once_then_only_the_position(
    capture: X11Capture, x: Any
) -> None:
    from Xlib import Xcursorfont

    first = capture.cursor(known_serial=None)
    assert first.shape is not None
    assert capture.cursor(known_serial=first.serial).shape is None
    font = x.open_font("cursor")
    shape = font.create_glyph_cursor(
        font, Xcursorfont.watch, Xcursorfont.watch + 1, (0, 0, 0), (65535, 65535, 65535)
    )
    # a window of our own, on top, with the pointer in it, shows our cursor
    root = x.screen().root
    window = root.create_window(
        0, 0, 100, 100, 0, x.screen().root_depth, override_redirect=True, cursor=shape
    )
    window.map()
    window.raise_window()
    root.warp_pointer(50, 50)
    x.sync()
    changed = None
    for _ in range(100):  # the DisplayCursorNotify arrives on the capture's connection
        info = capture.cursor(known_serial=first.serial)
        if info.shape is not None:
            changed = info
            break
        x.sync()
    assert changed is not None and changed.serial != first.serial
    assert capture.cursor(known_serial=changed.serial).shape is None
    window.destroy()
    x.sync()


def test_a_still_screen_is_waited_on_and_wakes_on_a_drawing_or_the_pointer(
    capture: X11Capture, x: Any
) -> None:
    screen = capture.monitors()[1]
    capture.changed()
    capture.grab(screen)
    for what in ("pointer", "drawing"):
        for _ in range(50):  # drain what is queued already (bounded)
            capture.changed()
            capture.cursor(known_serial=None)
            if capture.wake_fd() not in (None, LOOK_NOW):
                break
        fd = capture.wake_fd()
        assert fd is not None and fd != LOOK_NOW  # DAMAGE and XInput 2: wait, not poll
        if what == "pointer":  # as a mouse moves it (XTest is a device; a warp is not)
            xtest.fake_input(x, X.MotionNotify, x=217, y=150)
        else:
            window = _square(x, 300, 40, x.screen().white_pixel)
        x.sync()
        readable, _, _ = select.select([fd], [], [], 2.0)
        assert readable, f"no wake-up for the {what}"
        if what == "drawing":
            assert _eventually(capture.changed)
            window.destroy()
            x.sync()


def test_a_drawing_read_with_the_cursor_is_not_waited_for_again(
    capture: X11Capture, x: Any
) -> None:
    screen = capture.monitors()[1]
    capture.changed()
    capture.grab(screen)
    window = _square(x, 400, 30, x.screen().black_pixel)
    # the DamageNotify is read while the cursor is asked for (as the runner does
    # after a grab): it must not then wait on a descriptor that stays silent
    fd: int | None = None
    for _ in range(100):
        capture.cursor(known_serial=None)
        fd = capture.wake_fd()
        if fd == LOOK_NOW:
            break
        assert fd is not None
        if select.select([fd], [], [], 0.01)[0]:
            break
    assert fd == LOOK_NOW or (fd is not None and select.select([fd], [], [], 0)[0])
    assert _eventually(capture.changed)
    window.destroy()
    x.sync()


def test_the_pointer_is_asked_for_when_it_moved_and_now_and_then_otherwise(
    capture: X11Capture, x: Any
) -> None:
    first = capture.cursor(known_serial=None)
    xtest.fake_input(x, X.MotionNotify, x=321, y=234)  # as a mouse (or the consultant)
    x.sync()
    moved = None
    for _ in range(100):  # the raw motion reaches the capture's connection (bounded)
        info = capture.cursor(known_serial=first.serial)
        if (info.x, info.y) == (321, 234):
            moved = info
            break
        time.sleep(0.01)
    assert moved is not None
    x.screen().root.warp_pointer(100, 90)  # an application's warp: no raw motion
    x.sync()
    seen = [
        (i.x, i.y)
        for i in (
            capture.cursor(known_serial=first.serial) for _ in range(POINTER_REFRESH_LOOKS + 1)
        )
    ]
    assert seen[-1] == (100, 90)  # asked for again within POINTER_REFRESH_LOOKS looks


def _square(x: Any, at: int, size: int, pixel: int) -> Any:
    """A mapped square window of one colour at (at, at), placed where we say (no window
    manager's placing), drawn by the time this returns."""
    window = x.screen().root.create_window(
        at, at, size, size, 0, x.screen().root_depth, background_pixel=pixel, override_redirect=True
    )
    window.map()
    x.sync()
    return window


def _covers(
    boxes: list[tuple[int, int, int, int] | None], corners: tuple[int, int, int, int]
) -> bool:
    """The union of (x, y, w, h) boxes covers the (x0, y0, x1, y1) rectangle."""
    known = [b for b in boxes if b is not None]
    if not known:
        return False
    x0 = min(b[0] for b in known)
    y0 = min(b[1] for b in known)
    x1 = max(b[0] + b[2] for b in known)
    y1 = max(b[1] + b[3] for b in known)
    return x0 <= corners[0] and y0 <= corners[1] and x1 >= corners[2] and y1 >= corners[3]


def _eventually(check: Callable[[], object], tries: int = 100) -> bool:
    """True once `check()` is truthy, polled with a short sleep (bounded: ~1 s)."""
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def capture(xdisplay: XDisplay) -> Iterator[X11Capture]:
    """The capture under test, closed afterwards."""
    capture = X11Capture(xdisplay.name)
    yield capture
    capture.close()


@pytest.fixture
def x(xdisplay: XDisplay) -> Iterator[Any]:
    """A second X connection, the "other applications" that draw and move the pointer."""
    x = xdisplay_module.Display(xdisplay.name)
    yield x
    x.close()


def test_capture_without_a_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(PlatformError, match="no X display"):
        X11Capture()


def test_polish_letters_are_put_on_spare_keycodes_once(xdisplay: XDisplay) -> None:
    premap_letters(xdisplay.name)  # may already have run in a session test
    assert premap_letters(xdisplay.name) == 0
    x = xdisplay_module.Display(xdisplay.name)
    try:
        XK.load_keysym_group("latin2")
        for name in ("aogonek", "Zabovedot", "lstroke", "oacute"):
            assert x.keysym_to_keycode(XK.string_to_keysym(name)) != 0, name
    finally:
        x.close()
