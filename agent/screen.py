"""From captured pixels to `Frame` messages: changed tiles, then JPEG (or a solid colour).

The capture gives BGRA rows. `TileDiff` compares them with the previous frame
in 64×64 tiles (numpy, ~1 ms for 1280×800 here) into buffers it allocates once
per monitor size and reuses (PLATFORM.md: touching a fresh 8 MB buffer costs
~4.6 ms). Changed tiles in a tile row are merged into runs; each run is sent as
one region: `SOLID` when it is one colour (desktop backgrounds, blank areas),
else JPEG encoded by simplejpeg straight from BGRA (no `.rgb` conversion).

JPEG is the first codec: lossy but fast (~4 ms a 1080p frame). Lossless text
regions (`ZLIB_BGRA`) can be added behind the same `FrameEncoder` later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import simplejpeg

from protocol.limits import MAX_MESSAGE_SIZE, MAX_REGIONS_PER_FRAME
from protocol.messages import Encoding, Frame, Region

TILE = 64
"""Tile side: 510 tiles at 1080p; small enough that a blinking caret sends ~4 KiB."""

DEFAULT_JPEG_QUALITY = 70
"""q70: text stays readable at ~4 ms a 1080p frame (PLATFORM.md)."""

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


class TileDiff:
    """Which tiles changed since the last call; the first call reports the whole screen."""

    def __init__(self, width: int, height: int, tile: int = TILE) -> None:
        if width <= 0 or height <= 0 or tile <= 0:
            raise ValueError("screen and tile sizes must be positive")
        self.width, self.height, self.tile = width, height, tile
        self._previous = np.zeros((height, width), dtype=np.uint32)
        self._changed = np.zeros((height, width), dtype=np.bool_)
        self._row_starts = np.arange(0, height, tile)
        self._col_starts = np.arange(0, width, tile)
        self._full = True

    def reset(self) -> None:
        """The next call reports every tile (a new viewer, a new monitor)."""
        self._full = True

    def changed(self, pixels: npt.NDArray[np.uint32]) -> list[Rect]:
        """Runs of changed tiles, row by row, and remember `pixels` as the new previous.

        Raises:
            ValueError: `pixels` is not height×width.
        """
        if pixels.shape != (self.height, self.width):
            raise ValueError(f"expected {self.height}x{self.width} pixels, got {pixels.shape}")
        if self._full:
            self._full = False
            np.copyto(self._previous, pixels)
            return self._runs(np.ones((len(self._row_starts), len(self._col_starts)), np.bool_))
        np.not_equal(pixels, self._previous, out=self._changed)
        tiles = self._tiles(self._changed)
        if not tiles.any():
            return []
        np.copyto(self._previous, pixels)
        return self._runs(tiles)

    def _tiles(self, changed: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Tile rows × tile columns: True where any pixel of the tile changed.

        Whole tiles are reduced through a reshape (`any` over contiguous blocks is
        several times faster than `logical_or.reduceat`); a partial last row or
        column of tiles is reduced on its own.
        """
        t, h, w = self.tile, self.height, self.width
        full_rows, full_cols = h // t, w // t
        rows = np.empty((len(self._row_starts), w), np.bool_)
        if full_rows:
            rows[:full_rows] = changed[: full_rows * t].reshape(full_rows, t, w).any(axis=1)
        if h % t:
            rows[full_rows] = changed[full_rows * t :].any(axis=0)
        tiles = np.empty((len(self._row_starts), len(self._col_starts)), np.bool_)
        if full_cols:
            tiles[:, :full_cols] = rows[:, : full_cols * t].reshape(-1, full_cols, t).any(axis=2)
        if w % t:
            tiles[:, full_cols] = rows[:, full_cols * t :].any(axis=1)
        return tiles

    def _runs(self, tiles: npt.NDArray[np.bool_]) -> list[Rect]:
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

    def encode(self, bgra: npt.NDArray[np.uint8], rects: list[Rect]) -> list[Region]:
        pixels = bgra.view(np.uint32).reshape(bgra.shape[0], bgra.shape[1])
        regions = []
        for r in rects:
            block32 = pixels[r.y : r.y + r.height, r.x : r.x + r.width]
            first = block32[0, 0]
            if (block32 == first).all():
                encoding, data = Encoding.SOLID, bytes(bgra[r.y, r.x, :4])
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
