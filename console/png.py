"""Write the framebuffer as a PNG without a GUI toolkit (screenshots from scripts)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from console.framebuffer import Pixels


def encode_png(bgra: Pixels) -> bytes:
    """PNG bytes (8-bit RGB) of a (height, width, 4) BGRA array.

    Raises:
        ValueError: the array is not (h, w, 4) uint8.
    """
    if bgra.ndim != 3 or bgra.shape[2] != 4 or bgra.dtype != np.uint8:
        raise ValueError("expected a (height, width, 4) uint8 BGRA array")
    height, width = bgra.shape[:2]
    rgb = bgra[:, :, 2::-1]  # B,G,R -> R,G,B
    rows = np.empty((height, width * 3 + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none" on every scanline
    rows[:, 1:] = rgb.reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def save_png(bgra: Pixels, path: Path) -> None:
    """Write `bgra` to `path` as PNG. Raises OSError, ValueError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(bgra))
