"""bench.load: its WebSocket client speaks real RFC 6455, and a tiny run through a real
relay and the bare router delivers everything (the full 500-session run is a benchmark,
see docs/reliability.md § Load)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bench import load
from bench.load_ws import WebSocketClient, WebSocketError, accept_key, client_frame, connect


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_client_frames_parse_as_masked_rfc6455_frames(size: int) -> None:
    """The `websockets` library's own parser reads our frames back, mask and all."""
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    reader = StreamReader()
    reader.feed_data(client_frame(data))
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        pytest.fail("the parser wanted more bytes than one frame")
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == data


def test_accept_key_is_the_rfc_example() -> None:
    """The worked example of RFC 6455 §1.3."""
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """An aiohttp server: /echo sends each binary message back, pings once, and closes
    with 4001 on b"bye"; /private refuses the upgrade with 401."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.ping(b"p")
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                if msg.data == b"bye":
                    await ws.close(code=4001)
                    break
                await ws.send_bytes(msg.data)
        return ws

    async def private(request: web.Request) -> web.Response:
        raise web.HTTPUnauthorized()

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/private", private)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_client_round_trip_and_close_codes(echo_url: str) -> None:
    received: list[bytes] = []
    got = asyncio.Event()

    def on_message(data: bytes) -> None:
        received.append(data)
        if len(received) == 3:
            got.set()

    ws = await connect(f"{echo_url}/echo", on_message, timeout=10)
    ws.send([b"a", b"b" * 200, b"c" * 70_000])  # three messages in one write
    async with asyncio.timeout(10):
        await got.wait()
    assert received == [b"a", b"b" * 200, b"c" * 70_000]
    assert await ws.close() == 1000
    assert not ws.open

    ws = await connect(f"{echo_url}/echo", lambda data: None, timeout=10)
    ws.send([b"bye"])  # the server closes first: its code is ours
    async with asyncio.timeout(10):
        assert await ws.closed == 4001
    assert ws.error is None


async def test_refused_upgrade_is_an_error(echo_url: str) -> None:
    with pytest.raises(WebSocketError, match="401"):
        await connect(f"{echo_url}/private", lambda data: None, timeout=10)


async def test_a_masked_server_frame_ends_the_link() -> None:
    """Bad input from the server: the link is dropped with a reason, nothing raised."""

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        writer.write(bytes([0x82, 0x81, 1, 2, 3, 4, 5]))  # masked: servers must not mask
        await writer.drain()
        await reader.read()  # until the client drops the link
        writer.close()
        await writer.wait_closed()

    tcp = await asyncio.start_server(server, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws: WebSocketClient = await connect(f"ws://127.0.0.1:{port}/", lambda d: None, timeout=10)
        async with asyncio.timeout(10):
            assert await ws.closed == 1006
        assert ws.error == "a server frame was masked"
    finally:
        tcp.close()
        await tcp.wait_closed()


@pytest.mark.slow
def test_a_tiny_run_delivers_everything_through_both_relays(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two sessions for two seconds through a real relay process, then the bare router:
    every frame and input arrives once, in order, intact (exit status 0)."""
    status = load.main(["--sessions", "2", "--seconds", "2", "--ramp", "4", "--workers", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("offered 120 of the 120 messages") == 2, out
    assert out.count("failed 0 []") == 2, out
    assert "ratio zgoda/bare" in out
