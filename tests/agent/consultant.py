"""A headless consultant for the agent's tests: the real relay's API and WebSocket,
`protocol.connection.ConsoleConnection` for the session, simplejpeg to paint frames.

Every wait is bounded (`WAIT`); a test that waits for something that never comes
fails with the events seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from console.framebuffer import FrameBuffer
from protocol.codec import encode
from protocol.codes import PhoneCode
from protocol.connection import CodeReady, ConsoleConnection, SessionEnded
from protocol.messages import Frame, Message, MonitorLayout, Rights, Sealed
from tests.support.relay import RelayProcess

WAIT = 15.0
T = TypeVar("T")


class Consultant:
    def __init__(self, relay: RelayProcess, *, rights: Rights = Rights.CONTROL) -> None:
        self.relay = relay
        self.rights = rights
        self.events: list[Any] = []
        self.ack_frames = True
        self._picture: FrameBuffer | None = None  # the console's own decoder, every codec
        self.layout: MonitorLayout | None = None
        self.frames: list[Frame] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.conn: ConsoleConnection | None = None
        self.ticket: dict[str, Any] = {}

    async def open(self) -> PhoneCode:
        """Log in, register a ticket, ask for a nameplate; return the code to read out."""
        token = await asyncio.to_thread(self.relay.token)
        self.ticket = await asyncio.to_thread(self.relay.create_ticket, token)
        self.conn = ConsoleConnection(
            ticket_id=self.ticket["id"],
            consultant=self.relay.display_name,
            ticket_title=self.ticket["title"],
            rights=self.rights,
        )
        self._ws = await connect(
            self.relay.ws_console_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            open_timeout=WAIT,
            ssl=self.relay.ssl_context(),
        )
        await self.flush()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        ready = await self.wait_for(CodeReady)
        return ready.code

    async def _read(self) -> None:
        assert self._ws is not None and self.conn is not None
        try:
            async for data in self._ws:
                assert isinstance(data, bytes)
                self.conn.receive_data(data)
                for event in self.conn.events_received():
                    self.events.append(event)
                    if isinstance(event, Frame):
                        self._paint(event)
                    elif isinstance(event, MonitorLayout):
                        self.layout = event
                        self._picture = None
                await self.flush()
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def canvas(self) -> npt.NDArray[np.uint8] | None:
        """The picture so far (BGRA), as the console library decodes it; None before a frame."""
        if self._picture is None or self._picture.empty:
            return None
        return self._picture.pixels

    def _paint(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self._picture is None:
            self._picture = FrameBuffer()
        self._picture.apply(frame)
        if frame.final and self.ack_frames and self.conn is not None and self.conn.session.live:
            self.conn.ack(frame.frame_id)

    async def flush(self) -> None:
        assert self._ws is not None and self.conn is not None
        for data in self.conn.data_to_send():
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(data)

    async def send(self, message: Message) -> None:
        assert self.conn is not None
        self.conn.send(message)
        await self.flush()

    async def send_raw(self, message: Message) -> None:
        """Seal and send `message` even where the console's own table forbids it.

        This is a console that ignores its rules (a modified or buggy console): the
        agent's table must refuse the message on its own. Reaches into the
        connection's channel on purpose.
        """
        assert self.conn is not None and self.conn._channel is not None
        self.conn._outgoing.append(encode(Sealed(box=self.conn._channel.seal(encode(message)))))
        await self.flush()

    async def wait_until(self, check: Callable[[], T | None], timeout: float = WAIT) -> T:
        """Until `check()` returns something truthy (re-checked on every message)."""
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if result:
                    return result
                self._changed.clear()
                if self.closed.is_set():
                    result = check()
                    if result:
                        return result
                    raise AssertionError(f"link closed; events: {self.summary()}")
                await self._changed.wait()

    async def wait_for(self, kind: type[T], timeout: float = WAIT, after: int = 0) -> T:
        def found() -> T | None:
            return next((e for e in self.events[after:] if isinstance(e, kind)), None)

        try:
            return await self.wait_until(found, timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind.__name__}; events: {self.summary()}") from None

    async def ended(self, timeout: float = WAIT) -> SessionEnded:
        return await self.wait_for(SessionEnded, timeout)

    def count(self, kind: type[Any]) -> int:
        return sum(isinstance(e, kind) for e in self.events)

    def summary(self) -> list[str]:
        def name(event: Any) -> str:
            if isinstance(event, SessionEnded):  # say why: the failure is then readable
                return f"SessionEnded({event.by.name}, {event.reason.name}, {event.detail!r})"
            return type(event).__name__

        return [name(e) for e in self.events][-40:]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
