"""The consultant's input applied to the PC, only while the user lets it be.

An `Injector` exists only while the session is CONTROLLING (DESIGN §2): the
engine creates it on the user's *Allow control* and closes it when control ends
(view only, hand-back, end). Closing releases every key and button it still
holds, so no Ctrl or mouse button stays stuck on the user's PC.

Injection runs on the injector's own thread, so typing a long `TypeText` does
not stall the session loop. Every step takes `_lock` and checks `_active` first;
`pause()` and `close()` clear `_active` first and then take the lock, so once they
return not one more event reaches the OS (and a long text stops mid-way).

Key identity: `KeyEvent.key` is the character the key produced ("a", "A", "ą",
"@") or a named key. Shift and AltGr are already part of a character, so for a
character only Ctrl, Alt and Meta are held around it (Ctrl+C, Alt+F); a named key
gets every modifier (Shift+Tab, Ctrl+Alt+Delete is not injectable anyway).
`TypeText` types text character by character, whatever the keyboard layout.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.platform.base import InputBackend, MonitorInfo, PlatformError
from protocol.messages import (
    KeyEvent,
    Message,
    Modifiers,
    MouseButton,
    PointerButton,
    PointerMove,
    Scroll,
    TypeText,
)

log = logging.getLogger(__name__)

MAX_QUEUED_INPUT = 1024
"""Input messages waiting for the injector thread. Injection takes well under a
millisecond per event; a backlog this long means the consultant's side floods,
and dropping is better than replaying stale input seconds late."""

MODIFIER_KEYS: dict[Modifiers, str] = {
    Modifiers.SHIFT: "shift",
    Modifiers.CTRL: "ctrl",
    Modifiers.ALT: "alt",
    Modifiers.META: "cmd",
    Modifiers.ALTGR: "alt_gr",
}
_MODIFIER_NAMES = frozenset({*MODIFIER_KEYS.values(), "shift_r", "ctrl_r", "alt_r", "cmd_r"})
_CHARACTER_MODIFIERS = Modifiers.CTRL | Modifiers.ALT | Modifiers.META


@dataclass(frozen=True, slots=True)
class _Job:
    message: Message
    monitor: MonitorInfo | None


_STOP = object()
_NO_MONITOR = MonitorInfo(index=0, left=0, top=0, width=1, height=1)


class Injector:
    """Applies input messages through an `InputBackend` on its own thread."""

    def __init__(
        self, backend: InputBackend, on_blocked: Callable[[str | None], None] | None = None
    ) -> None:
        """`on_blocked(reason)` is called (on the injector thread) when input starts being
        dropped because the platform says it would not arrive, and with None when it
        arrives again."""
        self._backend = backend
        self._on_blocked = on_blocked
        self._blocked: str | None = None
        self._lock = threading.Lock()
        self._active = True
        self._paused = False
        self._keys_down: set[str] = set()
        self._held_for: dict[str, set[str]] = {}  # key -> modifiers we pressed just for it
        self._buttons_down: set[MouseButton] = set()
        self._queue: queue.Queue[object] = queue.Queue(MAX_QUEUED_INPUT)
        self.overflowed = 0  # dropped because the queue was full (a flood)
        self.injected = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="zgoda-injector", daemon=True)
        self._thread.start()

    # -- the engine's side (session loop thread)

    def submit(self, message: Message, monitor: MonitorInfo | None) -> bool:
        """Queue one input message; False if it was dropped (paused, closed, or flooded).

        Pointer input needs the monitor the consultant sees (its coordinates are
        relative to it); before the first layout it is dropped.
        """
        pointer = isinstance(message, PointerMove | PointerButton | Scroll)
        if not self._active or self._paused or (pointer and monitor is None):
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(_Job(message, monitor))
        except queue.Full:
            self.dropped += 1
            self.overflowed += 1
            if self.overflowed == 1 or self.overflowed % 1000 == 0:  # a line, not a flood
                log.warning("input queue full: %d events dropped so far", self.overflowed)
            return False
        return True

    def pause(self) -> None:
        """An agent window is on screen: drop queued input and release held keys now."""
        self._paused = True  # seen by the injector thread before its next event or character
        with self._lock:
            self._drain()
            self._release_all()

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        """Stop for good: nothing more is injected once this returns. Safe to call twice."""
        if not self._active:
            return
        # Cleared before taking the lock: the injector thread checks it under the lock
        # before every event and character, so at most the one in progress completes.
        self._active = False
        with self._lock:
            self._drain()
            self._release_all()
            self._backend.close()
        self._queue.put(_STOP)
        self._thread.join(timeout=5)

    # -- the injector thread

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            assert isinstance(job, _Job)
            try:
                self._apply(job)
            except PlatformError as exc:
                log.warning("input refused by the platform: %s", exc)
            except Exception:
                # A failing OS call must not kill the injector thread and leave keys
                # held; the event is lost, the next one is tried.
                log.exception("injecting %s failed", type(job.message).__name__)

    def _apply(self, job: _Job) -> None:
        if self._check_blocked():
            return
        message, monitor = job.message, job.monitor
        if monitor is None:  # submit() let no pointer input through without one
            monitor = _NO_MONITOR
        if isinstance(message, TypeText):
            for char in message.text:  # one lock per character: close() stops mid-text
                with self._lock:
                    if not self._usable():
                        return
                    self._backend.type_character(char)
            with self._lock:
                self.injected += 1
            return
        with self._lock:
            if not self._usable():
                return
            if isinstance(message, PointerMove):
                self._backend.move(*monitor.clamp(message.x, message.y))
            elif isinstance(message, PointerButton):
                self._backend.move(*monitor.clamp(message.x, message.y))
                self._backend.button(message.button, message.down)
                if message.down:
                    self._buttons_down.add(message.button)
                else:
                    self._buttons_down.discard(message.button)
            elif isinstance(message, Scroll):
                self._backend.move(*monitor.clamp(message.x, message.y))
                self._backend.scroll(message.dx, message.dy)
            elif isinstance(message, KeyEvent):
                self._key(message)
            else:
                raise TypeError(f"{type(message).__name__} is not input")
            self.injected += 1

    def _check_blocked(self) -> bool:
        """Drop the event if the platform says it would not arrive; report changes."""
        reason = self._backend.blocked_reason()
        if reason != self._blocked:
            self._blocked = reason
            if self._on_blocked is not None:
                self._on_blocked(reason)
        if reason is not None:
            with self._lock:
                self.dropped += 1
            return True
        return False

    def _usable(self) -> bool:
        return self._active and not self._paused

    def _key(self, event: KeyEvent) -> None:
        key = event.key
        if key in _MODIFIER_NAMES:
            self._press(key, event.down)
            return
        if not event.down:
            if key in self._keys_down:
                self._press(key, False)
            for modifier in self._held_for.pop(key, set()):
                self._press(modifier, False)
            return
        wanted = event.modifiers & _CHARACTER_MODIFIERS if len(key) == 1 else event.modifiers
        extra: set[str] = set()
        for flag, name in MODIFIER_KEYS.items():
            if flag in wanted and name not in self._keys_down:
                self._press(name, True)
                extra.add(name)
        self._press(key, True)
        if extra:
            self._held_for[key] = extra

    def _press(self, key: str, down: bool) -> None:
        self._backend.key(key, down)
        if down:
            self._keys_down.add(key)
        else:
            self._keys_down.discard(key)

    def _release_all(self) -> None:
        """Called with the lock held: let go of everything the consultant left pressed."""
        for key in sorted(self._keys_down, key=lambda k: k in _MODIFIER_NAMES):
            try:
                self._backend.key(key, False)
            except PlatformError:
                log.warning("could not release %r", key)
        for button in self._buttons_down:
            self._backend.button(button, False)
        self._keys_down.clear()
        self._held_for.clear()
        self._buttons_down.clear()

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is _STOP:  # keep the stop request for the thread
                self._queue.put_nowait(job)
                return
            self.dropped += 1
