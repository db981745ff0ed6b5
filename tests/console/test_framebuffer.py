"""The framebuffer decodes every region kind in place and refuses what does not decode."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import simplejpeg

from console.errors import BadFrame
from console.framebuffer import CURTAIN_BGRA, FrameBuffer
from console.png import encode_png
from protocol.messages import Encoding, Frame, Region


def frame(*regions: Region, width: int = 64, height: int = 48, frame_id: int = 1) -> Frame:
    return Frame(frame_id=frame_id, captured_at_ns=0, width=width, height=height, regions=regions)


def zlib_region(pixels: np.ndarray, x: int = 0, y: int = 0) -> Region:
    h, w = pixels.shape[:2]
    return Region(
        x=x,
        y=y,
        width=w,
        height=h,
        encoding=Encoding.ZLIB_BGRA,
        data=zlib.compress(pixels.tobytes()),
    )


def gradient(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)


def test_lossless_region_lands_exactly_where_stated() -> None:
    fb = FrameBuffer()
    tile = gradient(16, 8)
    rect = fb.apply(frame(zlib_region(tile, x=10, y=20)))
    assert (fb.width, fb.height) == (64, 48)
    assert np.array_equal(fb.pixels[20:36, 10:18], tile)
    assert rect is not None and (rect.x, rect.y, rect.width, rect.height) == (10, 20, 8, 16)
    assert fb.encodings == {Encoding.ZLIB_BGRA}


def test_solid_and_blank_regions_fill_their_rectangles() -> None:
    fb = FrameBuffer()
    fb.apply(
        frame(
            Region(x=0, y=0, width=64, height=48, encoding=Encoding.SOLID, data=b"\x01\x02\x03\xff")
        )
    )
    assert (fb.pixels[5, 5] == [1, 2, 3, 255]).all()
    assert not fb.curtain
    fb.apply(frame(Region(x=0, y=0, width=64, height=48, encoding=Encoding.BLANK, data=b"")))
    assert fb.curtain
    assert tuple(fb.pixels[47, 63]) == CURTAIN_BGRA
    fb.apply(
        frame(Region(x=0, y=0, width=4, height=4, encoding=Encoding.SOLID, data=b"\0\0\0\xff"))
    )
    assert not fb.curtain  # a picture again: the curtain is lifted


def test_jpeg_region_decodes_close_to_the_source() -> None:
    fb = FrameBuffer()
    source = np.zeros((32, 32, 4), dtype=np.uint8)
    source[:, :16] = (200, 100, 50, 255)
    source[:, 16:] = (10, 220, 130, 255)
    data = simplejpeg.encode_jpeg(source, quality=95, colorspace="BGRA")
    fb.apply(frame(Region(x=32, y=16, width=32, height=32, encoding=Encoding.JPEG, data=data)))
    diff = np.abs(fb.pixels[16:48, 32:64, :3].astype(int) - source[:, :, :3].astype(int))
    assert diff.mean() < 4


def test_full_width_jpeg_is_decoded_straight_into_the_buffer() -> None:
    fb = FrameBuffer()
    fb.apply(
        frame(Region(x=0, y=0, width=64, height=48, encoding=Encoding.SOLID, data=b"\0\0\0\xff"))
    )
    pixels_before = fb.pixels
    band = np.zeros((16, 64, 4), dtype=np.uint8)
    band[:] = (20, 200, 120, 255)
    data = simplejpeg.encode_jpeg(band, quality=95, colorspace="BGRA")
    fb.apply(frame(Region(x=0, y=8, width=64, height=16, encoding=Encoding.JPEG, data=data)))
    assert fb.pixels is pixels_before
    assert np.abs(fb.pixels[8:24, :, :3].astype(int) - band[:, :, :3]).max() <= 3
    assert (fb.pixels[7] == [0, 0, 0, 255]).all() and (fb.pixels[24] == [0, 0, 0, 255]).all()
    with pytest.raises(BadFrame, match="not the stated"):
        fb.apply(frame(Region(x=0, y=0, width=64, height=20, encoding=Encoding.JPEG, data=data)))
    with pytest.raises(BadFrame, match="does not decode"):
        fb.apply(frame(Region(x=0, y=0, width=64, height=16, encoding=Encoding.JPEG, data=b"junk")))


def test_buffer_is_reused_until_the_screen_size_changes() -> None:
    fb = FrameBuffer()
    for i in range(50):
        fb.apply(frame(zlib_region(gradient(8, 8), x=i % 56), frame_id=i))
    assert fb.allocations == 1
    fb.apply(frame(zlib_region(gradient(8, 8)), width=128, height=96))
    assert fb.allocations == 2 and fb.pixels.shape == (96, 128, 4)


@pytest.mark.parametrize(
    ("encoding", "data", "why"),
    [
        (Encoding.ZLIB_BGRA, b"not zlib at all", "does not inflate"),
        (Encoding.ZLIB_BGRA, zlib.compress(b"\0" * 10), "wrong number of bytes"),
        (Encoding.ZLIB_BGRA, zlib.compress(b"\0" * 16 * 16 * 4 * 50), "wrong number of bytes"),
        (Encoding.JPEG, b"\xff\xd8 garbage", "does not decode"),
    ],
)
def test_region_that_does_not_decode_is_refused(encoding: Encoding, data: bytes, why: str) -> None:
    fb = FrameBuffer()
    with pytest.raises(BadFrame, match=why):
        fb.apply(frame(Region(x=0, y=0, width=16, height=16, encoding=encoding, data=data)))


def test_jpeg_of_another_size_is_refused() -> None:
    data = simplejpeg.encode_jpeg(np.zeros((8, 8, 4), np.uint8), colorspace="BGRA")
    with pytest.raises(BadFrame, match="not the stated"):
        FrameBuffer().apply(
            frame(Region(x=0, y=0, width=16, height=16, encoding=Encoding.JPEG, data=data))
        )


def test_png_of_the_framebuffer_reads_back_with_the_same_pixels() -> None:
    from PySide6.QtGui import QImage

    fb = FrameBuffer()
    tile = gradient(48, 64)
    tile[:, :, 3] = 255
    fb.apply(frame(zlib_region(tile)))
    image = QImage.fromData(encode_png(fb.copy()), "PNG")
    assert (image.width(), image.height()) == (64, 48)
    b, g, r = (int(v) for v in tile[7, 9, :3])
    assert image.pixelColor(9, 7).getRgb()[:3] == (r, g, b)
