"""Sliding-window rate limits: failed claims and logins per address and in all.

A window keeps the times of the last `limit` events per key (a deque bounded
by the limit), so memory per address is a handful of floats; addresses that
fell silent are dropped when the table grows past `MAX_TRACKED_KEYS`.
"""

from __future__ import annotations

from collections import deque

WINDOW_SECONDS = 60.0
MAX_TRACKED_KEYS = 100_000
"""Addresses remembered at once; past this the oldest quiet ones are forgotten.
An attacker with more addresses than that still meets the global limit."""


class SlidingWindow:
    """At most `limit` events per key in any `window` seconds."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until one more event is allowed for `key`; 0 when allowed now."""
        events = self._prune(key, now)
        if events is None or len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - now)

    def record(self, key: str, now: float) -> None:
        """Count one event for `key`."""
        events = self._prune(key, now)
        if events is None:
            if len(self._events) >= MAX_TRACKED_KEYS:
                self._forget_quiet(now)
            events = self._events[key] = deque(maxlen=self.limit)
        events.append(now)

    def _forget_quiet(self, now: float) -> None:
        for key in list(self._events):
            self._prune(key, now)
        if len(self._events) >= MAX_TRACKED_KEYS:
            # still full of live keys: drop the ones whose last event is oldest
            by_age = sorted(self._events, key=lambda k: self._events[k][-1])
            for key in by_age[: len(by_age) // 10 + 1]:
                del self._events[key]
