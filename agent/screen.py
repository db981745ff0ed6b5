"""From captured pixels to `Frame` messages: changed tiles, then JPEG (or a solid colour).

The capture gives BGRA rows. `TileDiff` compares them with the previous frame
in 64×64 tiles (numpy, ~1 ms for 1280×800 here) into buffers it allocates once
per monitor size and reuses (PLATFORM.md: touching a fresh 8 MB buffer costs
~4.6 ms). Changed tiles in a tile row are merged into runs; each run is sent as
one region: `SOLID` when it is one colour (desktop backgrounds, blank areas),
else JPEG encoded by simplejpeg straight from BGRA (no `.rgb` conversion).

`StreamEncoder` chooses per frame: a small change (typing, a caret) goes out
lossless (`ZLIB_BGRA`) at once; a large one as JPEG (~4 ms a 1080p frame),
and JPEG tiles that then stay still are sent again lossless, so the console's
picture becomes exact within ~0.1 s of the screen going still. When half or more
of the screen keeps changing (a video, a scrolled page), frames go out as
H.264 (`agent.h264`: the GPU's encoder, or libx264) instead, refined the same way
once the motion stops.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import simplejpeg

from agent.h264 import VIDEO_CRF, VideoEncoder
from protocol.limits import MAX_MESSAGE_SIZE, MAX_REGIONS_PER_FRAME
from protocol.messages import Encoding, Frame, Region

TILE = 64
"""Tile side: 510 tiles at 1080p; the unit of compare, lossy marks and refinement (a
small lossless change is sent as its changed pixels' box, not its tiles)."""

DEFAULT_JPEG_QUALITY = 70
"""q70: text stays readable at ~4 ms a 1080p frame (PLATFORM.md)."""

QUIET_AFTER_CAPTURES = 30
"""After this many looks without a change (0.5 s where the agent polls at 60 a second)
the diff samples rows first (`QUIET_STRIDE`)."""

QUIET_INTERVAL = 0.1
"""Seconds between captures of a quiet screen (10 a second instead of 30): idle CPU
falls to a third; a change the PC's user makes after a still second reaches the
console up to 0.1 s later, the consultant's own input wakes the capture at once."""

VIDEO_INTERVAL = 1 / 40
"""Seconds between H.264 looks at least. Video is looked at only when something was
drawn, so a 30 fps video gives ~30 frames; the slack over 1/30 s lets a look that
came late (its drawing landed just after the slot) be followed by one on time instead
of missing the next picture. The encoder is the costly part of a frame; tile frames
(typing, scrolling, a pointer) may go out at the pacer's cap (75 a second)."""

STILL_INTERVAL = 1 / 30
"""Seconds between looks at a quiet screen when the platform reports drawing (X
DAMAGE): a look is then one non-blocking read of the event queue and the pointer
position, so 30 a second costs well under 1 % of a core and a change made after a
still second is seen within ~33 ms."""

QUIET_STRIDE = 4
"""Rows sampled on a still screen: a quarter of the compare work, at the cost of
a change under 4 rows tall being seen up to 3 captures (~0.1 s) late."""

FRAME_PART_BUDGET = MAX_MESSAGE_SIZE - 64 * 1024
"""Bytes of region data per `Frame` message: the limit minus room for the envelope,
the AEAD tag and msgpack headers of up to MAX_REGIONS_PER_FRAME regions."""

_REGION_OVERHEAD = 16  # msgpack bytes around a region's data, generously


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Move:
    """A vertical scroll: the new picture's rows [y, y+height) × columns [x, x+width)
    are the old picture's rows [y+dy, y+dy+height) in the same columns."""

    x: int
    y: int
    width: int
    height: int
    dy: int


SCROLL_MIN_TILES = 8
"""Scrolls are looked for when at least this many tiles changed (a caret or a
typed letter is not worth the ~2 ms the search costs)."""

SCROLL_MIN_ROWS = 48
"""A move is sent when at least this many rows moved intact."""

SCROLL_PROBE_EVERY = 4
"""During video, every this many frames one is searched for a scroll."""

SCROLL_PROBES = 7
"""Rows of the new picture whose positions in the old one vote for the shift."""

_FINGERPRINT_STEP = 8
"""Every eighth column goes into a row's fingerprint: 8× less work, and a move the
sampled columns got wrong is caught by the exact check that follows."""

_FINGERPRINT_MIX = np.uint64(0x9E3779B97F4A7C15)


def find_scroll(
    previous: npt.NDArray[np.uint32],
    current: npt.NDArray[np.uint32],
    tiles: npt.NDArray[np.bool_],
    tile: int,
) -> Move | None:
    """The largest block of the changed area that moved vertically, checked exactly.

    Rows of the changed area are fingerprinted (a weighted sum of sampled
    pixels); a few distinctive rows of the new picture are looked up in the old
    one and vote for a shift; the longest run of rows that match under the
    winning shift is compared pixel for pixel before it is returned.
    """
    height = current.shape[0]
    rows = np.flatnonzero(tiles.any(axis=1))
    cols = np.flatnonzero(tiles.any(axis=0))
    y0, y1 = int(rows[0]) * tile, min((int(rows[-1]) + 1) * tile, height)
    x0, x1 = int(cols[0]) * tile, min((int(cols[-1]) + 1) * tile, current.shape[1])
    sample = slice(x0, x1, _FINGERPRINT_STEP)
    count = len(range(x0, x1, _FINGERPRINT_STEP))
    weights = np.arange(1, count + 1, dtype=np.uint64) * _FINGERPRINT_MIX  # wraps: fine
    # the source of a scroll lies in the changed band too (rows outside it did not
    # change, so what moved in cannot come from there... except by coincidence)
    old = (previous[y0:y1, sample].astype(np.uint64) * weights).sum(axis=1)
    new = (current[y0:y1, sample].astype(np.uint64) * weights).sum(axis=1)
    _, first, counts = np.unique(new, return_index=True, return_counts=True)
    distinct = np.sort(first[counts == 1])  # rows of text, not blank lines
    if distinct.size == 0:
        return None
    picks = np.linspace(0, distinct.size - 1, min(SCROLL_PROBES, distinct.size)).astype(np.intp)
    votes: dict[int, int] = {}
    for row in distinct[picks]:
        for source in np.flatnonzero(old == new[row])[:8]:
            dy = int(source) - int(row)
            if dy:
                votes[dy] = votes.get(dy, 0) + 1
    if not votes:
        return None
    dy = max(votes, key=lambda d: votes[d])
    lo, hi = max(y0, y0 - dy), min(y1, y1 - dy)  # rows whose source is in the band
    if hi - lo < SCROLL_MIN_ROWS:
        return None
    match = new[lo - y0 : hi - y0] == old[lo - y0 + dy : hi - y0 + dy]
    edges = np.diff(np.concatenate(([0], match.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size == 0:
        return None
    best = int(np.argmax(ends - starts))
    a, b = lo + int(starts[best]), lo + int(ends[best])
    if b - a < SCROLL_MIN_ROWS:
        return None
    if not np.array_equal(current[a:b, x0:x1], previous[a + dy : b + dy, x0:x1]):
        return None
    return Move(x0, a, x1 - x0, b - a, dy)


class TileDiff:
    """Which tiles changed since the last call; the first call reports the whole screen."""

    def __init__(
        self,
        width: int,
        height: int,
        tile: int = TILE,
        *,
        previous: npt.NDArray[np.uint32] | None = None,
    ) -> None:
        """`previous`: a height×width buffer to keep the last pixels in (the video
        encoder's own picture, so a video frame needs no copy of its own).

        Raises:
            ValueError: a size is not positive, or `previous` is not height×width.
        """
        if width <= 0 or height <= 0 or tile <= 0:
            raise ValueError("screen and tile sizes must be positive")
        self.width, self.height, self.tile = width, height, tile
        if previous is None:
            previous = np.zeros((height, width), dtype=np.uint32)
        elif previous.shape != (height, width) or previous.dtype != np.uint32:
            raise ValueError("the previous-pixels buffer must be height×width uint32")
        self._previous = previous
        self._changed = np.zeros((height, width), dtype=np.bool_)
        # `_changed` holds the last call's differences from what the console will show
        # (a scroll's moved block cleared)
        self._mask_fresh = False
        self._row_starts = np.arange(0, height, tile)
        self._col_starts = np.arange(0, width, tile)
        self._full = True
        self._quiet = 0  # captures in a row without a change
        self._none = np.zeros((len(self._row_starts), len(self._col_starts)), np.bool_)
        self.last_move: Move | None = None  # the scroll found by the last call

    def reset(self) -> None:
        """The next call reports every tile (a new viewer, a new monitor)."""
        self._full = True
        self._quiet = 0

    @property
    def full(self) -> bool:
        """The next call reports every tile."""
        return self._full

    @property
    def quiet(self) -> bool:
        """No change for QUIET_AFTER_CAPTURES captures in a row."""
        return self._quiet >= QUIET_AFTER_CAPTURES

    @property
    def grid(self) -> tuple[int, int]:
        """Tile rows × tile columns."""
        return len(self._row_starts), len(self._col_starts)

    @property
    def previous(self) -> npt.NDArray[np.uint8]:
        """The last pixels compared, as BGRA (a view, not a copy)."""
        return self._previous.view(np.uint8).reshape(self.height, self.width, 4)

    def unchanged(self) -> None:
        """A capture the platform knows changed nothing (X DAMAGE): count it as still."""
        self._quiet += 1

    def replace(self, pixels: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        """Take `pixels` as the new previous without comparing: every tile counts as
        changed (full-screen motion, where the compare would only say so at ~2 ms)."""
        np.copyto(self._previous, pixels)
        self._full = False
        self._quiet = 0
        self.last_move = None
        self._mask_fresh = False
        return np.ones(self.grid, np.bool_)

    def changed(self, pixels: npt.NDArray[np.uint32]) -> list[Rect]:
        """Runs of changed tiles, row by row, and remember `pixels` as the new previous.

        Raises:
            ValueError: `pixels` is not height×width.
        """
        tiles = self.changed_tiles(pixels)
        return self.runs(tiles) if tiles.any() else []

    def changed_tiles(
        self,
        pixels: npt.NDArray[np.uint32],
        find_moves: bool = False,
        *,
        sample: bool = True,
    ) -> npt.NDArray[np.bool_]:
        """Tile rows × tile columns, True where a tile changed; remember `pixels`.

        `sample`: on a quiet screen, compare sampled rows first (see QUIET_STRIDE).
        With `find_moves`, a large change is searched for a scroll (`find_scroll`);
        one found is kept in `last_move` (lossy pixels it carries stay marked lossy
        by the caller), and the tiles returned are those still changed once it is
        applied (the newly exposed lines).

        Raises:
            ValueError: `pixels` is not height×width.
        """
        self.last_move = None
        if pixels.shape != (self.height, self.width):
            raise ValueError(f"expected {self.height}x{self.width} pixels, got {pixels.shape}")
        self._mask_fresh = False
        if self._full:
            self._full = False
            np.copyto(self._previous, pixels)
            return np.ones(self.grid, np.bool_)
        if sample and self.quiet:
            # a still screen: look at every QUIET_STRIDE-th row only, a different set
            # each time, so a change is seen at once if it is QUIET_STRIDE rows tall
            # (text, windows) and within QUIET_STRIDE captures if it is thinner
            phase = self._quiet % QUIET_STRIDE
            self._quiet += 1
            if np.array_equal(pixels[phase::QUIET_STRIDE], self._previous[phase::QUIET_STRIDE]):
                return self._none
        np.not_equal(pixels, self._previous, out=self._changed)
        self._mask_fresh = True
        tiles = self._tiles(self._changed)
        if find_moves and int(tiles.sum()) >= SCROLL_MIN_TILES:
            move = find_scroll(self._previous, pixels, tiles, self.tile)
            if move is not None:
                # once the console applied the move, its target block equals the new
                # pixels (checked exactly); everything else it shows is the old picture
                m = move
                self._changed[m.y : m.y + m.height, m.x : m.x + m.width] = False
                tiles = self._tiles(self._changed)
                self.last_move = move
        if tiles.any() or self.last_move is not None:
            np.copyto(self._previous, pixels)
            self._quiet = 0
        else:
            self._quiet += 1
        return tiles

    def _tiles(self, changed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Tile rows × tile columns: True where any pixel of the tile changed.

        Whole tiles are reduced through a reshape (`any` over contiguous blocks is
        several times faster than `logical_or.reduceat`); a partial last row or
        column of tiles is reduced on its own. `changed` may be any block that
        starts on a tile corner (a damaged area), not only the whole screen.
        """
        t = self.tile
        h, w = changed.shape
        full_rows, full_cols = h // t, w // t
        rows = np.empty((-(-h // t), w), np.bool_)
        if full_rows:
            rows[:full_rows] = changed[: full_rows * t].reshape(full_rows, t, w).any(axis=1)
        if h % t:
            rows[full_rows] = changed[full_rows * t :].any(axis=0)
        tiles = np.empty((rows.shape[0], -(-w // t)), np.bool_)
        if full_cols:
            tiles[:, :full_cols] = rows[:, : full_cols * t].reshape(-1, full_cols, t).any(axis=2)
        if w % t:
            tiles[:, full_cols] = rows[:, full_cols * t :].any(axis=1)
        return tiles

    def changed_tiles_in(self, area: Rect, pixels: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        """Like `changed_tiles`, for a capture of `area` only (the platform said
        nothing was drawn elsewhere): the rest of the screen is the last pixels.

        Raises:
            ValueError: `area` does not start on a tile corner or leaves the screen,
                `pixels` is not its size, or the next call must see the whole screen.
        """
        t = self.tile
        if self._full:
            raise ValueError("the whole screen is due: grab it all")
        if area.x % t or area.y % t or area.x + area.width > self.width:
            raise ValueError(f"{area} is not on the tile grid of the screen")
        if area.y + area.height > self.height or pixels.shape != (area.height, area.width):
            raise ValueError(f"{area} does not fit the screen or the pixels given")
        self.last_move = None
        rows = slice(area.y, area.y + area.height)
        cols = slice(area.x, area.x + area.width)
        block = self._changed[rows, cols]
        np.not_equal(pixels, self._previous[rows, cols], out=block)
        self._mask_fresh = True  # within `area`: the only tiles this call reports
        tiles = np.zeros(self.grid, np.bool_)
        found = self._tiles(block)
        top, left = area.y // t, area.x // t
        tiles[top : top + found.shape[0], left : left + found.shape[1]] = found
        if found.any():
            self._previous[rows, cols] = pixels
            self._quiet = 0
        else:
            self._quiet += 1
        return tiles

    def changed_box(self, rect: Rect) -> Rect:
        """The smallest rectangle within `rect` (changed tiles of the last call)
        holding every pixel that changed; `rect` itself when that is not known."""
        if not self._mask_fresh:
            return rect
        block = self._changed[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width]
        rows = np.flatnonzero(block.any(axis=1))
        if rows.size == 0:
            return rect
        cols = np.flatnonzero(block[rows[0] : rows[-1] + 1].any(axis=0))
        return Rect(
            rect.x + int(cols[0]),
            rect.y + int(rows[0]),
            int(cols[-1] - cols[0]) + 1,
            int(rows[-1] - rows[0]) + 1,
        )

    def runs(self, tiles: npt.NDArray[np.bool_]) -> list[Rect]:
        """The True tiles of a tile mask as runs of tiles, row by row."""
        rects: list[Rect] = []
        t = self.tile
        for row in range(tiles.shape[0]):
            cols = np.flatnonzero(tiles[row])
            if cols.size == 0:
                continue
            y = row * t
            h = min(t, self.height - y)
            start = prev = int(cols[0])
            for col in (*(int(c) for c in cols[1:]), None):
                if col is not None and col == prev + 1:
                    prev = col
                    continue
                x = start * t
                rects.append(Rect(x, y, min((prev + 1) * t, self.width) - x, h))
                if col is not None:
                    start = prev = col
        return rects


class FrameEncoder:
    """Turns BGRA pixels and changed rectangles into regions."""

    def __init__(self, quality: int = DEFAULT_JPEG_QUALITY) -> None:
        if not 1 <= quality <= 100:
            raise ValueError("JPEG quality is 1..100")
        self.quality = quality

    def encode(
        self, bgra: npt.NDArray[np.uint8], rects: list[Rect], *, lossless: bool = False
    ) -> list[Region]:
        """One region per rectangle: SOLID for one colour, else JPEG (or zlib when `lossless`)."""
        pixels = bgra.view(np.uint32).reshape(bgra.shape[0], bgra.shape[1])
        regions = []
        for r in rects:
            block32 = pixels[r.y : r.y + r.height, r.x : r.x + r.width]
            first = block32[0, 0]
            if (block32 == first).all():
                encoding, data = Encoding.SOLID, bytes(bgra[r.y, r.x, :4])
            elif lossless:
                # level 1: several times faster than the default and within ~15 % of
                # its size on text; a full 1080p refinement stays under ~80 ms
                data = zlib.compress(block32.tobytes(), 1)
                encoding = Encoding.ZLIB_BGRA
            else:
                block = bgra[r.y : r.y + r.height, r.x : r.x + r.width]
                data = simplejpeg.encode_jpeg(
                    block, quality=self.quality, colorspace="BGRA", colorsubsampling="420"
                )
                encoding = Encoding.JPEG
            regions.append(
                Region(x=r.x, y=r.y, width=r.width, height=r.height, encoding=encoding, data=data)
            )
        return regions


LOSSLESS_TILES = 12
"""A frame changing at most this many tiles (typing, a caret, a menu item) is
sent lossless at once: ~50 KiB of BGRA at most, zlib'd in well under a
millisecond, and text is exact the moment it appears."""

REFINE_AFTER_CAPTURES = 4
"""A JPEG tile unchanged for this many captures (~53-66 ms at 60-75 looks/s) is sent
again lossless: moving content stays cheap (a 25 fps video's frames are 40 ms
apart), still content becomes exact."""

LARGE_RUN_SECONDS = 3 * (1 / 30)
"""Large changes count as one run of motion while they come at most this far apart
(captures in between that saw nothing drawn do not break a 25 or 30 fps video)."""

REFINE_TILES_PER_FRAME = 170
"""At most a third of a 1080p screen refined per frame, so a refinement burst
after a full-screen change never holds back a new change for long."""


VIDEO_FRACTION = 0.5
"""A frame is a video frame when at least this share of the tiles changed ..."""

VIDEO_AFTER_FRAMES = 2
"""... in this many captures in a row (a single big change, such as a window
opening, stays JPEG/lossless: it is refined at once and costs no IDR)."""

SLOW_ROUND_TRIP = 0.15
"""A frame acknowledged more than this long after it was sent (seconds) means the
link is the bottleneck: pictures get smaller (`DEGRADED_JPEG_QUALITY`, `DEGRADED_CRF`)."""

FAST_ROUND_TRIP = 0.06
"""Back to full quality once frames are acknowledged this fast again ..."""

RESTORE_AFTER = 2.0
"""... for this many seconds in a row (hysteresis: each switch restarts the video
with an IDR, which on a slow link is the largest frame of all)."""

DEGRADED_JPEG_QUALITY = 40
DEGRADED_CRF = 33

FRAME_SECONDS = 0.05
"""What a refinement frame may take to cross the measured link: its lossless tiles
are sent in pieces of at most `link rate × FRAME_SECONDS` bytes (a piece or more
per frame), so a slow link never carries a refinement burst that would hold a
new change back for long."""

VIDEO_RATE_SHARE = 0.7
"""On a slow link the video's bitrate is capped at this share of the measured
rate (x264's VBV), so a burst of motion cannot queue up behind itself."""

REFINE_PIECE_TILES = 8
"""Tiles in one refinement piece while a byte budget applies (a whole tile row of
text is ~50–100 KB lossless: too coarse for a 5 Mbit/s budget)."""


class StreamEncoder:
    """The per-frame codec choice of one monitor's stream.

    Each capture: changed tiles are found (`TileDiff`); a small change is sent
    lossless, a large one as JPEG (SOLID for one colour either way). Tiles last
    sent as JPEG that have stayed unchanged for `refine_after` captures are sent
    again lossless (a bounded number per frame), so the console's picture
    becomes equal to the screen bit for bit shortly after it goes still.
    """

    def __init__(
        self,
        width: int,
        height: int,
        encoder: FrameEncoder,
        *,
        lossless_tiles: int = LOSSLESS_TILES,
        refine_after: int = REFINE_AFTER_CAPTURES,
        refine_per_frame: int = REFINE_TILES_PER_FRAME,
        video: VideoEncoder | None = None,
    ) -> None:
        shared = None
        if video is not None:
            picture = video.picture()
            if picture.strides[0] == width * 4:  # rows without padding: one 2-D array
                shared = picture.view(np.uint32).reshape(height, width)
        # the last pixels live in the video encoder's picture: a video frame is encoded
        # from what the compare just stored there, without a copy of its own
        self.diff = TileDiff(width, height, previous=shared)
        self.encoder = encoder
        self.lossless_tiles = lossless_tiles
        self.refine_after = refine_after
        self.refine_per_frame = refine_per_frame
        self._lossy = np.zeros(self.diff.grid, np.bool_)  # last sent as JPEG
        self._still = np.zeros(self.diff.grid, np.uint8)  # captures since the last change
        self.video = video
        self._video_tiles = max(1, int(VIDEO_FRACTION * self._lossy.size))
        self._large_run = 0  # large changes in a row (captures with nothing new skipped)
        self._large_at = -LARGE_RUN_SECONDS  # when the last large change was seen
        self.in_video = False  # the last frame went out as H.264
        self._probe = 0  # frames since the last scroll search during video
        self.damage_known = False  # the platform reports drawing: no need to grab to know
        self.link_rate: float | None = None  # bytes/s the link carried lately
        self.degraded = False  # smaller pictures for a slow link (`adapt`)
        self._fast_since: float | None = None
        self._quality = encoder.quality
        self._crf = video.crf if video is not None else VIDEO_CRF

    def reset(self) -> None:
        """The next frame sends the whole screen (a new viewer, a failed grab)."""
        self.diff.reset()
        self._lossy[:] = False
        self._still[:] = 0
        self._large_run = 0
        self._probe = 0
        self.in_video = False
        if self.video is not None:
            self.video.restart()  # the console starts a new decoder too

    def adapt(
        self, round_trip: float | None, now: float | None = None, rate: float | None = None
    ) -> None:
        """Pick picture quality from the latest frame send→ack time (seconds) and
        the link's measured throughput (`rate`, bytes/s; `FramePacer.throughput`).

        The ack window already keeps queues short; on a slow link each frame also
        takes long to cross, so lowering the quality raises the frame rate and
        lowers the latency, and lossless refinement goes in pieces the link
        carries in `FRAME_SECONDS`. Refinement still makes the picture exact.
        """
        if rate is not None:
            self.link_rate = rate
        if round_trip is None:
            return
        now = time.monotonic() if now is None else now
        if round_trip >= FAST_ROUND_TRIP:
            self._fast_since = None
        elif self._fast_since is None:
            self._fast_since = now
        if not self.degraded and round_trip > SLOW_ROUND_TRIP:
            self._set_degraded(True)
        elif (
            self.degraded
            and self._fast_since is not None
            and now - self._fast_since >= RESTORE_AFTER
        ):
            self._set_degraded(False)

    def _set_degraded(self, degraded: bool) -> None:
        self.degraded = degraded
        self.encoder.quality = DEGRADED_JPEG_QUALITY if degraded else self._quality
        if self.video is not None:
            # libx264 takes the rate factor when it opens: a new one costs an IDR
            # (hysteresis in `adapt` keeps these rare)
            self.video.crf = DEGRADED_CRF if degraded else self._crf
            rate = self.link_rate
            self.video.max_rate = int(rate * VIDEO_RATE_SHARE) if degraded and rate else None
            self.video.restart()

    @property
    def exact(self) -> bool:
        """The console's picture is the last capture bit for bit (no lossy tile left)."""
        return not self._lossy.any()

    @property
    def quiet(self) -> bool:
        """The screen has been still for a while and the console's picture is exact."""
        return self.diff.quiet and not self._lossy.any()

    @property
    def needs_grab(self) -> bool:
        """The next frame must be a whole new picture (a new viewer, after a reset)."""
        return self.diff.full

    @property
    def pending_refinement(self) -> int:
        """Tiles the console still shows lossy."""
        return int(self._lossy.sum())

    def regions_in(self, area: Rect, bgra: npt.NDArray[np.uint8]) -> list[Region]:
        """The regions to send for a capture of `area` only: the platform reported
        drawing there and nowhere else (typing, a menu, a caret). No scroll search
        and no video for such a change; everything else as `regions`.

        Raises:
            ValueError: see `TileDiff.changed_tiles_in`.
        """
        pixels = bgra.view(np.uint32).reshape(bgra.shape[0], bgra.shape[1])
        changed = self.diff.changed_tiles_in(area, pixels)
        return self._encode(self.diff.previous, changed, None, video=False)

    def regions(self, bgra: npt.NDArray[np.uint8], *, drawn_all_over: bool = False) -> list[Region]:
        """The regions to send for this capture (empty: nothing to send).

        `drawn_all_over`: the platform reported drawing over most of the screen; while
        the stream is video, that frame goes to the encoder without a compare.

        Raises:
            ValueError: `bgra` is not the monitor's size.
        """
        height, width = bgra.shape[:2]
        pixels = bgra.view(np.uint32).reshape(height, width)
        # while the whole picture is video, a scroll is looked for only every
        # SCROLL_PROBE_EVERY frames (the search costs ~2 ms a 1080p frame): a page
        # scrolled right after motion (or on a slow link, where motion goes video at
        # once) comes back to exact moves instead of staying video
        self._probe = (self._probe + 1) % SCROLL_PROBE_EVERY if self._lossy.all() else 0
        find_moves = self._probe == 0
        # rows are sampled on a quiet screen only when nothing reports drawing: with
        # X DAMAGE a grab means something was drawn, however thin (a 1-px underline)
        if drawn_all_over and self.in_video and not find_moves and not self.diff.full:
            changed = self.diff.replace(pixels)  # motion goes on: no compare, no scroll probe
        else:
            changed = self.diff.changed_tiles(pixels, find_moves, sample=not self.damage_known)
        return self._encode(bgra, changed, self.diff.last_move, video=True)

    def _encode(
        self,
        bgra: npt.NDArray[np.uint8],
        changed: npt.NDArray[np.bool_],
        move: Move | None,
        *,
        video: bool,
    ) -> list[Region]:
        """The regions for changed tiles of `bgra` (the whole screen as it is now)."""
        height, width = bgra.shape[:2]
        regions: list[Region] = []
        if move is not None:
            regions.append(
                Region(
                    x=move.x,
                    y=move.y,
                    width=move.width,
                    height=move.height,
                    encoding=Encoding.COPY,
                    data=struct.pack(">HH", move.x, move.y + move.dy),
                )
            )
            self._carry_lossy(move)
        self._still[changed] = 0
        np.add(self._still, 1, out=self._still, where=~changed & (self._still < 255))
        count = int(changed.sum())
        now = time.monotonic()
        if count >= self._video_tiles:
            recent = now - self._large_at <= LARGE_RUN_SECONDS
            self._large_run = self._large_run + 1 if recent else 1
            self._large_at = now
        elif count:
            self._large_run = 0
        # on a slow link a large change goes video at once: a P-frame from the one
        # encoder is a fraction of a full-screen JPEG, the frame that made the latency
        after = 1 if self.degraded else VIDEO_AFTER_FRAMES
        large = count >= self._video_tiles
        if video and large and self.video is not None and self._large_run >= after:
            data = self.video.encode(self.diff.previous)  # == bgra, in the encoder's picture
            if data:
                self.in_video = True
                self._lossy[:] = True  # the whole picture is the decoder's now
                return [
                    Region(x=0, y=0, width=width, height=height, encoding=Encoding.H264, data=data)
                ]
        self.in_video = False
        if count:
            # after a move, what is left is the newly exposed lines: lossless, so a
            # scrolled page stays exact and the next scroll can move it again
            lossless = count <= self.lossless_tiles or move is not None
            runs = self.diff.runs(changed)
            if lossless:
                runs = [self._tight(run) for run in runs]
            sent = self.encoder.encode(bgra, runs, lossless=lossless)
            self._mark(sent)
            regions += sent
        # refined from the pixels the compare knows, not from the capture: on a quiet
        # screen a look samples rows, and a change in a row it skipped must not reach
        # the console as a refinement the compare never saw (a 1-px blink would stay)
        return regions + self._refine(self.diff.previous)

    def _tight(self, run: Rect) -> Rect:
        """A lossless run cut down to the pixels that changed in it (a typed letter is
        ~10×18 px of its 64×64 tile: a fifth of the bytes or less), when the console
        shows the rest of its tiles exactly already; else the whole run, so that
        sending it makes those tiles exact."""
        if self._lossy[self._tiles_of(run)].any():
            return run
        return self.diff.changed_box(run)

    def _tiles_of(self, r: Rect | Region) -> tuple[slice, slice]:
        """The tile rows and columns a rectangle of the screen touches."""
        t = self.diff.tile
        return (
            slice(r.y // t, -(-(r.y + r.height) // t)),
            slice(r.x // t, -(-(r.x + r.width) // t)),
        )

    def _carry_lossy(self, move: Move) -> None:
        """The console's lossy pixels move with the copy: a target tile row is lossy
        when a tile row its pixels came from was (and stays so if only partly
        covered), so refinement follows the content wherever it scrolled to."""
        t = self.diff.tile
        before = self._lossy.copy()
        cols = slice(move.x // t, -(-(move.x + move.width) // t))
        top, bottom = move.y, move.y + move.height
        for row in range(top // t, -(-bottom // t)):
            a, b = max(top, row * t), min(bottom, (row + 1) * t)  # rows of this tile copied
            sources = before[(a + move.dy) // t : (b - 1 + move.dy) // t + 1, cols].any(axis=0)
            if a == row * t and b == min((row + 1) * t, self.diff.height):
                self._lossy[row, cols] = sources
            else:
                self._lossy[row, cols] |= sources
            self._still[row, cols] = 0

    def unchanged(self) -> list[Region]:
        """The regions to send for a capture the platform knows changed nothing
        (X DAMAGE reported no drawing): lossless refinement of tiles that have now
        been still long enough, taken from the last pixels (still the screen's).
        """
        self.diff.unchanged()
        np.add(self._still, 1, out=self._still, where=self._still < 255)
        self.in_video = False
        return self._refine(self.diff.previous)

    @property
    def refine_budget(self) -> int | None:
        """Bytes of refinement per frame on a measured link (None: only the tile cap)."""
        if self.link_rate is None:
            return None
        return int(self.link_rate * FRAME_SECONDS)

    def _refine(self, bgra: npt.NDArray[np.uint8]) -> list[Region]:
        refine = self._lossy & (self._still >= self.refine_after)
        if not refine.any():
            return []
        if int(refine.sum()) > self.refine_per_frame:  # the first ones in raster order
            keep = np.flatnonzero(refine)[: self.refine_per_frame]
            refine = np.zeros_like(refine)
            refine.flat[keep] = True
        budget = self.refine_budget
        exact: list[Region] = []
        size = 0
        for rect in self._pieces(self.diff.runs(refine), budget is not None):
            if budget is not None and exact and size >= budget:
                break  # the rest in the next frames: the link carries this much per frame
            sent = self.encoder.encode(bgra, [rect], lossless=True)
            size += sum(len(r.data) for r in sent)
            exact += sent
            self._lossy[self._tiles_of(rect)] = False
        return exact

    def _pieces(self, runs: list[Rect], budgeted: bool) -> list[Rect]:
        """Runs cut into pieces of at most REFINE_PIECE_TILES tiles when a budget applies."""
        if not budgeted:
            return runs
        step = REFINE_PIECE_TILES * self.diff.tile
        return [
            Rect(x, r.y, min(step, r.x + r.width - x), r.height)
            for r in runs
            for x in range(r.x, r.x + r.width, step)
        ]

    def _mark(self, regions: list[Region]) -> None:
        for r in regions:
            self._lossy[self._tiles_of(r)] = r.encoding is Encoding.JPEG


def frame_parts(
    *,
    frame_id: int,
    captured_at_ns: int,
    width: int,
    height: int,
    regions: list[Region],
    budget: int = FRAME_PART_BUDGET,
) -> list[Frame]:
    """Split one frame's regions into messages under the size limit; the last is `final`.

    Raises:
        ValueError: a single region is larger than `budget` (cannot be split).
    """
    parts: list[list[Region]] = [[]]
    size = 0
    for region in regions:
        cost = len(region.data) + _REGION_OVERHEAD
        if cost > budget:
            raise ValueError(f"a {region.width}x{region.height} region does not fit a message")
        if parts[-1] and (size + cost > budget or len(parts[-1]) >= MAX_REGIONS_PER_FRAME):
            parts.append([])
            size = 0
        parts[-1].append(region)
        size += cost
    return [
        Frame(
            frame_id=frame_id,
            final=i == len(parts) - 1,
            captured_at_ns=captured_at_ns,
            width=width,
            height=height,
            regions=tuple(part),
        )
        for i, part in enumerate(parts)
    ]
