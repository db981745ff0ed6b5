"""The stream's per-frame codec choice, end to end through the console's framebuffer.

No display: synthetic BGRA screens go through `agent.screen.StreamEncoder`, the
protocol's codec (encode/decode) and `console.framebuffer.FrameBuffer`, and the
console's picture is compared with the screen bit for bit.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest

from agent.h264 import video_encoder_for
from agent.screen import (
    QUIET_AFTER_CAPTURES,
    QUIET_STRIDE,
    FrameEncoder,
    Rect,
    StreamEncoder,
    frame_parts,
)
from console.errors import BadFrame
from console.framebuffer import FrameBuffer
from protocol.codec import decode_inner, encode
from protocol.messages import Encoding, Frame, Region

W, H = 640, 384  # 10 × 6 tiles


def text_screen(seed: int = 1) -> npt.NDArray[np.uint8]:
    """Dark page with light 'glyphs': sharp edges that JPEG cannot keep exact."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 4), np.uint8)
    img[:, :, :3] = (0x18, 0x14, 0x10)
    img[:, :, 3] = 255
    glyphs = rng.random((H, W)) < 0.2
    img[glyphs, :3] = (0xE9, 0xDE, 0xD8)
    return img


class Pipe:
    """Agent stream → wire bytes → console framebuffer."""

    def __init__(self, refine_per_frame: int = 170) -> None:
        # refined after 2 still captures (the default is 4: ~53 ms at 75 captures a second)
        self.stream = StreamEncoder(
            W, H, FrameEncoder(), refine_per_frame=refine_per_frame, refine_after=2
        )
        self.fb = FrameBuffer()
        self.frame_id = 0

    def step(self, screen: npt.NDArray[np.uint8]) -> list[Region]:
        regions = self.stream.regions(screen)
        if regions:
            self.frame_id += 1
            for part in frame_parts(
                frame_id=self.frame_id, captured_at_ns=0, width=W, height=H, regions=regions
            ):
                self.fb.apply(decode_inner(encode(part)))  # type: ignore[arg-type]
        return regions

    def exact(self, screen: npt.NDArray[np.uint8]) -> bool:
        return bool(np.array_equal(self.fb.pixels[:, :, :3], screen[:, :, :3]))


def test_a_full_screen_change_goes_jpeg_then_still_tiles_become_exact() -> None:
    pipe, screen = Pipe(), text_screen()
    first = pipe.step(screen)
    assert {r.encoding for r in first} == {Encoding.JPEG}
    assert not pipe.exact(screen)  # JPEG smears the glyphs
    assert pipe.step(screen) == []  # still for one capture: not yet
    refined = pipe.step(screen)  # still for two captures: the lossless copy
    assert refined and {r.encoding for r in refined} <= {Encoding.ZLIB_BGRA, Encoding.SOLID}
    assert pipe.exact(screen)
    assert pipe.stream.pending_refinement == 0
    assert pipe.step(screen) == []  # nothing more once exact


def test_a_small_change_is_sent_lossless_and_is_exact_at_once() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(4):
        pipe.step(screen)
    assert pipe.exact(screen)
    glyph = np.random.default_rng(3).random((18, 9)) < 0.4  # a typed character
    screen[100:118, 200:209][glyph, :3] = (255, 255, 255)
    regions = pipe.step(screen)
    assert [r.encoding for r in regions] == [Encoding.ZLIB_BGRA]
    # only the letter's own box, not its 64×64 tile
    changed = np.argwhere(glyph)  # the page has no white pixels: all of them changed
    top, left = changed.min(axis=0)
    bottom, right = changed.max(axis=0)
    r = regions[0]
    assert (r.x, r.y, r.width, r.height) == (
        200 + left,
        100 + top,
        right - left + 1,
        bottom - top + 1,
    )
    assert pipe.exact(screen)
    screen[100:118, 200:209, :3] = (255, 255, 255)  # a block of one colour: SOLID
    regions = pipe.step(screen)
    assert [r.encoding for r in regions] == [Encoding.SOLID]
    assert pipe.exact(screen)


def test_content_that_keeps_moving_is_not_refined_until_it_stops() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(4):
        pipe.step(screen)
    for k in range(6):  # a 'video' in the top half, changing every capture
        screen[: H // 2] = text_screen(10 + k)[: H // 2]
        regions = pipe.step(screen)
        assert {r.encoding for r in regions} == {Encoding.JPEG}
        assert all(r.y < H // 2 for r in regions)  # the still bottom half is left alone
    assert pipe.stream.pending_refinement == (H // 2 // 64) * (W // 64)
    for _ in range(3):
        pipe.step(screen)
    assert pipe.exact(screen)


def test_refinement_is_spread_over_frames_and_completes() -> None:
    pipe, screen = Pipe(refine_per_frame=7), text_screen()
    pipe.step(screen)
    tiles = pipe.stream.pending_refinement
    assert tiles == 60
    frames = 0
    while pipe.stream.pending_refinement and frames < 20:
        before = pipe.stream.pending_refinement
        pipe.step(screen)
        assert before - pipe.stream.pending_refinement <= 7
        frames += 1
    assert pipe.exact(screen)
    assert frames == 1 + -(-tiles // 7)  # one capture of waiting, then 7 tiles a frame


def test_reset_sends_the_whole_screen_again_and_it_still_ends_exact() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(4):
        pipe.step(screen)
    pipe.stream.reset()
    pipe.fb = FrameBuffer()  # a new viewer
    assert pipe.step(screen)
    for _ in range(3):
        pipe.step(screen)
    assert pipe.exact(screen)


def test_a_quiet_screen_still_sees_every_change() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(QUIET_AFTER_CAPTURES + 5):  # long enough still to sample rows only
        pipe.step(screen)
    assert pipe.exact(screen)
    assert pipe.stream.quiet  # the agent may now capture less often
    screen[200:216, 300:310, :3] = 255  # a glyph: seen by the first sampled capture
    assert pipe.step(screen)
    assert pipe.exact(screen)
    assert not pipe.stream.quiet
    for _ in range(QUIET_AFTER_CAPTURES + 5):
        pipe.step(screen)
    screen[333, 10:600, :3] = (0, 0, 255)  # one row thin: seen within QUIET_STRIDE captures
    seen = [bool(pipe.step(screen)) for _ in range(QUIET_STRIDE)]
    assert any(seen)
    assert pipe.exact(screen)


def pan(step: int) -> npt.NDArray[np.uint8]:
    """A smooth 'photo' panning sideways: every tile changes every capture."""
    y, x = np.mgrid[0:H, 0 : W + 400]
    base = np.zeros((H, W + 400, 4), np.uint8)
    base[:, :, 0] = (x * 0.7 + y * 0.2) % 256
    base[:, :, 1] = (np.sin(x / 37.0) * 90 + 128).astype(np.uint8)
    base[:, :, 2] = (y * 0.6) % 256
    base[:, :, 3] = 255
    return np.ascontiguousarray(base[:, 16 * step : 16 * step + W])


def test_full_screen_motion_goes_h264_and_ends_exact_when_it_stops() -> None:
    pipe = Pipe()
    pipe.stream.video = video_encoder_for(W, H)
    assert pipe.stream.video is not None, "PyAV with libx264 is a dependency"
    kinds = []
    for step in range(8):
        screen = pan(step)
        regions = pipe.step(screen)
        kinds.append({r.encoding for r in regions})
    assert kinds[2:] == [{Encoding.H264}] * 6  # a run of motion becomes video
    assert psnr(pipe.fb.pixels, screen) > 30  # the decoded picture is the screen, lossy
    for _ in range(4):
        pipe.step(screen)
    assert pipe.exact(screen)  # still: refined lossless over the video picture
    pipe.step(pan(20))
    pipe.step(pan(21))
    again = pipe.step(pan(22))
    assert {r.encoding for r in again} == {Encoding.H264}
    # the same encoder goes on: a P-frame against the decoder's last video picture,
    # which the tiles painted over the framebuffer in between did not touch
    assert not nal_types(again[0].data) & {IDR}
    assert psnr(pipe.fb.pixels, pan(22)) > 30
    pipe.stream.reset()  # a new viewer: its decoder knows nothing, so an IDR
    video = [
        r for step in range(23, 26) for r in pipe.step(pan(step)) if r.encoding is Encoding.H264
    ]
    assert video and IDR in nal_types(video[0].data)
    assert psnr(pipe.fb.pixels, pan(25)) > 30


IDR = 5


def nal_types(annex_b: bytes) -> set[int]:
    """The NAL unit types in an Annex B access unit (5: an IDR slice, 1: a P slice)."""
    return {
        annex_b[i + 3] & 0x1F for i in range(len(annex_b) - 3) if annex_b[i : i + 3] == b"\0\0\1"
    }


def test_a_capture_known_unchanged_is_refined_from_the_last_pixels() -> None:
    pipe, screen = Pipe(), text_screen()
    assert {r.encoding for r in pipe.step(screen)} == {Encoding.JPEG}
    assert pipe.stream.unchanged() == []  # still for one capture: not yet
    refined = pipe.stream.unchanged()  # two: the lossless copy, with no new pixels given
    assert refined and {r.encoding for r in refined} <= {Encoding.ZLIB_BGRA, Encoding.SOLID}
    for part in frame_parts(frame_id=9, captured_at_ns=0, width=W, height=H, regions=refined):
        pipe.fb.apply(decode_inner(encode(part)))  # type: ignore[arg-type]
    assert pipe.exact(screen)
    assert pipe.stream.unchanged() == []  # nothing left to send
    for _ in range(QUIET_AFTER_CAPTURES):
        pipe.stream.unchanged()
    assert pipe.stream.quiet


def test_on_a_measured_slow_link_refinement_goes_in_pieces_the_link_carries() -> None:
    pipe, screen = Pipe(), text_screen()
    pipe.stream.adapt(0.05, now=0.0, rate=100_000)  # 100 KB/s: 5 KB of refinement per frame
    assert pipe.stream.refine_budget == 5_000
    pipe.step(screen)
    pipe.step(screen)
    sizes = []
    for _ in range(200):  # bounded: 60 tiles of noisy text at ~5 KB a piece
        regions = pipe.step(screen)
        if not regions:
            break
        sizes.append(sum(len(r.data) for r in regions))
    assert pipe.exact(screen) and pipe.stream.pending_refinement == 0
    assert len(sizes) > 3  # spread over frames, not one burst
    # each frame stops once over the budget: at most one piece (≤ 8 tiles) beyond it
    piece = 8 * 64 * 64 * 4
    assert max(sizes) <= 5_000 + piece


def test_a_slow_link_caps_the_video_bitrate() -> None:
    pipe = Pipe()
    pipe.stream.video = video_encoder_for(W, H)
    assert pipe.stream.video is not None
    pipe.stream.adapt(0.4, now=0.0, rate=200_000)
    assert pipe.stream.degraded and pipe.stream.video.max_rate == 140_000
    video = []
    for step in range(20):
        video += [len(r.data) for r in pipe.step(pan(step)) if r.encoding is Encoding.H264]
    # VBV of 1/10 s at 140 KB/s: no video frame (the IDR included) beyond ~14 KB
    assert len(video) >= 15 and max(video) <= 14_000 * 1.2
    assert psnr(pipe.fb.pixels, pan(19)) > 25
    pipe.stream.adapt(0.01, now=1.0)
    pipe.stream.adapt(0.01, now=3.5)
    assert not pipe.stream.degraded and pipe.stream.video.max_rate is None


def document(offset: int) -> npt.NDArray[np.uint8]:
    """A page of text lines 16 px apart, scrolled down by `offset` pixels, below a
    fixed 32 px title bar: what a scrolled editor or browser shows."""
    rng = np.random.default_rng(5)
    page = np.zeros((H * 3, W, 4), np.uint8)
    page[:, :, :3] = (0xF8, 0xF8, 0xF8)
    page[:, :, 3] = 255
    for top in range(0, page.shape[0] - 16, 16):  # a "line": 10 rows of glyph noise
        glyphs = rng.random((10, W - 40)) < 0.3
        page[top + 3 : top + 13, 20 : W - 20][glyphs, :3] = (0x20, 0x20, 0x20)
    screen = np.empty((H, W, 4), np.uint8)
    screen[:32] = (0x80, 0x50, 0x30, 255)
    screen[32:] = page[offset : offset + H - 32]
    return screen


def test_a_scroll_is_sent_as_a_copy_plus_the_new_lines_and_stays_exact() -> None:
    pipe = Pipe()
    for _ in range(4):  # first picture, then its refinement
        pipe.step(document(0))
    assert pipe.exact(document(0))
    for step in range(1, 6):
        screen = document(16 * step)
        regions = pipe.step(screen)
        kinds = [r.encoding for r in regions]
        assert kinds[0] is Encoding.COPY and Encoding.JPEG not in kinds, kinds
        copy = regions[0]
        assert copy.source == (copy.x, copy.y + 16)  # the page moved up by one line
        assert pipe.exact(screen)  # exact while it moves, not only once still
        sent = sum(len(r.data) for r in regions)
        assert sent < W * 64 * 4 // 4  # one new strip's worth (zlib), not a screen
    for step in (4, 3):  # and back up: the page moves down
        regions = pipe.step(document(16 * step))
        assert regions[0].encoding is Encoding.COPY
        assert regions[0].source == (regions[0].x, regions[0].y - 16)
        assert pipe.exact(document(16 * step))


def test_a_scroll_over_a_picture_not_yet_exact_carries_its_lossy_parts_to_refinement() -> None:
    pipe = Pipe(refine_per_frame=20)
    for _ in range(3):  # JPEG, then the first 20 of 60 tiles refined: 40 still lossy
        pipe.step(document(0))
    assert 0 < pipe.stream.pending_refinement < 60
    screen = document(16)
    regions = pipe.step(screen)
    assert regions[0].encoding is Encoding.COPY  # moved as it is, lossy parts and all
    assert not pipe.exact(screen)  # the lossy parts moved too ...
    assert pipe.stream.pending_refinement > 0  # ... and are still known to be lossy
    for _ in range(10):  # bounded: refined where they went
        pipe.step(screen)
    assert pipe.exact(screen)


def test_a_letter_typed_over_a_tile_still_lossy_resends_the_whole_tile() -> None:
    pipe = Pipe()
    pipe.step(text_screen())  # all new: JPEG, every tile lossy until refined
    lossy = pipe.stream.pending_refinement
    assert lossy > 0
    screen = text_screen()
    glyph = np.random.default_rng(4).random((18, 9)) < 0.4
    screen[100:118, 200:209][glyph, :3] = (255, 255, 255)
    regions = pipe.step(screen)
    # the tile around the letter goes whole and lossless: it is exact now, not only the letter
    assert [(r.x, r.y, r.width, r.height, r.encoding) for r in regions] == [
        (192, 64, 64, 64, Encoding.ZLIB_BGRA)
    ]
    assert pipe.stream.pending_refinement == lossy - 1
    assert np.array_equal(pipe.fb.pixels[64:128, 192:256, :3], screen[64:128, 192:256, :3])


def test_a_whole_new_picture_is_sent_whole_even_when_it_is_small() -> None:
    """A first picture (or one after a reset) has no pixel differences to cut runs
    down to: a screen of a few tiles goes lossless, tile for tile, even right after
    a frame that was cut down to one changed pixel."""
    stream = StreamEncoder(128, 128, FrameEncoder())
    screen = np.ascontiguousarray(text_screen()[:128, :128])
    for frame_id in (1, 3):
        fb = FrameBuffer()
        regions = stream.regions(screen)
        assert {(r.width, r.height) for r in regions} == {(128, 64)}, regions  # two runs
        screen[5, 5, :3] = (frame_id, 0, 0)  # one pixel: the next frame is that pixel only
        regions += stream.regions(screen)
        assert (regions[-1].x, regions[-1].y, regions[-1].width) == (5, 5, 1)
        for part in frame_parts(
            frame_id=frame_id, captured_at_ns=0, width=128, height=128, regions=regions
        ):
            fb.apply(decode_inner(encode(part)))  # type: ignore[arg-type]
        assert np.array_equal(fb.pixels[:, :, :3], screen[:, :, :3])
        stream.reset()  # a new viewer: its framebuffer is empty


@pytest.mark.parametrize("then", ["reverts", "reverts beside a change"])
def test_a_blink_in_a_row_the_quiet_look_skipped_never_reaches_the_console(then: str) -> None:
    """On a quiet screen a look compares sampled rows only; refinement going out in the
    same look must come from the pixels the compare knows, or a 1-px blink in a
    skipped row stays on the console for good, with nothing left to refine."""
    stream = StreamEncoder(W, H, FrameEncoder(), refine_after=2, refine_per_frame=1)
    pipe = Pipe()
    pipe.stream = stream
    screen = text_screen()
    for _ in range(QUIET_AFTER_CAPTURES + 2):  # JPEG, then refined one tile a look
        pipe.step(screen)
    assert stream.diff.quiet and stream.pending_refinement > 0
    tile = int(np.flatnonzero(stream._lossy)[0])
    ty, tx = divmod(tile, W // 64)
    phase = stream.diff._quiet % QUIET_STRIDE
    y, x = ty * 64 + 8 + (phase + 1) % QUIET_STRIDE, tx * 64 + 5  # a row this look skips
    was = screen[y, x].copy()
    screen[y, x, :3] = (1, 2, 3)
    pipe.step(screen)  # refines a tile: that one, from the capture, was the bug
    screen[y, x] = was  # the blink is over
    if then == "reverts beside a change":
        screen[y - y % QUIET_STRIDE + phase, x + 20, :3] = (9, 9, 9)
    for _ in range(80):
        pipe.step(screen)
    assert stream.pending_refinement == 0
    assert pipe.exact(screen)


def test_a_change_known_to_be_in_a_small_area_is_compared_and_sent_there_only() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(4):
        pipe.step(screen)
    assert pipe.exact(screen)
    typed = screen.copy()
    typed[70:80, 130:140, :3] = 0x55  # a "letter" inside tile (row 1, col 2)
    area = Rect(128, 64, 128, 64)  # the damaged box, widened to the tile grid
    regions = pipe.stream.regions_in(area, np.ascontiguousarray(typed[64:128, 128:256]))
    # the letter's own pixels, in tile (row 1, col 2), not the rest of the area
    assert [(r.x, r.y, r.width, r.height) for r in regions] == [(130, 70, 10, 10)]
    assert regions[0].encoding is Encoding.SOLID
    for part in frame_parts(frame_id=50, captured_at_ns=0, width=W, height=H, regions=regions):
        pipe.fb.apply(decode_inner(encode(part)))  # type: ignore[arg-type]
    assert pipe.exact(typed)
    assert pipe.step(typed) == []  # the whole-screen compare agrees: nothing left
    with pytest.raises(ValueError, match="tile grid"):
        pipe.stream.regions_in(Rect(10, 64, 64, 64), np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        pipe.stream.regions_in(Rect(0, 64, 64, 64), np.zeros((32, 64, 4), np.uint8))
    pipe.stream.reset()
    with pytest.raises(ValueError, match="whole screen"):
        pipe.stream.regions_in(area, np.zeros((64, 128, 4), np.uint8))


def test_a_thin_line_after_a_still_spell_is_seen_when_drawing_is_reported() -> None:
    pipe, screen = Pipe(), text_screen()
    for _ in range(4):
        pipe.step(screen)
    pipe.stream.damage_known = True  # X DAMAGE: a grab means something was drawn
    for _ in range(QUIET_AFTER_CAPTURES + 1):
        assert pipe.stream.unchanged() == []
    assert pipe.stream.diff.quiet
    underlined = screen.copy()
    underlined[201, 100:300, :3] = 0xFF  # one row: not a sampled row of every phase
    assert pipe.step(underlined)
    assert pipe.exact(underlined)


def test_video_at_25_fps_with_empty_looks_between_its_frames_stays_video() -> None:
    pipe = Pipe()
    pipe.stream.video = video_encoder_for(W, H)
    assert pipe.stream.video is not None
    kinds = []
    for step in range(10):  # at the pacer's cap, a look that saw nothing between frames
        kinds.append({r.encoding for r in pipe.step(pan(step))})
        pipe.stream.unchanged()
    assert kinds[2:] == [{Encoding.H264}] * 8


def test_video_reported_drawn_all_over_skips_the_compare_but_still_probes_for_scrolls() -> None:
    pipe = Pipe()
    pipe.stream.video = video_encoder_for(W, H)
    assert pipe.stream.video is not None
    for step in range(3):
        pipe.step(pan(step))
    assert pipe.stream.in_video
    compares = 0
    real = pipe.stream.diff.changed_tiles

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal compares
        compares += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    pipe.stream.diff.changed_tiles = counted  # type: ignore[method-assign,assignment]
    for step in range(3, 11):
        regions = pipe.stream.regions(pan(step), drawn_all_over=True)
        assert [r.encoding for r in regions] == [Encoding.H264]
        for part in frame_parts(
            frame_id=100 + step, captured_at_ns=0, width=W, height=H, regions=regions
        ):
            pipe.fb.apply(decode_inner(encode(part)))  # type: ignore[arg-type]
    assert compares == 2  # only every 4th frame, the scroll probe
    assert psnr(pipe.fb.pixels, pan(10)) > 30
    for _ in range(6):  # still: refined from the pixels the frames without compare kept
        pipe.step(pan(10))
    assert pipe.exact(pan(10))


def test_a_change_that_is_no_scroll_is_not_sent_as_a_copy() -> None:
    pipe = Pipe()
    for _ in range(4):
        pipe.step(document(0))
    regions = pipe.step(text_screen(seed=9))  # a different page, not a moved one
    assert Encoding.COPY not in {r.encoding for r in regions}
    for _ in range(4):
        pipe.step(text_screen(seed=9))
    assert pipe.exact(text_screen(seed=9))


def test_a_copy_from_outside_the_screen_is_a_bad_frame() -> None:
    fb = FrameBuffer()
    fb.apply(Frame(frame_id=1, captured_at_ns=0, width=W, height=H, regions=()))
    bad = Region(
        x=0, y=0, width=W, height=100, encoding=Encoding.COPY, data=struct.pack(">HH", 0, H - 50)
    )
    with pytest.raises(BadFrame, match="leaves"):
        fb.apply(Frame(frame_id=2, captured_at_ns=0, width=W, height=H, regions=(bad,)))


def test_a_broken_h264_region_is_a_bad_frame_not_a_crash() -> None:
    fb = FrameBuffer()
    bad = Region(x=0, y=0, width=W, height=H, encoding=Encoding.H264, data=b"\x00\x00\x01junk")
    with pytest.raises(BadFrame):
        fb.apply(Frame(frame_id=1, captured_at_ns=0, width=W, height=H, regions=(bad,)))


def psnr(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    mse = float(np.mean((a[:, :, :3].astype(np.int32) - b[:, :, :3]) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255 * 255 / mse))


def test_a_slow_link_lowers_the_quality_and_a_fast_one_restores_it() -> None:
    pipe = Pipe()
    pipe.stream.video = video_encoder_for(W, H)
    assert pipe.stream.video is not None
    full = pipe.stream.encoder.quality
    pipe.stream.adapt(0.1, now=0.0)  # between the thresholds: no change
    assert not pipe.stream.degraded
    pipe.stream.adapt(0.4, now=0.1)
    assert pipe.stream.degraded
    assert pipe.stream.encoder.quality < full
    for step in range(5):  # video after the switch still decodes (a fresh IDR)
        pipe.step(pan(step))
    assert psnr(pipe.fb.pixels, pan(4)) > 25
    pipe.stream.adapt(0.1, now=1.0)  # hysteresis: not yet
    assert pipe.stream.degraded
    pipe.stream.adapt(0.01, now=2.0)  # fast, but not for long enough
    pipe.stream.adapt(0.3, now=2.5)  # a slow one again restarts the count
    pipe.stream.adapt(0.01, now=3.0)
    pipe.stream.adapt(0.01, now=4.9)
    assert pipe.stream.degraded
    pipe.stream.adapt(0.01, now=5.0)
    assert not pipe.stream.degraded
    assert pipe.stream.encoder.quality == full
    for _ in range(4):
        pipe.step(pan(4))
    assert pipe.exact(pan(4))
