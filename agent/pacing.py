"""Frames paced by the console's acknowledgements (DESIGN §3).

At most `window` frames are on the wire without a `FrameAck`. A slow link or a
slow console delays the acks, so the agent captures less often: the frame rate
falls instead of a queue building up anywhere (agent, relay or console). A cap
of `max_fps` keeps a fast link from burning the PC's CPU.

Acks are cumulative: acking frame N acks every earlier frame, so a console may
ack only the last frame it painted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_FRAME_WINDOW = 2
"""Two frames in flight: one being painted while the next travels. More adds
latency on a slow link without raising the rate on a fast one."""

DEFAULT_MAX_FPS = 30.0
"""Enough for smooth pointer and window movement; above it the encoder's CPU cost
on a helpdesk PC outweighs what the consultant gains."""


class FramePacer:
    """Counts frames in flight; says when the next capture may run."""

    def __init__(
        self,
        *,
        window: int = DEFAULT_FRAME_WINDOW,
        max_fps: float = DEFAULT_MAX_FPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1:
            raise ValueError("the frame window must be at least 1")
        if max_fps <= 0:
            raise ValueError("max_fps must be positive")
        self.window = window
        self.interval = 1.0 / max_fps
        self._clock = clock
        self._in_flight: OrderedDict[int, float] = OrderedDict()
        self._last_capture = -float("inf")
        self.sent_frames = 0
        self.acked_frames = 0
        self.round_trip: float | None = None  # the latest send→ack time, seconds

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def window_open(self) -> bool:
        return len(self._in_flight) < self.window

    def delay(self, interval: float | None = None) -> float:
        """Seconds to wait before the next capture for the fps cap (0 = now).

        `interval` replaces the cap's interval (a quiet screen is polled slower).
        """
        step = self.interval if interval is None else interval
        return max(0.0, self._last_capture + step - self._clock())

    def captured(self) -> None:
        self._last_capture = self._clock()

    def sent(self, frame_id: int) -> None:
        self._in_flight[frame_id] = self._clock()
        self.sent_frames += 1

    def acked(self, frame_id: int) -> bool:
        """Close the frame and every earlier one; False for an id not in flight (ignored)."""
        if frame_id not in self._in_flight:
            return False
        now = self._clock()
        while self._in_flight:
            fid, sent_at = self._in_flight.popitem(last=False)
            self.acked_frames += 1
            if fid == frame_id:
                self.round_trip = now - sent_at
                break
        return True

    def reset(self) -> None:
        """Forget frames in flight (the stream stopped: hand-back, monitor change)."""
        self._in_flight.clear()
