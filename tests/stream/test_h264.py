"""The H.264 encoder choice: the GPU's where it works, libx264 where none does.

This VM has no GPU, so NVENC, AMF and Quick Sync (all in PyAV's FFmpeg) fail to open
here: these tests show that they are tried, passed over with a reason, and that a
failing one gives way to libx264 mid-stream with a decodable IDR. The probe that
guards the hardware encoders on a real PC (opens, no picture held back, decodes to
the picture) runs here against libx264, including its two ways of saying no.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import numpy as np
import pytest

from agent import h264
from agent.h264 import (
    H264_ENCODERS,
    SOFTWARE_ENCODER,
    VideoEncoder,
    encoder_settings,
    probe,
    probe_picture,
    psnr,
    video_encoder_for,
)

W, H = 320, 192
HARDWARE = [c for c in H264_ENCODERS if c != SOFTWARE_ENCODER]


def _opens(codec: str) -> bool:
    try:
        VideoEncoder(W, H, codec=codec).open()
    except av.FFmpegError:
        return False
    return True


GPU_HERE = [c for c in HARDWARE if _opens(c)]
no_gpu = pytest.mark.skipif(
    bool(GPU_HERE), reason=f"this machine has a GPU encoder ({GPU_HERE}): the test needs none"
)


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    """Each test probes anew (the agent keeps the results for its process)."""
    h264._probed.clear()
    yield
    h264._probed.clear()


def decode(context: av.CodecContext, data: bytes) -> np.ndarray:
    frames = context.decode(av.Packet(data))  # type: ignore[attr-defined]
    assert frames, "the access unit decoded to no picture"
    return np.asarray(frames[-1].reformat(format="bgra").to_ndarray(), np.uint8)


def test_pyav_carries_the_gpu_encoders_the_agent_tries() -> None:
    # the Windows wheels are built from the same FFmpeg; were one dropped, auto
    # would silently never use it
    assert set(H264_ENCODERS) <= set(av.codecs_available)


@no_gpu
@pytest.mark.parametrize("codec", HARDWARE)
def test_a_gpu_encoder_without_its_gpu_is_passed_over_with_a_reason(codec: str) -> None:
    why = probe(codec, W, H)
    assert why is not None and why.strip()
    assert "\n" not in why


@no_gpu
def test_auto_probes_each_gpu_encoder_once_then_takes_libx264(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.h264")
    video = video_encoder_for(W, H)
    assert video is not None and video.codec == SOFTWARE_ENCODER
    assert set(h264._probed) == {(c, W, H) for c in HARDWARE}
    assert all(why for why, _ in h264._probed.values())
    for codec in HARDWARE:
        assert f"H.264 encoder {codec} not used: " in caplog.text
    caplog.clear()
    again = video_encoder_for(W, H)  # a second stream: nothing probed, nothing logged
    assert again is not None and again.codec == SOFTWARE_ENCODER
    assert "not used" not in caplog.text


@no_gpu
def test_a_pinned_encoder_that_does_not_work_is_logged_and_libx264_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    video = video_encoder_for(W, H, "h264_qsv")
    assert video is not None and video.codec == SOFTWARE_ENCODER
    assert "H.264 encoder h264_qsv, as configured, does not work" in caplog.text
    assert ("h264_nvenc", W, H) not in h264._probed  # pinned: the others are not tried


def test_off_odd_sizes_and_unknown_names() -> None:
    assert video_encoder_for(W, H, "off") is None
    assert video_encoder_for(W + 1, H) is None
    with pytest.raises(ValueError, match="not one of auto, off"):
        video_encoder_for(W, H, "h264_vaapi")
    with pytest.raises(ValueError, match="not one of"):
        VideoEncoder(W, H, codec="mjpeg")


def test_the_probe_accepts_libx264() -> None:
    assert probe(SOFTWARE_ENCODER, W, H) is None


def test_the_probe_refuses_a_picture_below_its_quality_bar() -> None:
    # libx264 gives ~35 dB on the test pictures; a bar above it stands for a garbled
    # GPU output (swapped colours or misaligned rows score ~10 dB)
    why = probe(SOFTWARE_ENCODER, W, H, min_psnr=60)
    assert why is not None and why.startswith("its picture decoded at ")
    picture = probe_picture(W, H, 0)
    assert psnr(picture, picture[:, :, [2, 1, 0, 3]]) < h264.PROBE_MIN_PSNR
    assert psnr(picture, np.roll(picture, 8, axis=1)) < h264.PROBE_MIN_PSNR


def test_the_probe_refuses_an_encoder_that_holds_pictures_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libx264 without zerolatency looks ahead: its first pictures come out later
    def lookahead(name: str, crf: int, kbit: int | None) -> tuple[str, dict[str, str]]:
        return "yuv420p", {"preset": "ultrafast", "crf": str(crf), "rc-lookahead": "10"}

    monkeypatch.setattr(h264, "encoder_settings", lookahead)
    assert probe(SOFTWARE_ENCODER, W, H) == "it held a picture back (latency)"


@no_gpu
def test_a_gpu_encoder_that_cannot_open_gives_way_to_libx264_with_a_decodable_idr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    video = VideoEncoder(W, H, codec="h264_nvenc")  # as if chosen, then the driver failed
    decoder = av.CodecContext.create("h264", "r")
    first, second = probe_picture(W, H, 0), probe_picture(W, H, 1)
    shown = decode(decoder, video.encode(first))
    assert video.codec == SOFTWARE_ENCODER
    assert "H.264 encoder h264_nvenc failed" in caplog.text
    assert psnr(first, shown) > h264.PROBE_MIN_PSNR
    assert psnr(second, decode(decoder, video.encode(second))) > h264.PROBE_MIN_PSNR
    with pytest.raises(av.FFmpegError):
        VideoEncoder(W, H, codec="h264_amf").encode(first, fallback=False)


class FailsAt:
    """A stand-in for a GPU encoder (this VM has none): libx264's context that fails
    at its `n`th picture, as a driver reset or a lost device would."""

    def __init__(self, context: object, n: int) -> None:
        self.context, self.n, self.calls = context, n, 0

    def encode(self, frame: object) -> object:
        self.calls += 1
        if self.calls == self.n:
            raise av.FFmpegError(5, "Input/output error")
        return self.context.encode(frame)  # type: ignore[attr-defined]


def test_a_gpu_encoder_failing_mid_stream_gives_way_to_libx264_and_the_picture_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    opened: list[str] = []
    real_open = VideoEncoder._open

    def open_stand_in(self: VideoEncoder) -> object:
        opened.append(self.codec)
        if self.codec != "h264_nvenc":
            return real_open(self)
        self.codec = SOFTWARE_ENCODER
        try:
            return FailsAt(real_open(self), n=4)
        finally:
            self.codec = "h264_nvenc"

    monkeypatch.setattr(VideoEncoder, "_open", open_stand_in)
    video = VideoEncoder(W, H, codec="h264_nvenc")
    decoder = av.CodecContext.create("h264", "r")  # the console's one decoder, throughout
    for step in range(7):
        picture = probe_picture(W, H, step)
        assert psnr(picture, decode(decoder, video.encode(picture))) > h264.PROBE_MIN_PSNR
        assert video.codec == ("h264_nvenc" if step < 3 else SOFTWARE_ENCODER)
    assert opened == ["h264_nvenc", SOFTWARE_ENCODER]  # libx264 opened once, at the failure
    assert caplog.text.count("H.264 encoder h264_nvenc failed") == 1


@no_gpu
def test_a_failed_probe_is_tried_again_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[str] = []
    real_probe = h264.probe

    def counted(codec: str, width: int, height: int) -> str | None:
        probes.append(codec)
        return real_probe(codec, width, height)

    monkeypatch.setattr(h264, "probe", counted)
    video_encoder_for(W, H, "h264_nvenc")
    video_encoder_for(W, H, "h264_nvenc")
    assert probes == ["h264_nvenc"]  # believed for a while (each stream would pay again)
    why, when = h264._probed[("h264_nvenc", W, H)]
    h264._probed[("h264_nvenc", W, H)] = (why, when - h264.PROBE_AGAIN_AFTER - 1)
    video_encoder_for(W, H, "h264_nvenc")
    assert probes == ["h264_nvenc", "h264_nvenc"]  # an NVENC busy an hour ago may be free


@pytest.mark.parametrize("codec", H264_ENCODERS)
def test_every_encoder_is_set_for_low_latency_and_capped_on_a_slow_link(codec: str) -> None:
    pix_fmt, free = encoder_settings(codec, 26, None)
    _, capped = encoder_settings(codec, 26, 2000)
    assert pix_fmt in {f.name for f in av.Codec(codec, "w").video_formats or []}
    if codec == SOFTWARE_ENCODER:
        assert free["tune"] == "zerolatency"
        assert "vbv-maxrate=2000" in capped["x264-params"]
    else:
        assert free.get("bf", "0") == "0"
        assert "maxrate" not in free
        # capped: a peak at the cap, a buffer of 1/10 s, a target below the peak (a
        # constant-quality mode would drop the buffer: NVENC's does)
        assert (capped["maxrate"], capped["bufsize"], capped["b"]) == ("2000k", "200k", "1000k")
        assert "cq" not in capped and "global_quality" not in capped
    if codec == "h264_amf":
        assert "low_delay" in free["flags"]  # else FFmpeg's AMF wrapper holds a frame back
    if codec == "h264_qsv":
        assert int(free["g"]) <= 65535  # a 16-bit field in Quick Sync
    elif codec != SOFTWARE_ENCODER:
        assert free["g"] == str(h264.GOP)
    # every option is one this FFmpeg's encoder knows, with a value it takes: an
    # unknown name would be ignored silently, a bad value fail only on the GPU's PC
    table = av.CodecContext.create(codec, "w").supported_options
    known = {o.name: o for o in [*table.generic, *table.private]}
    for options in (free, capped):
        for name, value in options.items():
            assert name in known, f"{codec} has no option {name}"
            choices = {c.name for c in known[name].choices or []}
            for word in value.split("+"):
                if choices and word and not word.lstrip("-").isdigit():
                    assert word in choices, f"{codec}: {name}={value}"
