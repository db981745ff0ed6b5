"""A small RFB 3.8 client for the streaming benchmark (not a viewer).

It speaks just enough of RFB (RFC 6143) to read x0vncserver and x11vnc the way a
viewer does: security type None, 32-bit BGRX pixels (the byte layout mss
captures, so the framebuffer compares with a screenshot directly), one
incremental update request in flight, and the encodings Raw, CopyRect and Tight
(fill, JPEG, basic with the copy, palette and gradient filters, LastRect), and
RichCursor so that the servers leave the pointer out of the picture (as zgoda
does; otherwise a framebuffer could never equal a screenshot). It
counts updates and bytes and keeps a BGRX framebuffer so the benchmark can
measure picture quality and when the picture is exact.

    with RfbClient.connect("127.0.0.1", 5901, jpeg_quality=6) as client:
        client.pump(until=time.monotonic() + 5)
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import simplejpeg

ENC_RAW = 0
ENC_COPYRECT = 1
ENC_TIGHT = 7
ENC_LAST_RECT = -224
ENC_RICH_CURSOR = -239  # the cursor sent apart: servers then leave it out of the pixels
ENC_COMPRESS_LEVEL_1 = -255  # -256 + level
ENC_QUALITY_BASE = -32  # -32 + level (0..9): lets the server use JPEG in Tight


_DEBUG = False


class RfbError(Exception):
    """The server said something this client does not understand, or closed."""


class RfbClient:
    """One RFB connection; `pump()` reads updates and keeps requesting new ones."""

    def __init__(self, sock: socket.socket, jpeg_quality: int | None) -> None:
        self.sock = sock
        self.jpeg_quality = jpeg_quality
        self.width = self.height = 0
        self.pixels: npt.NDArray[np.uint8] = np.zeros((1, 1, 4), np.uint8)
        self.updates = 0  # FramebufferUpdate messages fully applied
        self.bytes = 0  # bytes read from the socket
        self.last_update_ns = 0
        self.on_update: Callable[[], None] | None = None
        self._zlib = [zlib.decompressobj() for _ in range(4)]
        self._buffer = bytearray()

    @classmethod
    def connect(
        cls, host: str, port: int, *, jpeg_quality: int | None, timeout: float = 10.0
    ) -> RfbClient:
        """Connect, handshake and ask for the first full update.

        Raises:
            RfbError: the server refused or spoke something else.
            OSError: the connection failed.
        """
        sock = socket.create_connection((host, port), timeout=timeout)
        client = cls(sock, jpeg_quality)
        try:
            client._handshake()
        except BaseException:
            sock.close()
            raise
        return client

    def __enter__(self) -> RfbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------ socket

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise RfbError("the server closed the connection")
            self.bytes += len(chunk)
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _handshake(self) -> None:
        version = self._read(12)
        if not version.startswith(b"RFB 003."):
            raise RfbError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        count = self._read(1)[0]
        if count == 0:
            (length,) = struct.unpack(">I", self._read(4))
            raise RfbError(self._read(length).decode(errors="replace"))
        types = self._read(count)
        if 1 not in types:
            raise RfbError(f"the server wants authentication (types {list(types)})")
        self.sock.sendall(b"\x01")
        (result,) = struct.unpack(">I", self._read(4))
        if result != 0:
            raise RfbError("security handshake failed")
        self.sock.sendall(b"\x01")  # shared
        self.width, self.height = struct.unpack(">HH", self._read(4))
        self._read(16)  # the server's pixel format: we set our own
        (name_length,) = struct.unpack(">I", self._read(4))
        self._read(name_length)
        self.pixels = np.zeros((self.height, self.width, 4), np.uint8)
        # 32 bpp, depth 24, little endian, true colour, 255 each, shifts R16 G8 B0:
        # bytes B, G, R, X in memory, as mss captures.
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        self.sock.sendall(b"\x00\x00\x00\x00" + pixel_format)
        encodings = [ENC_TIGHT, ENC_COPYRECT, ENC_RAW, ENC_LAST_RECT, ENC_RICH_CURSOR]
        encodings.append(ENC_COMPRESS_LEVEL_1)
        if self.jpeg_quality is not None:
            encodings.append(ENC_QUALITY_BASE + self.jpeg_quality)
        self.sock.sendall(
            struct.pack(">BxH", 2, len(encodings)) + struct.pack(f">{len(encodings)}i", *encodings)
        )
        self.request(incremental=False)

    def request(self, *, incremental: bool) -> None:
        self.sock.sendall(
            struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height)
        )

    def pointer_event(self, buttons: int, x: int, y: int) -> None:
        """Send a PointerEvent: `buttons` is the RFB mask (bit 0 left, 1 middle, 2 right)."""
        self.sock.sendall(struct.pack(">BBHH", 5, buttons, x, y))

    def key_event(self, down: bool, keysym: int) -> None:
        """Send a KeyEvent for an X keysym (RFC 6143 §7.5.4)."""
        self.sock.sendall(struct.pack(">BBxxI", 4, int(down), keysym))

    # ------------------------------------------------------------ updates

    def pump(self, until: float) -> None:
        """Read and apply server messages until the monotonic time `until` (bounded).

        Raises:
            RfbError: a message this client cannot decode.
        """
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            if not self._buffer:
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    return
                if not chunk:
                    raise RfbError("the server closed the connection")
                self.bytes += len(chunk)
                self._buffer += chunk
            self.sock.settimeout(10.0)  # a message once started arrives in full
            self._message()

    def _message(self) -> None:
        kind = self._read(1)[0]
        if kind == 0:
            self._update()
        elif kind == 1:  # colour map entries: not used with true colour
            _, _, count = struct.unpack(">xHH", self._read(5))
            self._read(6 * count)
        elif kind == 2:  # bell
            pass
        elif kind == 3:
            (length,) = struct.unpack(">3xI", self._read(7))
            self._read(length)
        else:
            raise RfbError(f"unknown server message {kind}")

    def _update(self) -> None:
        (count,) = struct.unpack(">xH", self._read(3))
        # ask for the next one at once, as viewers do: one request in flight
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
            if _DEBUG:
                print("rect", x, y, w, h, encoding)
            if encoding == ENC_LAST_RECT:
                break
            if encoding == ENC_RICH_CURSOR:  # shape and mask: read past them
                self._read(w * h * 4 + ((w + 7) // 8) * h)
            elif encoding == ENC_RAW:
                raw = self._read(w * h * 4)
                self.pixels[y : y + h, x : x + w] = np.frombuffer(raw, np.uint8).reshape(h, w, 4)
            elif encoding == ENC_COPYRECT:
                sx, sy = struct.unpack(">HH", self._read(4))
                self.pixels[y : y + h, x : x + w] = self.pixels[sy : sy + h, sx : sx + w].copy()
            elif encoding == ENC_TIGHT:
                self._tight(x, y, w, h)
            else:
                raise RfbError(f"unexpected encoding {encoding}")
        self.updates += 1
        self.last_update_ns = time.time_ns()
        self.request(incremental=True)
        if self.on_update is not None:
            self.on_update()

    def _compact_length(self) -> int:
        b = self._read(1)[0]
        length = b & 0x7F
        if b & 0x80:
            b = self._read(1)[0]
            length |= (b & 0x7F) << 7
            if b & 0x80:
                length |= self._read(1)[0] << 14
        return length

    def _tight(self, x: int, y: int, w: int, h: int) -> None:
        control = self._read(1)[0]
        for stream in range(4):
            if control & (1 << stream):
                self._zlib[stream] = zlib.decompressobj()
        kind = control >> 4
        target = self.pixels[y : y + h, x : x + w]
        if kind == 0x08:  # fill
            r, g, b = self._read(3)
            target[:] = (b, g, r, 0)
            return
        if kind == 0x09:  # JPEG
            data = self._read(self._compact_length())
            target[:] = simplejpeg.decode_jpeg(data, colorspace="BGRA")
            target[:, :, 3] = 0
            return
        if kind & 0x08:
            raise RfbError(f"bad Tight compression control {control:#x}")
        stream = kind & 0x03
        filter_id = self._read(1)[0] if kind & 0x04 else 0
        palette: npt.NDArray[np.uint8] | None = None
        if filter_id == 1:
            colours = self._read(1)[0] + 1
            palette = np.frombuffer(self._read(3 * colours), np.uint8).reshape(colours, 3)
            size = ((w + 7) // 8) * h if colours == 2 else w * h
        elif filter_id in (0, 2):
            size = w * h * 3
        else:
            raise RfbError(f"unknown Tight filter {filter_id}")
        if size < 12:
            data = self._read(size)
        else:
            data = self._zlib[stream].decompress(self._read(self._compact_length()))
            if len(data) != size:
                raise RfbError(f"Tight rectangle inflated to {len(data)} bytes, not {size}")
        if palette is not None:
            if len(palette) == 2:
                bits = np.unpackbits(np.frombuffer(data, np.uint8).reshape(h, -1), axis=1)
                index = bits[:, :w]
            else:
                index = np.frombuffer(data, np.uint8).reshape(h, w)
            rgb = palette[index]
        else:
            rgb = np.frombuffer(data, np.uint8).reshape(h, w, 3)
            if filter_id == 2:
                rgb = _ungradient(rgb)
        target[:, :, 0] = rgb[:, :, 2]
        target[:, :, 1] = rgb[:, :, 1]
        target[:, :, 2] = rgb[:, :, 0]
        target[:, :, 3] = 0


def _ungradient(diff: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Undo Tight's gradient filter (slow: per pixel; servers rarely choose it)."""
    h, w, _ = diff.shape
    out = np.zeros((h, w, 3), np.int32)
    d = diff.astype(np.int32)
    for row in range(h):
        above = out[row - 1] if row else np.zeros((w, 3), np.int32)
        left = np.zeros(3, np.int32)
        upper_left = np.zeros(3, np.int32)
        for col in range(w):
            predicted = np.clip(left + above[col] - upper_left, 0, 255)
            left = (predicted + d[row, col]) & 0xFF
            out[row, col] = left
            upper_left = above[col]
    return out.astype(np.uint8)
