"""A lean RFC 6455 WebSocket client for `bench.load`: binary messages, batched writes.

Why not the `websockets` client the agent and console use: profiling 500 sessions
(py-spy, docs/reliability.md § Load) showed the load clients spending about half their
CPU in that library's per-message machinery (an `await` and a socket write per message,
a lock, an `os.urandom` call per mask, a generator-based parser), so two client
processes could offer only 59 % of the asked-for load. This client is an
`asyncio.Protocol`: `send()` frames any number of messages and writes them with one
`transport.write`, and received frames are parsed in place and handed to a callback.
It speaks real WebSocket to the real relay (handshake with the accept key checked,
masked client frames, close handshake, pings answered); it only leaves out what the
zgoda wire contract does not use (text messages, fragmentation, extensions).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import cast
from urllib.parse import urlsplit

from websockets.speedups import apply_mask  # the C masking routine of `websockets`

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """The server broke the WebSocket protocol, refused the upgrade, or the link failed."""


def accept_key(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value a server must answer to `key` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # SHA-1: fixed by RFC 6455


def _mask_key() -> bytes:
    # Masking only stops a browser script from steering the bytes an intermediary
    # sees; on loopback nothing intermediates, so a fast PRNG (as aiohttp's client
    # uses) does as well as os.urandom and costs no system call per message.
    return random.getrandbits(32).to_bytes(4, "big")


def client_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One final, masked client frame carrying `payload`."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = _mask_key()
    return header + mask + apply_mask(payload, mask)


class WebSocketClient(asyncio.Protocol):
    """One client WebSocket. Open with `connect()`; `on_message(bytes)` gets each
    binary message in order; `closed` resolves (to the close code, or 1006 when the
    TCP link ended without a close frame) once the socket is gone."""

    def __init__(
        self,
        on_message: Callable[[bytes], None],
        request: bytes,
        key: bytes,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.error: str | None = None
        self._request, self._key = request, key
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._close_sent = False
        self._close_code = 1006

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the asyncio.Transport methods without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            if not self._upgraded:
                self._read_handshake()
            if self._upgraded:
                self._read_frames()
        except WebSocketError as exc:
            self._abort(str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.opened.done():
            self.opened.set_exception(WebSocketError(f"connection lost during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self._close_code)

    # -- the caller's side

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return self._upgraded and self._transport is not None and not self._close_sent

    def send(self, messages: Iterable[bytes]) -> None:
        """Send binary messages in order with one socket write; a no-op once closing."""
        if self.open:
            assert self._transport is not None
            self._transport.write(b"".join([client_frame(m) for m in messages]))

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (the client's own backlog)."""
        return self._transport.get_write_buffer_size() if self._transport else 0

    async def close(self, code: int = 1000, timeout: float = 5.0) -> int:
        """Close handshake: send a close frame, wait for the server's and for the TCP
        end (at most `timeout` s, then drop the link). Returns the close code."""
        self._send_close(code)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self.closed)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()
            return await self.closed

    # -- internals

    def _read_handshake(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HANDSHAKE_BYTES:
                raise WebSocketError("handshake response too long")
            return
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise WebSocketError(f"upgrade refused: {head[0]}")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != accept_key(self._key):
            raise WebSocketError("wrong Sec-WebSocket-Accept")
        if headers.get("sec-websocket-extensions"):
            raise WebSocketError("an extension was negotiated that was not offered")
        self._upgraded = True
        self.opened.set_result(None)

    def _read_frames(self) -> None:
        buffer = self._buffer
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if second & 0x80:
                raise WebSocketError("a server frame was masked")
            if first & 0x70:
                raise WebSocketError("reserved bits set (no extension was negotiated)")
            if length > MAX_MESSAGE_BYTES:
                raise WebSocketError(f"a {length}-byte frame is over the limit")
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            pos = start + length
            opcode = first & 0x0F
            if not first & 0x80 or opcode == OP_CONTINUATION:
                raise WebSocketError("a fragmented message (the relay sends whole messages)")
            if opcode == OP_BINARY:
                self.on_message(payload)
            elif opcode == OP_CLOSE:
                self._close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                self._send_close(self._close_code if payload else 1000)
            elif opcode == OP_PING:
                if self.open:
                    assert self._transport is not None
                    self._transport.write(client_frame(payload, OP_PONG))
            elif opcode != OP_PONG:
                raise WebSocketError(f"unexpected opcode {opcode} (zgoda sends binary only)")
            if self._transport is None:
                break  # on_message closed us
        del buffer[:pos]

    def _send_close(self, code: int) -> None:
        if self._close_sent or self._transport is None:
            return
        if self._upgraded:
            self._transport.write(client_frame(code.to_bytes(2, "big"), OP_CLOSE))
        else:
            self._transport.close()
        self._close_sent = True

    def _abort(self, reason: str) -> None:
        self.error = reason
        if not self.opened.done():
            self.opened.set_exception(WebSocketError(reason))
        if self._transport is not None:
            self._transport.abort()


async def connect(
    url: str,
    on_message: Callable[[bytes], None],
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> WebSocketClient:
    """Open a `ws://` URL and finish the upgrade.

    Raises:
        WebSocketError: the server refused the upgrade or answered wrongly.
        OSError: TCP connection failed.
        TimeoutError: no upgrade within `timeout` s.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise WebSocketError(f"only ws:// URLs are supported: {url!r}")
    port = parts.port or 80
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, client = await loop.create_connection(
            lambda: WebSocketClient(on_message, request, key), parts.hostname, port
        )
        try:
            await client.opened
        except BaseException:
            if client._transport is not None:
                client._transport.abort()
            raise
    return client
