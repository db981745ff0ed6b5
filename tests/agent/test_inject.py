"""The injector's rules with a recording stand-in for the OS calls (named as such).

Real injection into a real window is tested in test_session_x11.py; here the
order of key presses, modifier handling and release-on-close are checked
exactly, which a window cannot show.
"""

from __future__ import annotations

import threading
import time

import pytest

from agent.inject import Injector
from agent.platform.base import MonitorInfo, PlatformError
from protocol.messages import (
    KeyEvent,
    Modifiers,
    MouseButton,
    PointerButton,
    PointerMove,
    Scroll,
    TypeText,
)

MONITOR = MonitorInfo(index=1, left=100, top=50, width=800, height=600)


class RecordingInput:
    """Stands in for the OS: records each call. `gate` can hold the injector thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False
        self.blocked: str | None = None

    def blocked_reason(self) -> str | None:
        return self.blocked

    def move(self, x: int, y: int) -> None:
        self.calls.append(("move", x, y))

    def button(self, button: MouseButton, down: bool) -> None:
        self.calls.append(("button", button, down))

    def scroll(self, dx: int, dy: int) -> None:
        self.calls.append(("scroll", dx, dy))

    def key(self, key: str, down: bool) -> None:
        if key == "f24":
            raise PlatformError("no f24 here")
        self.calls.append(("key", key, down))

    def type_character(self, char: str) -> None:
        self.gate.wait(5)
        self.calls.append(("type", char))

    def close(self) -> None:
        self.closed = True


def settle(injector: Injector, count: int) -> None:
    deadline = time.monotonic() + 5
    while injector.injected + injector.dropped < count:
        assert time.monotonic() < deadline, "injector did not finish"
        time.sleep(0.005)


@pytest.fixture
def backend() -> RecordingInput:
    return RecordingInput()


def test_pointer_coordinates_are_relative_to_the_monitor_and_clamped(
    backend: RecordingInput,
) -> None:
    injector = Injector(backend)
    injector.submit(PointerMove(x=10, y=20), MONITOR)
    injector.submit(PointerButton(button=MouseButton.LEFT, down=True, x=5000, y=-3), MONITOR)
    injector.submit(Scroll(dx=0, dy=-2, x=0, y=0), MONITOR)
    settle(injector, 3)
    injector.close()
    assert backend.calls == [
        ("move", 110, 70),
        ("move", 899, 50),
        ("button", MouseButton.LEFT, True),
        ("move", 100, 50),
        ("scroll", 0, -2),
        ("button", MouseButton.LEFT, False),  # released by close(): never left pressed
    ]
    assert backend.closed


def test_pointer_input_without_a_monitor_is_dropped(backend: RecordingInput) -> None:
    injector = Injector(backend)
    assert not injector.submit(PointerMove(x=1, y=1), None)
    assert injector.submit(TypeText(text="a"), None)
    settle(injector, 2)
    injector.close()
    assert backend.calls == [("type", "a")]


def test_shortcut_holds_ctrl_only_around_its_key_and_characters_ignore_shift_altgr(
    backend: RecordingInput,
) -> None:
    injector = Injector(backend)
    ctrl_shift = Modifiers.CTRL | Modifiers.SHIFT
    for event in (
        KeyEvent(key="C", down=True, modifiers=ctrl_shift),
        KeyEvent(key="C", down=False, modifiers=ctrl_shift),
        KeyEvent(key="ą", down=True, modifiers=Modifiers.ALTGR),
        KeyEvent(key="ą", down=False, modifiers=Modifiers.ALTGR),
        KeyEvent(key="tab", down=True, modifiers=Modifiers.SHIFT),
        KeyEvent(key="tab", down=False, modifiers=Modifiers.SHIFT),
    ):
        injector.submit(event, MONITOR)
    settle(injector, 6)
    injector.close()
    assert backend.calls == [
        ("key", "ctrl", True),
        ("key", "C", True),
        ("key", "C", False),
        ("key", "ctrl", False),
        ("key", "ą", True),
        ("key", "ą", False),
        ("key", "shift", True),
        ("key", "tab", True),
        ("key", "tab", False),
        ("key", "shift", False),
    ]


def test_close_releases_every_held_key_modifiers_last(backend: RecordingInput) -> None:
    injector = Injector(backend)
    injector.submit(KeyEvent(key="ctrl", down=True), MONITOR)
    injector.submit(KeyEvent(key="alt_gr", down=True), MONITOR)
    injector.submit(KeyEvent(key="x", down=True), MONITOR)
    settle(injector, 3)
    injector.close()
    injector.close()  # twice is fine
    released = [c for c in backend.calls if c[0] == "key" and c[2] is False]
    assert released[0] == ("key", "x", False)
    assert sorted(released[1:]) == [("key", "alt_gr", False), ("key", "ctrl", False)]
    assert not injector.submit(KeyEvent(key="y", down=True), MONITOR)


def test_close_stops_a_long_text_midway(backend: RecordingInput) -> None:
    backend.gate.clear()  # the OS is slow: the first character blocks
    injector = Injector(backend)
    injector.submit(TypeText(text="password123"), MONITOR)
    deadline = time.monotonic() + 5
    closer = threading.Thread(target=injector.close)
    while not injector._lock.locked():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    closer.start()
    while injector._active:  # close() has said stop before the slow character ends
        assert time.monotonic() < deadline
        time.sleep(0.001)
    backend.gate.set()
    closer.join(5)
    typed = "".join(str(c[1]) for c in backend.calls if c[0] == "type")
    assert len(typed) <= 1  # at most the character already being typed


def test_pause_drops_input_and_releases_keys_until_resumed(backend: RecordingInput) -> None:
    injector = Injector(backend)
    injector.submit(KeyEvent(key="shift", down=True), MONITOR)
    settle(injector, 1)
    injector.pause()
    assert ("key", "shift", False) in backend.calls
    assert not injector.submit(TypeText(text="no"), MONITOR)
    injector.resume()
    assert injector.submit(TypeText(text="ok"), MONITOR)
    settle(injector, 3)
    injector.close()
    assert [c for c in backend.calls if c[0] == "type"] == [("type", "o"), ("type", "k")]


def test_a_key_the_platform_lacks_is_skipped_and_injection_goes_on(
    backend: RecordingInput,
) -> None:
    injector = Injector(backend)
    injector.submit(KeyEvent(key="f24", down=True), MONITOR)
    injector.submit(TypeText(text="z"), MONITOR)
    deadline = time.monotonic() + 5
    while ("type", "z") not in backend.calls:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    injector.close()


def test_input_the_platform_says_would_not_arrive_is_dropped_and_reported(
    backend: RecordingInput,
) -> None:
    reports: list[str | None] = []
    injector = Injector(backend, on_blocked=reports.append)
    backend.blocked = "elevated window"
    injector.submit(TypeText(text="a"), MONITOR)
    injector.submit(TypeText(text="b"), MONITOR)
    settle(injector, 2)
    backend.blocked = None
    injector.submit(TypeText(text="c"), MONITOR)
    settle(injector, 3)
    injector.close()
    assert backend.calls == [("type", "c")]
    assert reports == ["elevated window", None]
    assert injector.dropped == 2
