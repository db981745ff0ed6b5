"""The agent end of the protocol over a real WebSocket to a real relay, driven by the test.

This is `protocol.connection.AgentConnection` (the real PAKE, sealing, consent
table and audit receipts) with the test playing the PC's user (grant, deny,
hand-back) and the screen (frames it builds). Where the whole agent engine
matters (capture, injection on Xvfb), the end-to-end tests use `agent/` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import aiohttp

from protocol.attestation import load_public_key
from protocol.codec import MAX_ENVELOPE_SIZE
from protocol.codes import PhoneCode
from protocol.connection import AgentConnection, ConsentRequested, Event, SessionEnded
from protocol.messages import DenyReason, EndReason, FrameAck, Message, Rights


class ScriptedAgent:
    def __init__(self, ws_agent_url: str, pubkey: str, org: str, code: PhoneCode) -> None:
        self.url = ws_agent_url
        self.conn = AgentConnection(code=code, relay_key=load_public_key(pubkey), org=org)
        self.events: list[Event] = []
        self.ack_count = 0  # counted, not kept: a long view must not grow the test's memory
        self.last_ack: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> ScriptedAgent:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, max_msg_size=MAX_ENVELOPE_SIZE)
        self._reader = asyncio.create_task(self._read())
        await self._flush()
        return self

    def drop(self) -> None:
        """The PC's network dies: the TCP connection ends without a close frame."""
        assert self._ws is not None
        sock = self._ws.get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        if self._http is not None:
            await self._http.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
            self.conn.receive_data(msg.data)
            for event in self.conn.events_received():
                if isinstance(event, FrameAck):
                    self.ack_count += 1
                    self.last_ack = event.frame_id
                else:
                    self.events.append(event)
            await self._flush()
            self._changed.set()
        self._changed.set()

    async def _flush(self) -> None:
        assert self._ws is not None
        for data in self.conn.data_to_send():
            if not self._ws.closed:
                await self._ws.send_bytes(data)

    async def wait(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_event(self, kind: type[Any], timeout: float = 30.0) -> Any:
        await self.wait(lambda: any(isinstance(e, kind) for e in self.events), timeout)
        return next(e for e in self.events if isinstance(e, kind))

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def consent_prompt(self, timeout: float = 30.0) -> ConsentRequested:
        result: ConsentRequested = await self.wait_event(ConsentRequested, timeout)
        return result

    # the user's clicks and the screen

    async def allow(self, rights: Rights = Rights.CONTROL) -> None:
        self.conn.grant(rights)
        await self._flush()

    async def deny(self, reason: DenyReason = DenyReason.USER_DENIED) -> None:
        self.conn.deny(reason)
        await self._flush()

    async def send(self, message: Message) -> None:
        self.conn.send(message)
        await self._flush()

    async def start_hand_back(self) -> None:
        self.conn.start_hand_back()
        await self._flush()

    async def end_hand_back(self) -> None:
        self.conn.end_hand_back()
        await self._flush()

    async def end(self, reason: EndReason = EndReason.USER_ENDED, detail: str = "") -> None:
        self.conn.end(reason, detail)
        await self._flush()

    async def ended(self, timeout: float = 30.0) -> SessionEnded:
        result: SessionEnded = await self.wait_event(SessionEnded, timeout)
        return result
