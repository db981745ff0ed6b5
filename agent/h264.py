"""H.264 for full-screen motion: the PC's GPU encoder where it has one, libx264 otherwise.

A 1080p frame costs libx264 (ultrafast) and its colour conversion ~10 ms of CPU, a
third of a core at 30 fps (`bench.video_cost`): more than a VNC server spends on a
JPEG of the same frame. The GPUs of office PCs encode H.264 in fixed-function
hardware at almost no CPU: NVIDIA's NVENC, AMD's AMF (VCE/VCN) and Intel's Quick
Sync, all three reached through FFmpeg's encoders, which PyAV's wheels carry. So
`video_encoder_for` takes the first one that works on this PC, in `H264_ENCODERS`
order, and libx264 when none does. NVENC and AMF take BGRA and convert the colours
on the GPU too; Quick Sync takes NV12, converted by swscale on the CPU.

"Works" is proven, not assumed (`probe`): the encoder must open, and turn each of a
few test pictures into an access unit at once (no frame held back: the console
paints every H.264 region the moment it arrives) that FFmpeg's software decoder,
the console's, decodes to the picture within `PROBE_MIN_PSNR`. A driver that opens
but lags or garbles is passed over, and an encoder that fails later, in the middle
of a session (a driver reset, NVENC's session limit), gives way to libx264 with an
IDR (`VideoEncoder.encode`). The admin may pin one (`video_encoder` in the agent's
configuration: a name below, `auto`, or `off` for tiles only).

This VM has no GPU: here every hardware encoder fails to open and the agent uses
libx264. The tests prove the choice, the probe and the fallback with the encoders
that do run here; the hardware encoders' own output is checked by the probe on the
PC that has them, every time the agent starts streaming.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

VIDEO_FPS = 30

VIDEO_CRF = 26
"""libx264 constant rate factor: moving pictures look clean at ~1/5 of JPEG's
bytes; what stays still is sent again lossless anyway. The hardware encoders get
the same number as their constant-quality QP."""

SOFTWARE_ENCODER = "libx264"

H264_ENCODERS = ("h264_nvenc", "h264_amf", "h264_qsv", SOFTWARE_ENCODER)
"""FFmpeg's H.264 encoders the agent can use, in the order `auto` tries them: the
GPU's (NVIDIA, AMD, Intel Quick Sync), then the CPU's. A PC with two GPUs (a laptop
with a discrete NVIDIA) encodes on the discrete one."""

ENCODER_CHOICES = ("auto", "off", *H264_ENCODERS)
"""Values of the agent's `video_encoder` setting."""

GOP = 1_000_000
"""Frames between IDRs: never, in practice. An IDR is the largest frame of all; one
is sent only when the stream restarts (a new viewer, a quality switch)."""

PROBE_FRAMES = 3
"""Test pictures a candidate encoder must code, each at once."""

PROBE_MIN_PSNR = 25.0
"""dB the decoded test pictures must reach: libx264 gives 35 on them, and 28.5 at its
worst quality (CRF 51); a garbled output (colours swapped, rows misaligned, a blank
picture) is far below, and such an encoder is not used."""


QSV_MAX_GOP = 65535
"""Quick Sync keeps the GOP length in 16 bits: more would wrap (1,000,000 → 16,960)."""


def _rate_options(name: str, crf: int, kbit: int | None) -> dict[str, str]:
    """Constant quality, or on a slow link a bitrate cap with a VBV of ~1/10 s: no frame
    much larger than the link carries in that time (`kbit`: kbit/s, None: no cap).

    libx264 keeps its CRF under the cap. The GPU encoders cannot: NVENC's constant
    quality honours the peak rate but drops the buffer, so one frame could be a second
    of the link; they get a VBR aimed at half the cap, peaking at it, with the buffer.
    """
    buffer = max(10, (kbit or 0) // 10)  # kbit
    if name == SOFTWARE_ENCODER:
        params = f"keyint={GOP}:scenecut=0"  # IDRs only when restarted
        if kbit is not None:
            params += f":vbv-maxrate={kbit}:vbv-bufsize={buffer}"
        return {"crf": str(crf), "x264-params": params}
    if kbit is None:
        return {
            "h264_nvenc": {"rc": "vbr", "cq": str(crf), "b": "0"},
            "h264_amf": {"rc": "cqp", "qp_i": str(crf), "qp_p": str(crf)},
            "h264_qsv": {"global_quality": str(crf)},  # ICQ
        }[name]
    capped = {"b": f"{max(50, kbit // 2)}k", "maxrate": f"{kbit}k", "bufsize": f"{buffer}k"}
    return {
        "h264_nvenc": {"rc": "vbr", **capped},
        "h264_amf": {"rc": "vbr_latency", **capped},
        "h264_qsv": capped,  # b below maxrate: VBR
    }[name]


def encoders_in_this_build() -> list[str]:
    """The `H264_ENCODERS` this PyAV's FFmpeg carries (none without PyAV): what `auto`
    chooses from. A frozen build that lost FFmpeg's libraries would stream tiles only."""
    try:
        import av
    except ImportError:
        return []
    return [name for name in H264_ENCODERS if name in av.codecs_available]


def encoder_settings(name: str, crf: int, kbit: int | None) -> tuple[str, dict[str, str]]:
    """What `name` is fed (a pixel format) and its options: fastest preset, no
    B-frames, no lookahead, one access unit out per picture in.

    Raises:
        ValueError: `name` is not one of `H264_ENCODERS`.
    """
    if name not in H264_ENCODERS:
        raise ValueError(f"{name!r} is not one of {', '.join(H264_ENCODERS)}")
    low_latency = {
        SOFTWARE_ENCODER: ("yuv420p", {"preset": "ultrafast", "tune": "zerolatency"}),
        # NVENC: the fastest preset, ultra-low-latency tuning, no reordering delay
        "h264_nvenc": (
            "bgra",
            {"preset": "p1", "tune": "ull", "zerolatency": "1", "delay": "0", "bf": "0"},
        ),
        # AMF: the ultra-low-latency usage has no B-frames of its own; FFmpeg's wrapper
        # holds one frame back unless told the stream is low-delay
        "h264_amf": (
            "bgra",
            {"usage": "ultralowlatency", "quality": "speed", "flags": "+low_delay"},
        ),
        # one frame in flight: Quick Sync's default of 4 would hold pictures back
        "h264_qsv": ("nv12", {"preset": "veryfast", "async_depth": "1", "bf": "0"}),
    }
    pix_fmt, options = low_latency[name]
    options = {**options, **_rate_options(name, crf, kbit)}
    if name != SOFTWARE_ENCODER:
        options["g"] = str(QSV_MAX_GOP if name == "h264_qsv" else GOP)
    return pix_fmt, options


class VideoEncoder:
    """H.264 through PyAV (`codec`: one of `H264_ENCODERS`): one access unit per frame.

    One encoder lives as long as the stream: the console's decoder keeps the
    same reference picture while tiles are painted over its output, so a new
    run of video frames goes on with P-frames (a few KiB) instead of an IDR
    (the largest frame of all, and the one that makes a slow link's latency).
    `restart()` makes the next frame an IDR: a new viewer, a quality switch.
    """

    def __init__(
        self, width: int, height: int, *, crf: int = VIDEO_CRF, codec: str = SOFTWARE_ENCODER
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError("H.264 4:2:0 needs an even width and height")
        encoder_settings(codec, crf, None)  # a known encoder, or ValueError now
        self.width, self.height, self.crf, self.codec = width, height, crf, codec
        self.max_rate: int | None = None  # bytes/s; taken at the next restart
        self._context: Any = None
        self._pts = 0
        self._frame: Any = None  # one BGRA picture, refilled per frame
        self._pixels: npt.NDArray[np.uint8] | None = None  # a view of its plane

    def restart(self) -> None:
        self._context = None

    def picture(self) -> npt.NDArray[np.uint8]:
        """The encoder's one BGRA picture (height×width×4, a view of its plane).

        `VideoFrame.from_ndarray` would allocate a new 8 MB picture per frame (~5 ms
        at 1080p here, most of it fresh pages). The encoders copy it (to YUV, or to
        the GPU) before `encode` returns, so refilling it afterwards is safe.

        Raises:
            ImportError: PyAV is not installed.
        """
        if self._pixels is None:
            import av

            self._frame = av.VideoFrame(self.width, self.height, "bgra")
            plane = self._frame.planes[0]
            rows = np.frombuffer(plane, np.uint8).reshape(self.height, plane.line_size // 4, 4)
            self._pixels = rows[:, : self.width]
        return self._pixels

    def open(self) -> None:
        """Open the encoder now rather than at the first picture.

        Raises:
            ImportError: PyAV is not installed.
            av.FFmpegError: the encoder cannot be opened here (no such GPU, no driver).
        """
        if self._context is None:
            self._context = self._open()

    def _open(self) -> Any:
        import av  # lazily: only a stream that goes video pays for loading FFmpeg

        kbit = None if self.max_rate is None else max(100, self.max_rate * 8 // 1000)
        pix_fmt, options = encoder_settings(self.codec, self.crf, kbit)
        context: Any = av.CodecContext.create(self.codec, "w")
        context.width, context.height = self.width, self.height
        context.pix_fmt = pix_fmt
        # rate control counts in frames of this rate (a 1/1000 time base would make
        # a VBV cap a thousandth of the bitrate per frame)
        context.time_base = Fraction(1, VIDEO_FPS)
        context.framerate = Fraction(VIDEO_FPS, 1)
        context.options = options
        context.open()
        self._pts = 0
        return context

    def encode(self, bgra: npt.NDArray[np.uint8], *, fallback: bool = True) -> bytes:
        """One Annex B access unit for this picture (empty: the encoder held it back).

        A hardware encoder that fails is dropped for libx264 for the rest of the
        stream (logged once; `fallback=False`: raise instead); the next access unit
        is then libx264's IDR.

        Raises:
            ImportError: PyAV is not installed.
            av.FFmpegError: libx264 failed, or any encoder without `fallback`.
        """
        import av

        pixels = self.picture()
        if bgra.ctypes.data != pixels.ctypes.data:  # not already in the picture itself
            np.copyto(pixels, bgra)
        try:
            return self._encode_picture()
        except av.FFmpegError as exc:
            if self.codec == SOFTWARE_ENCODER or not fallback:
                raise
            log.warning("H.264 encoder %s failed (%s): libx264 from now on", self.codec, exc)
            self.codec, self._context = SOFTWARE_ENCODER, None
            return self._encode_picture()

    def _encode_picture(self) -> bytes:
        if self._context is None:
            self._context = self._open()
        self._frame.pts = self._pts
        self._pts += 1
        return b"".join(bytes(packet) for packet in self._context.encode(self._frame))


def probe_picture(width: int, height: int, step: int) -> npt.NDArray[np.uint8]:
    """A test picture: colour ramps under sharp black bars, moved 8 px a `step`."""
    x = (np.arange(width, dtype=np.int64) + 8 * step) % width
    y = np.arange(height, dtype=np.int64)[:, None]
    picture = np.empty((height, width, 4), np.uint8)
    picture[:, :, 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    picture[:, :, 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    picture[:, :, 2] = ((x + y) % 256).astype(np.uint8)
    picture[:, :, 3] = 255
    picture[:, (x // 16) % 4 == 0, :3] = 0
    return picture


def psnr(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """PSNR in dB of the RGB channels of two BGRA/BGRX images (inf when equal)."""
    diff = a[:, :, :3].astype(np.int16) - b[:, :, :3]
    mse = float(np.mean(np.square(diff, dtype=np.int32)))
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


def probe(codec: str, width: int, height: int, *, min_psnr: float = PROBE_MIN_PSNR) -> str | None:
    """None when `codec` works here at this size, else why not (one line).

    Works: it opens, and codes each of `PROBE_FRAMES` test pictures into an access
    unit at once that the console's decoder (FFmpeg's, one thread, one packet per
    access unit) turns into that picture within `min_psnr`.

    Raises:
        ImportError: PyAV is not installed.
    """
    import av

    encoder = VideoEncoder(width, height, codec=codec)
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    try:
        encoder.open()  # an absent GPU fails here, before any picture is made
        for step in range(PROBE_FRAMES):
            picture = probe_picture(width, height, step)
            data = encoder.encode(picture, fallback=False)
            if not data:
                return "it held a picture back (latency)"
            decoded = decoder.decode(av.Packet(data))
            if not decoded:
                return "its access unit decoded to no picture"
            shown = np.asarray(decoded[-1].reformat(format="bgra").to_ndarray(), np.uint8)
            if shown.shape != picture.shape:
                return f"its picture decoded at {shown.shape[1]}x{shown.shape[0]}"
            quality = psnr(picture, shown)
            if quality < min_psnr:
                return f"its picture decoded at {quality:.1f} dB"
    except av.FFmpegError as exc:
        return f"{type(exc).__name__}: {exc.strerror}"
    except Exception as exc:  # noqa: BLE001 - a driver's fault of any kind: not this encoder
        return f"{type(exc).__name__}: {exc}"
    return None


PROBE_AGAIN_AFTER = 300.0
"""Seconds a failed probe is believed: a GPU encoder can be busy for a while (NVENC's
session limit while something records the screen, a driver reset), so a later stream
tries it again. One that works is believed for the agent's lifetime."""

_probed: dict[tuple[str, int, int], tuple[str | None, float]] = {}  # → (why not, when)
_probing = threading.Lock()  # two streams starting at once probe a GPU once, not twice


def _why_not(codec: str, width: int, height: int, choice: str) -> str | None:
    key = (codec, width, height)
    with _probing:
        known = _probed.get(key)
        if known is not None and (
            known[0] is None or time.monotonic() - known[1] < PROBE_AGAIN_AFTER
        ):
            return known[0]
        why = probe(codec, width, height)
        _probed[key] = (why, time.monotonic())
    if why is None:
        log.info("H.264 on %s at %dx%d", codec, width, height)
    elif choice != "auto":
        log.warning("H.264 encoder %s, as configured, does not work: %s", codec, why)
    else:
        log.info("H.264 encoder %s not used: %s", codec, why)
    return why


def video_encoder_for(width: int, height: int, choice: str = "auto") -> VideoEncoder | None:
    """The stream's H.264 encoder: the first of `H264_ENCODERS` that works here (`auto`),
    or the admin's `choice` (libx264 when it does not work); None for `off`, a size
    H.264 4:2:0 cannot code, or no PyAV. Probing costs a few ms per absent encoder
    and ~0.3 s for a present one (1080p), once per agent process (a failure is tried
    again after `PROBE_AGAIN_AFTER`): call it off the event loop.

    Raises:
        ValueError: `choice` is not one of `ENCODER_CHOICES`.
    """
    if choice not in ENCODER_CHOICES:
        raise ValueError(f"video encoder {choice!r} is not one of {', '.join(ENCODER_CHOICES)}")
    if choice == "off" or width % 2 or height % 2:
        return None
    try:
        import av
    except ImportError:
        return None
    wanted = H264_ENCODERS if choice == "auto" else (choice, SOFTWARE_ENCODER)
    for codec in wanted:
        if codec not in av.codecs_available:
            if codec == choice:
                log.warning("H.264 encoder %s, as configured, is not in this FFmpeg", codec)
            continue
        if codec == SOFTWARE_ENCODER:  # the baseline every test and benchmark runs
            return VideoEncoder(width, height, codec=codec)
        if _why_not(codec, width, height, choice) is None:
            return VideoEncoder(width, height, codec=codec)
    return None
