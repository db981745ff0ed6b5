"""The user's global *End session now* key combination (issue 4: end by a hotkey).

Opened by the engine at the first *Allow* and closed at the end of the session,
so no keyboard hook exists while no session runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from agent.platform.base import PlatformError

END_HOTKEY = "<ctrl>+<alt>+<end>"
"""pynput's `HotKey.parse` syntax. Ctrl+Alt+End: free in Windows and X11 desktops,
hard to press by accident, and the same on Polish and US layouts."""

JOIN_TIMEOUT = 5.0


class EndHotkey:
    """A global key combination that calls `action` when the *user* presses it.

    pynput's GlobalHotKeys ignores injected events where the OS marks them
    (Windows: LLKHF_INJECTED), so on Windows the consultant cannot trigger it; on
    X11 pynput cannot tell (PLATFORM.md), which is harmless for *End session*: the
    consultant may end the session anyway. It matches one combination and keeps
    no record of other keys: nothing typed is stored or forwarded.
    """

    def __init__(self, combination: str, action: Callable[[], None]) -> None:
        try:
            from pynput import keyboard
        except ImportError as exc:
            raise PlatformError(f"global hotkeys are not available here: {exc}") from None
        try:
            self._listener: Any = keyboard.GlobalHotKeys({combination: action})
        except ValueError as exc:
            raise PlatformError(f"bad hotkey {combination!r}: {exc}") from None
        self._listener.start()
        self._listener.wait()  # the hook is in place once start() returns here

    def close(self) -> None:
        """Stop listening; returns when the hook is gone. Safe to call twice."""
        listener = self._listener
        listener.stop()
        # pynput 1.8 on X11 queues its RecordDisableContext on the recording
        # connection without flushing it, so the listener thread stays blocked until
        # the next key event (5 s join timeouts in practice). Sending the same request
        # on pynput's idle "stop" connection, as its own cleanup does, ends it now.
        stop_display = getattr(listener, "_display_stop", None)
        context = getattr(listener, "_context", None)
        if stop_display is not None and context is not None and listener.is_alive():
            with contextlib.suppress(Exception):  # the listener may be closing it now
                stop_display.record_disable_context(context)
                stop_display.flush()
        if listener.is_alive():
            listener.join(JOIN_TIMEOUT)
