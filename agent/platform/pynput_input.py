"""Input injection through pynput: the same calls drive X11 (XTest) and Windows (SendInput).

pynput connects to the display when imported, so it is imported only here, when
the user has allowed control (PLATFORM.md: without DISPLAY the import fails).
"""

from __future__ import annotations

from typing import Any

from agent.platform.base import PlatformError
from protocol.messages import MouseButton

# Back/forward are X buttons 8/9 on X11 and XBUTTON1/2 on Windows; pynput names
# them differently per backend, so each is looked up by the names it may have.
_BUTTON_NAMES: dict[MouseButton, tuple[str, ...]] = {
    MouseButton.LEFT: ("left",),
    MouseButton.MIDDLE: ("middle",),
    MouseButton.RIGHT: ("right",),
    MouseButton.BACK: ("x1", "button8"),
    MouseButton.FORWARD: ("x2", "button9"),
}


class PynputInput:
    """An `InputBackend` over pynput's keyboard and mouse controllers."""

    def __init__(self) -> None:
        try:
            from pynput import keyboard, mouse
        except ImportError as exc:  # pynput raises ImportError when it finds no display
            raise PlatformError(f"input injection is not available here: {exc}") from None
        self._keyboard_module: Any = keyboard
        self._keyboard: Any = keyboard.Controller()
        self._mouse: Any = mouse.Controller()
        self._buttons: dict[MouseButton, Any] = {}
        for button, names in _BUTTON_NAMES.items():
            for name in names:
                if hasattr(mouse.Button, name):
                    self._buttons[button] = getattr(mouse.Button, name)
                    break

    def blocked_reason(self) -> str | None:
        return None  # X11 has no integrity levels; Windows overrides this

    def move(self, x: int, y: int) -> None:
        self._mouse.position = (x, y)

    def button(self, button: MouseButton, down: bool) -> None:
        target = self._buttons.get(button)
        if target is None:
            raise PlatformError(f"this platform has no {button.name.lower()} mouse button")
        if down:
            self._mouse.press(target)
        else:
            self._mouse.release(target)

    def scroll(self, dx: int, dy: int) -> None:
        self._mouse.scroll(dx, dy)

    def key(self, key: str, down: bool) -> None:
        target = self._resolve(key)
        if down:
            self._keyboard.press(target)
        else:
            self._keyboard.release(target)

    def type_character(self, char: str) -> None:
        self._keyboard.type(char)

    def close(self) -> None:
        """pynput keeps one display connection per controller; dropping them closes it."""
        self._keyboard = self._mouse = None

    def _resolve(self, key: str) -> Any:
        if len(key) == 1:
            return self._keyboard_module.KeyCode.from_char(key)
        try:
            return self._keyboard_module.Key[key]
        except KeyError:
            raise PlatformError(f"this platform has no {key!r} key") from None
