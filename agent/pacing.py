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

DEFAULT_MAX_FPS = 75.0
"""Typing, scrolling and a moving pointer as often as a 60 Hz screen shows them:
such frames are a few tiles, cheap to find (X DAMAGE) and to encode. The cap sits
above 60 because an application's drawings come at 60/s on average, not on the
dot: with 16.7 ms between looks, one drawn 3 ms early merged into the next frame
(a 60/s scroll: 55 frames/s at a cap of 60, 59 at 75, same CPU). With X DAMAGE,
looks happen only when something was drawn, so the cap costs nothing on a slower
screen; where the agent must grab and compare to know (Windows), looks stay at 60 a
second at most (`agent.runner.POLLED_INTERVAL`).
Full-screen motion goes out as H.264 at most at `agent.screen.VIDEO_INTERVAL`."""


RATE_SAMPLE_BYTES = 32 * 1024
"""A frame this large or larger is a throughput sample: its send→ack time is then
mostly the link's transfer time, not its round trip (a 1 KiB typing frame over a
40 ms round trip would "measure" 25 KB/s on any link)."""

RATE_WINDOW = 3.0
"""Seconds the best recent sample is kept (a windowed maximum, as BBR keeps its
bandwidth estimate): one frame that waited behind another does not halve it."""

MIN_RTT_WINDOW = 10.0
"""Seconds the smallest recent round trip is kept: the link's propagation time,
taken out of a lone frame's send→ack time to leave its transfer time."""


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
        self._in_flight: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._last_capture = -float("inf")
        self.sent_frames = 0
        self.acked_frames = 0
        self.round_trip: float | None = None  # the latest send→ack time, seconds
        self._rates: list[tuple[float, float]] = []  # (when, bytes/s), newest last
        self._rtts: list[tuple[float, float]] = []  # (when, seconds), newest last
        self._last_ack: float | None = None

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

    def sent(self, frame_id: int, size: int = 0) -> None:
        """A frame of `size` bytes went out."""
        self._in_flight[frame_id] = (self._clock(), size)
        self.sent_frames += 1

    @property
    def throughput(self) -> float | None:
        """Bytes/s the link has been seen to carry lately (None: no sample yet)."""
        horizon = self._clock() - RATE_WINDOW
        while self._rates and self._rates[0][0] < horizon:
            self._rates.pop(0)
        return max((rate for _, rate in self._rates), default=None)

    def acked(self, frame_id: int) -> bool:
        """Close the frame and every earlier one; False for an id not in flight (ignored)."""
        if frame_id not in self._in_flight:
            return False
        now = self._clock()
        while self._in_flight:
            fid, (sent_at, size) = self._in_flight.popitem(last=False)
            self.acked_frames += 1
            if fid == frame_id:
                self.round_trip = now - sent_at
                self._sample(now, sent_at, size)
                break
        self._last_ack = now
        return True

    def _sample(self, now: float, sent_at: float, size: int) -> None:
        """One delivery-rate sample from a frame just acknowledged.

        A frame sent while the one before it was still unacknowledged waited for
        the link: it was on the wire from that ack to its own, so its size over
        that gap is the rate. A frame sent onto an idle link took its round trip:
        the propagation (the smallest recent round trip) is taken out of it.
        """
        rtt = now - sent_at
        horizon = now - MIN_RTT_WINDOW
        while self._rtts and self._rtts[0][0] < horizon:
            self._rtts.pop(0)
        if size < RATE_SAMPLE_BYTES:
            self._rtts.append((now, rtt))  # a small frame's time is the propagation
            return
        if self._last_ack is not None and sent_at < self._last_ack:
            busy = now - self._last_ack
        else:
            # a large frame alone on the link: its time less the propagation; never
            # below a quarter of it (no small frame seen yet, or one barely faster,
            # must not make a megabyte "arrive" in a millisecond)
            base = min((r for _, r in self._rtts), default=0.0)
            busy = max(rtt - base, rtt / 4)
        self._rates.append((now, size / max(busy, 0.001)))

    def reset(self) -> None:
        """Forget frames in flight (the stream stopped: hand-back, monitor change)."""
        self._in_flight.clear()
        self._last_ack = None
