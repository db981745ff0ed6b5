"""The remote screen as one reused BGRA numpy array, updated region by region.

Frames arrive as changed regions (`protocol.messages.Frame`); decoding each one
into the same array keeps a long session at constant memory, and BGRA is what
`QImage.Format_RGB32` paints without a conversion on little-endian machines.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg

from console.errors import BadFrame
from protocol.messages import CursorShape, Encoding, Frame, Region

CURTAIN_BGRA = (0x30, 0x28, 0x24, 0xFF)
"""The colour a BLANK region is filled with: a dark slate the app draws its
"screen hidden" overlay on, so even a headless screenshot shows the curtain."""

Pixels = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


class FrameBuffer:
    """One BGRA image of the selected monitor, at the size the agent last sent.

    `apply()` decodes a frame into it in place; the array is reallocated only
    when the remote screen changes size (resolution or monitor switch).
    """

    def __init__(self) -> None:
        self.pixels: Pixels = np.zeros((1, 1, 4), dtype=np.uint8)
        self.width = 0
        self.height = 0
        self.curtain = False  # the agent withholds the screen (BLANK regions)
        self.encodings: set[Encoding] = set()  # what the last frame used, for the status line
        self.generation = 0  # bumps on every applied frame: cheap "has it changed?" check
        self.allocations = 0  # how often the array was (re)allocated: a test watches this
        self._video: Any = None  # the H.264 decoder (PyAV), made at the first H264 region
        self._video_size = (0, 0)

    @property
    def empty(self) -> bool:
        return self.width == 0

    def apply(self, frame: Frame) -> Rect | None:
        """Decode every region of `frame` into the buffer; return the changed bounding box.

        Raises:
            BadFrame: a region's data is not valid JPEG/zlib/H.264, or decodes to another size.
        """
        if (frame.width, frame.height) != (self.width, self.height):
            self._resize(frame.width, frame.height)
        if not frame.regions:
            return None
        blank = False
        used: set[Encoding] = set()
        x0, y0, x1, y1 = frame.width, frame.height, 0, 0
        for region in frame.regions:
            self._apply_region(region)
            used.add(region.encoding)
            blank = blank or region.encoding is Encoding.BLANK
            x0, y0 = min(x0, region.x), min(y0, region.y)
            x1, y1 = max(x1, region.x + region.width), max(y1, region.y + region.height)
        self.curtain = blank
        self.encodings = used
        self.generation += 1
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def _resize(self, width: int, height: int) -> None:
        self.pixels = np.zeros((height, width, 4), dtype=np.uint8)
        self.pixels[:, :, 3] = 0xFF
        self.width, self.height = width, height
        self.allocations += 1
        self._video = None  # another monitor: another stream

    def _apply_region(self, region: Region) -> None:
        target = self.pixels[
            region.y : region.y + region.height, region.x : region.x + region.width
        ]
        if region.encoding is Encoding.SOLID:
            target[:] = np.frombuffer(region.data, dtype=np.uint8)
        elif region.encoding is Encoding.BLANK:
            target[:] = CURTAIN_BGRA
        elif region.encoding is Encoding.ZLIB_BGRA:
            target[:] = _inflate(region)
        elif region.encoding is Encoding.H264:
            self._decode_video(region, target)
        elif region.encoding is Encoding.COPY:
            x, y = region.source
            if x + region.width > self.width or y + region.height > self.height:
                raise BadFrame(
                    f"a {region.width}x{region.height} copy from ({x}, {y}) "
                    f"leaves the {self.width}x{self.height} screen"
                )
            # numpy copies through a temporary when source and target overlap (a scroll)
            target[:] = self.pixels[y : y + region.height, x : x + region.width]
        elif region.encoding is Encoding.JPEG:
            if region.x == 0 and region.width == self.width:
                _decode_jpeg_into(region, target)  # full rows are contiguous: no copy
            else:
                target[:] = _decode_jpeg(region)
        else:  # pragma: no cover - the codec only builds known Encoding members
            raise BadFrame(f"unknown region encoding {region.encoding!r}")

    def _decode_video(self, region: Region, target: Pixels) -> None:
        """Decode one H.264 access unit with the stream's one decoder into `target`."""
        try:
            import av
        except ImportError:  # pragma: no cover - av is a dependency
            raise BadFrame("H.264 frames need PyAV, which is not installed") from None
        if self._video is None or self._video_size != (region.width, region.height):
            context = av.CodecContext.create("h264", "r")
            context.thread_count = 1  # frame threading would hold pictures back (latency)
            self._video, self._video_size = context, (region.width, region.height)
        try:
            pictures = self._video.decode(av.Packet(region.data))
        except (av.FFmpegError, ValueError) as exc:
            # the session ends on a BadFrame; were it ever survivable, the agent's one
            # encoder would send no IDR until asked: a new decoder alone would not do
            self._video = None
            raise BadFrame(f"an H.264 region does not decode: {exc}") from None
        if not pictures:
            raise BadFrame("an H.264 region decoded to no picture")
        picture = pictures[-1]
        if (picture.width, picture.height) != (region.width, region.height):
            raise BadFrame(
                f"an H.264 region is {picture.width}x{picture.height}, "
                f"not the stated {region.width}x{region.height}"
            )
        # straight from the converted picture's plane: `to_ndarray` would copy it once more
        converted = picture.reformat(format="bgra")
        plane = converted.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(region.height, plane.line_size // 4, 4)
        target[:] = rows[:, : region.width]

    def copy(self) -> Pixels:
        """A snapshot of the visible pixels (for a screenshot; the live buffer keeps changing)."""
        return self.pixels[: max(self.height, 1), : max(self.width, 1)].copy()


def _inflate(region: Region) -> Pixels:
    expected = region.width * region.height * 4
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the output: a zlib bomb stops at the region's own size
        raw = inflater.decompress(region.data, expected)
    except zlib.error as exc:
        raise BadFrame(f"a lossless region does not inflate: {exc}") from None
    if len(raw) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise BadFrame(
            f"a lossless {region.width}x{region.height} region holds the wrong number of bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(region.height, region.width, 4)


def _decode_jpeg(region: Region) -> Pixels:
    try:
        image: Pixels = simplejpeg.decode_jpeg(region.data, colorspace="BGRA")
    except (ValueError, RuntimeError) as exc:
        raise BadFrame(f"a JPEG region does not decode: {exc}") from None
    if image.shape[:2] != (region.height, region.width):
        raise BadFrame(
            f"a JPEG region is {image.shape[1]}x{image.shape[0]}, "
            f"not the stated {region.width}x{region.height}"
        )
    return image


def _decode_jpeg_into(region: Region, target: Pixels) -> None:
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(region.data)
    except (ValueError, RuntimeError) as exc:
        raise BadFrame(f"a JPEG region does not decode: {exc}") from None
    if (width, height) != (region.width, region.height):
        raise BadFrame(
            f"a JPEG region is {width}x{height}, not the stated {region.width}x{region.height}"
        )
    try:
        simplejpeg.decode_jpeg(region.data, colorspace="BGRA", buffer=target)
    except (ValueError, RuntimeError) as exc:
        raise BadFrame(f"a JPEG region does not decode: {exc}") from None


def cursor_pixels(shape: CursorShape) -> Pixels:
    """The cursor image as an RGBA array (height, width, 4)."""
    return np.frombuffer(shape.rgba, dtype=np.uint8).reshape(shape.height, shape.width, 4)
