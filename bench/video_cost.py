"""What a full-screen 1080p frame of motion costs the agent, stage by stage.

    .venv/bin/python -m bench.video_cost [--frames 60] [--write FILE]

No display: two 1920×1080 pictures panned 16 px a frame, as the stream benchmark's
`fullscreen` workload pans its photo: `photo` (ImageMagick's plasma, seed 7, the
same picture) and `text` (a page of black-on-white text, the hardest case for a
smaller video). Per picture and stage, CPU per frame of this whole process (so
the helper threads of swscale and libx264 count) and wall time:

- copy: the grab into the encoder's picture (`np.copyto`, 8 MB, warm buffers);
- BGRA → YUV 4:2:0: swscale, as `agent.h264.VideoEncoder` has PyAV do it for libx264;
- libx264: the agent's settings (ultrafast, zerolatency, CRF 26, one persistent
  encoder, P-frames) on the converted frames;
- the peer, in the same run: the whole frame as one JPEG (libjpeg-turbo through
  simplejpeg, quality 80, 4:2:0), about what a Tight+JPEG VNC server encodes for a
  full-screen update (its tiles add their own overhead);
- the road not taken: a video layer at half size (960×540: downscale while
  converting, libx264 on a quarter of the pixels, the console scaling it back up),
  with the PSNR each gives against the picture (decoded by libavcodec, so the
  comparison is frame for frame).

Bounded: `--frames` per measurement; the run takes about half a minute. Not a
test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg

from agent.h264 import SOFTWARE_ENCODER, VIDEO_CRF, VIDEO_FPS, encoder_settings
from bench.stream import psnr

WIDTH, HEIGHT = 1920, 1080
PAN = 16
JPEG_QUALITY = 80

Pixels = npt.NDArray[np.uint8]


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Cost:
    cpu_ms: float
    wall_ms: float


def measure(frames: int, step: Callable[[int], object]) -> Cost:
    """CPU (whole process) and wall time per call of `step`, after one warm-up call."""
    step(0)
    cpu, wall = process_cpu(), time.perf_counter()
    for i in range(1, frames + 1):
        step(i)
    return Cost((process_cpu() - cpu) / frames * 1000, (time.perf_counter() - wall) / frames * 1000)


def make_pictures(tmp: Path, frames: int) -> dict[str, Pixels]:
    """BGRA strips wide enough to pan `frames` steps: the plasma photo and a text page."""
    width = WIDTH + PAN * (frames + 2)
    photo, text = tmp / "photo.png", tmp / "text.png"
    subprocess.run(
        ["convert", "-seed", "7", "-size", f"{width}x{HEIGHT}", "plasma:fractal", str(photo)],
        check=True,
    )
    line = "The quick brown fox jumps over the lazy dog; Zazolc gesla jazn 0123456789 HD-1001 "
    page = "\n".join(f"{i:3d}  {line * 3}" for i in range(60))
    subprocess.run(
        [
            *("convert", "-size", f"{width}x{HEIGHT}", "xc:white", "-fill", "black"),
            *("-pointsize", "15", "-annotate", "+10+20", page, str(text)),
        ],
        check=True,
    )
    from PIL import Image

    pictures = {}
    for name, path in (("photo", photo), ("text", text)):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        bgra = np.zeros((*rgb.shape[:2], 4), np.uint8)
        bgra[..., 0], bgra[..., 1], bgra[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
        pictures[name] = bgra
    return pictures


class Video:
    """One persistent libx264 encoder as the agent runs it, at `size`, and a decoder."""

    def __init__(self, size: tuple[int, int]) -> None:
        import av

        self.av: Any = av
        self.size = size
        self.encoder = av.CodecContext.create("libx264", "w")  # SOFTWARE_ENCODER
        self.encoder.width, self.encoder.height = size
        pix_fmt, options = encoder_settings(SOFTWARE_ENCODER, VIDEO_CRF, None)
        self.encoder.pix_fmt = pix_fmt
        self.encoder.time_base = Fraction(1, VIDEO_FPS)
        self.encoder.framerate = Fraction(VIDEO_FPS, 1)
        self.encoder.options = options
        self.decoder: Any = av.CodecContext.create("h264", "r")
        self.picture: Any = av.VideoFrame(WIDTH, HEIGHT, "bgra")
        plane: Any = self.picture.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(HEIGHT, plane.line_size // 4, 4)
        self.pixels: Pixels = rows[:, :WIDTH]
        self.bytes = 0

    def convert(self) -> Any:
        width, height = self.size
        if (width, height) == (WIDTH, HEIGHT):
            return self.picture.reformat(format="yuv420p")
        return self.picture.reformat(width=width, height=height, format="yuv420p")

    def encode(self, yuv: Any, pts: int) -> bytes:
        yuv.pts = pts
        data = b"".join(bytes(p) for p in self.encoder.encode(yuv))
        self.bytes += len(data)
        return data

    def decode(self, data: bytes) -> list[Pixels]:
        """What the console shows for `data`, at full size (scaled up if smaller)."""
        shown = []
        for packet in self.decoder.parse(data):
            for frame in self.decoder.decode(packet):
                big = frame.reformat(width=WIDTH, height=HEIGHT, format="bgra")
                shown.append(big.to_ndarray()[:, :WIDTH])
        return shown


def cost_of_video(
    frames: int, name: str, strip: Pixels, size: tuple[int, int]
) -> dict[str, object]:
    """The agent's stages for `strip` panned, coded as video at `size`."""
    video = Video(size)
    converted: list[Any] = []
    encoded: list[bytes] = []

    def view(i: int) -> Pixels:
        return strip[:, (i * PAN) : (i * PAN) + WIDTH]

    def copy(i: int) -> None:
        np.copyto(video.pixels, view(i))

    def convert(i: int) -> None:
        copy(i)
        converted.append(video.convert())

    def encode(i: int) -> None:
        encoded.append(video.encode(converted[i], i))

    copying = measure(frames, copy)
    conversion = measure(frames, convert)
    conversion.cpu_ms -= copying.cpu_ms  # the copy inside each step is counted apart
    conversion.wall_ms -= copying.wall_ms
    x264 = measure(frames, encode)
    # quality: every frame decoded (the parser holds the last access unit until the
    # next start code: flushed at the end), against its own source
    shown = [p for data in encoded for p in video.decode(data)]
    shown += video.decode(b"")
    scores = [psnr(view(i), p) for i, p in enumerate(shown)]
    return {
        "picture": name,
        "video": f"H.264 {size[0]}×{size[1]}",
        "copy": copying,
        "convert": conversion,
        "x264": x264,
        "kb": video.bytes / (frames + 1) / 1024,
        "psnr": float(np.mean(scores)),
    }


def cost_of_jpeg(frames: int, name: str, strip: Pixels) -> dict[str, object]:
    """The peer: each whole frame as one JPEG."""
    sizes: list[int] = []

    def jpeg(i: int) -> bytes:
        pixels = np.ascontiguousarray(strip[:, (i * PAN) : (i * PAN) + WIDTH])
        data: bytes = simplejpeg.encode_jpeg(
            pixels, quality=JPEG_QUALITY, colorspace="BGRA", colorsubsampling="420"
        )
        return data

    encoding = measure(frames, lambda i: sizes.append(len(jpeg(i))))
    decoded = simplejpeg.decode_jpeg(jpeg(0), colorspace="BGRA")
    return {
        "picture": name,
        "video": f"peer: one JPEG q{JPEG_QUALITY}",
        "jpeg": encoding,
        "kb": sum(sizes) / len(sizes) / 1024,
        "psnr": psnr(strip[:, :WIDTH], decoded),
    }


def run(frames: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="zgoda-video-cost-") as tmp:
        pictures = make_pictures(Path(tmp), frames)
    rows: list[dict[str, object]] = []
    for name, strip in pictures.items():
        rows.append(cost_of_jpeg(frames, name, strip))
        for size in ((WIDTH, HEIGHT), (WIDTH // 2, HEIGHT // 2)):
            rows.append(cost_of_video(frames, name, strip, size))
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| picture | coded as | copy ms | BGRA→YUV ms | libx264 ms | JPEG ms | total CPU ms "
        "| ÷ JPEG | % of a core at 30 fps | KB/frame | PSNR dB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    peers = {r["picture"]: r["jpeg"] for r in rows if "jpeg" in r}
    for r in rows:
        stages = [r.get(k) for k in ("copy", "convert", "x264", "jpeg")]
        total = sum(c.cpu_ms for c in stages if isinstance(c, Cost))
        peer = peers[r["picture"]]
        assert isinstance(peer, Cost)
        cells = [
            "" if not isinstance(c, Cost) else f"{c.cpu_ms:.2f} ({c.wall_ms:.2f})" for c in stages
        ]
        lines.append(
            f"| {r['picture']} | {r['video']} | "
            + " | ".join(cells)
            + f" | {total:.2f} | {total / peer.cpu_ms:.2f} | {total * 30 / 10:.0f} "
            f"| {r['kb']:.1f} | {r['psnr']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    frames = max(5, min(args.frames, 600))
    out = table(run(frames))
    header = (
        f"`.venv/bin/python -m bench.video_cost --frames {frames}`, CPU ms per frame of the "
        "whole process (wall ms in brackets):\n\n"
    )
    print(header + out)
    if args.write is not None:
        args.write.write_text(header + out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
