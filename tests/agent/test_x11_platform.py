"""The X11 platform on a real Xvfb display: monitors, BGRA grabs, the cursor, keymap."""

from __future__ import annotations

import pytest
from Xlib import XK
from Xlib import display as xdisplay_module

from agent.platform.base import PlatformError
from agent.platform.x11 import X11Capture, premap_letters
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
