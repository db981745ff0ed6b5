"""Changed-tile detection, region encoding, frame splitting and ack pacing (no display)."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from agent.pacing import FramePacer
from agent.screen import FrameEncoder, Rect, TileDiff, frame_parts
from protocol.codec import decode_inner, encode
from protocol.messages import Encoding, Region


def screen(width: int = 200, height: int = 130) -> np.ndarray:
    return np.zeros((height, width, 4), np.uint8)


def as_u32(bgra: np.ndarray) -> np.ndarray:
    return bgra.view(np.uint32).reshape(bgra.shape[0], bgra.shape[1])


def test_first_diff_covers_the_whole_screen_in_row_runs() -> None:
    diff = TileDiff(200, 130)
    rects = diff.changed(as_u32(screen()))
    # 130 px = tile rows of 64, 64, 2; each row is one run across the full width
    assert rects == [Rect(0, 0, 200, 64), Rect(0, 64, 200, 64), Rect(0, 128, 200, 2)]


def test_unchanged_screen_gives_no_rects_and_a_change_gives_its_tiles() -> None:
    diff = TileDiff(200, 130)
    pixels = screen()
    diff.changed(as_u32(pixels))
    assert diff.changed(as_u32(pixels)) == []
    pixels[70, 10] = (1, 2, 3, 255)  # tile (1, 0)
    pixels[129, 199] = (9, 9, 9, 255)  # the last, partial tile (2, 3)
    pixels[5, 70] = pixels[5, 130] = (5, 5, 5, 255)  # tiles (0, 1) and (0, 2): one run
    assert diff.changed(as_u32(pixels)) == [
        Rect(64, 0, 128, 64),
        Rect(0, 64, 64, 64),
        Rect(192, 128, 8, 2),
    ]
    assert diff.changed(as_u32(pixels)) == []
    diff.reset()
    assert len(diff.changed(as_u32(pixels))) == 3


def test_diff_refuses_pixels_of_another_size() -> None:
    with pytest.raises(ValueError, match="expected 130x200"):
        TileDiff(200, 130).changed(as_u32(screen(100, 100)))


def test_encoder_sends_one_colour_as_solid_and_detail_as_jpeg_that_decodes() -> None:
    pixels = screen(128, 64)
    pixels[:, :64] = (40, 60, 210, 255)
    ramp = np.arange(64, dtype=np.uint8) * 4  # a smooth gradient, as photos have
    pixels[:, 64:, 0] = ramp[None, :]
    pixels[:, 64:, 1] = ramp[:, None]
    pixels[:, 64:, 2] = 128
    pixels[:, 64:, 3] = 255
    solid, photo = FrameEncoder(90).encode(pixels, [Rect(0, 0, 64, 64), Rect(64, 0, 64, 64)])
    assert solid.encoding is Encoding.SOLID and solid.data == bytes([40, 60, 210, 255])
    assert photo.encoding is Encoding.JPEG
    decoded = simplejpeg.decode_jpeg(photo.data, colorspace="BGRA")
    assert decoded.shape == (64, 64, 4)
    assert np.abs(decoded[:, :, :3].astype(int) - pixels[:, 64:, :3]).mean() < 3


def test_frame_parts_split_under_the_budget_and_only_the_last_is_final() -> None:
    regions = [
        Region(x=0, y=i, width=10, height=1, encoding=Encoding.JPEG, data=bytes(100))
        for i in range(5)
    ]
    parts = frame_parts(
        frame_id=7, captured_at_ns=1, width=10, height=5, regions=regions, budget=250
    )
    assert [len(p.regions) for p in parts] == [2, 2, 1]
    assert [p.final for p in parts] == [False, False, True]
    assert {p.frame_id for p in parts} == {7}
    assert decode_inner(encode(parts[0])) == parts[0]
    with pytest.raises(ValueError, match="does not fit"):
        frame_parts(frame_id=1, captured_at_ns=1, width=10, height=5, regions=regions, budget=50)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_closes_the_window_until_frames_are_acked() -> None:
    clock = Clock()
    pacer = FramePacer(window=2, max_fps=10, clock=clock)
    assert pacer.window_open() and pacer.delay() == 0
    pacer.captured()
    pacer.sent(1)
    assert pacer.delay() == pytest.approx(0.1)
    pacer.sent(2)
    assert not pacer.window_open()
    clock.now += 0.25
    assert pacer.acked(2)  # cumulative: acks 1 as well
    assert pacer.in_flight == 0 and pacer.acked_frames == 2
    assert pacer.round_trip == pytest.approx(0.25)
    assert not pacer.acked(2) and not pacer.acked(99)  # unknown ids are ignored
    pacer.sent(3)
    pacer.reset()
    assert pacer.window_open() and not pacer.acked(3)


def test_pacer_measures_throughput_from_large_frames_only_and_forgets_old_samples() -> None:
    clock = Clock()
    pacer = FramePacer(window=4, max_fps=60, clock=clock)
    assert pacer.throughput is None
    pacer.sent(1, 1_000)  # a typing frame: its time is the round trip, not the link's rate
    clock.now += 0.04
    pacer.acked(1)
    assert pacer.throughput is None
    clock.now += 1
    pacer.sent(2, 100_000)  # alone on the link: 0.24 s, of which 0.04 s is the round trip
    clock.now += 0.24
    pacer.acked(2)
    assert pacer.throughput == pytest.approx(500_000)
    clock.now += 1
    pacer.sent(3, 100_000)  # two back to back: the second was on the wire between the acks
    pacer.sent(4, 100_000)
    clock.now += 0.5
    pacer.acked(3)
    clock.now += 0.25
    pacer.acked(4)
    assert pacer.throughput == pytest.approx(500_000)  # the best recent sample (3 alone: ~217 KB/s)
    clock.now += 2.8  # sample 2 is older than the window now; 4's 400 KB/s remains
    assert pacer.throughput == pytest.approx(400_000)
    clock.now += 1
    assert pacer.throughput is None


def test_a_large_first_frame_does_not_measure_an_absurd_rate() -> None:
    clock = Clock()
    pacer = FramePacer(window=2, max_fps=60, clock=clock)
    pacer.sent(1, 600_000)  # the first full screen, no small frame seen yet
    clock.now += 1.0
    pacer.acked(1)
    rate = pacer.throughput
    assert rate is not None and 600_000 <= rate <= 2_400_000  # at most 4× the naive rate


def test_pacer_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FramePacer(window=0)
    with pytest.raises(ValueError, match="positive"):
        FramePacer(max_fps=0)


def test_a_damaged_box_is_widened_to_the_tile_grid_clipped_and_sized() -> None:
    from agent.platform.base import MonitorInfo
    from agent.runner import _tile_area
    from agent.screen import Rect

    right = MonitorInfo(index=2, left=1920, top=0, width=1280, height=800)
    # a letter at (2010, 70) on the right-hand monitor: one tile there, in its coordinates
    assert _tile_area((2010, 70, 9, 17), right) == Rect(64, 64, 64, 64)
    # over a tile edge: both tiles; at the monitor's far corner: clipped to it
    assert _tile_area((1920 + 60, 10, 10, 10), right) == Rect(0, 0, 128, 64)
    assert _tile_area((1920 + 1275, 795, 50, 50), right) == Rect(1216, 768, 64, 32)
    # drawn on the other monitor only: an empty area (nothing to grab here)
    assert _tile_area((100, 100, 50, 50), right) == Rect(0, 0, 0, 0)
    # unknown, or more than a quarter of the monitor: the whole monitor is grabbed
    assert _tile_area(None, right) is None
    assert _tile_area((1920, 0, 1280, 400), right) is None


def test_looks_are_capped_by_what_the_platform_can_tell() -> None:
    from agent.pacing import DEFAULT_MAX_FPS
    from agent.runner import POLLED_INTERVAL, look_interval
    from agent.screen import VIDEO_INTERVAL, StreamEncoder

    stream = StreamEncoder(128, 128, FrameEncoder())
    # no DAMAGE (Windows): every look grabs and compares, at most 60 a second
    assert stream.damage_known is False
    assert look_interval(stream) == POLLED_INTERVAL == pytest.approx(1 / 60)
    # drawing reported: looks only when drawn, up to the pacer's cap (75 a second)
    stream.damage_known = True
    assert look_interval(stream) is None and DEFAULT_MAX_FPS == 75
    # video: the encoder's rate, whatever the platform
    stream.in_video = True
    assert look_interval(stream) == VIDEO_INTERVAL
    stream.damage_known = False
    assert look_interval(stream) == VIDEO_INTERVAL
