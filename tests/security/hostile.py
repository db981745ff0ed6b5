"""A hostile relay for tests: a WebSocket man-in-the-middle in front of the real relay.

    hostile = HostileRelay(relay)           # relay: tests.support.relay.RelayProcess
    await hostile.start()
    hostile.url                             # give this to the agent as its relay URL
    HostileView(relay, hostile)             # give this to tests.agent.consultant.Consultant
    hostile.attack = some_coroutine_function
    ...
    await hostile.close()

Every WebSocket message in each direction passes through `attack(leg, upward, data)`
before it is forwarded; it returns True to forward the message unchanged, or False
after doing whatever it likes instead (`leg.to_end(data)`, `leg.to_relay(data)`, or
another leg's). This is everything a compromised relay can do with the bytes it
routes: read, drop, hold, reorder, replay, modify, inject and reflect. Every message
is also recorded in `wire` (who sent it, and its bytes) for later inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from protocol.messages import Party
from tests.support.relay import RelayProcess

OPEN_TIMEOUT = 15.0


@dataclass
class Leg:
    """One end's two links: to the end itself (agent or console) and on to the relay."""

    role: Party
    end: ServerConnection
    up: ClientConnection

    async def to_end(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.end.send(data)

    async def to_relay(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.up.send(data)


@dataclass(frozen=True)
class Wire:
    """One message as it crossed the hostile relay."""

    role: Party  # whose leg
    upward: bool  # True: from the end towards the relay
    data: bytes
    at: float = field(default_factory=time.monotonic)


Attack = Callable[[Leg, bool, bytes], Awaitable[bool]]


async def forward_everything(leg: Leg, upward: bool, data: bytes) -> bool:
    del leg, upward, data
    return True


class HostileRelay:
    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.attack: Attack = forward_everything
        self.wire: list[Wire] = []
        self.legs: dict[Party, Leg] = {}
        self.leg_opened = asyncio.Event()
        self._server: Server | None = None
        self._port = 0

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None
        )
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def sent(self, role: Party, *, upward: bool = True) -> list[bytes]:
        """The messages `role` sent (upward) or received (not upward), in order."""
        return [w.data for w in self.wire if w.role is role and w.upward is upward]

    async def _handle(self, end: ServerConnection) -> None:
        path = end.request.path if end.request is not None else ""
        role = Party.AGENT if path == "/ws/agent" else Party.CONSOLE
        headers = {}
        if end.request is not None and "Authorization" in end.request.headers:
            headers["Authorization"] = end.request.headers["Authorization"]
        up = await connect(
            self.relay.ws_url + path,
            additional_headers=headers,
            max_size=None,
            compression=None,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
        )
        leg = Leg(role, end, up)
        self.legs[role] = leg
        self.leg_opened.set()
        pumps = [
            asyncio.create_task(self._pump(leg, end, up, upward=True)),
            asyncio.create_task(self._pump(leg, up, end, upward=False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await up.close()
            await end.close()

    async def _pump(self, leg: Leg, source: Any, sink: Any, *, upward: bool) -> None:
        try:
            async for data in source:
                assert isinstance(data, bytes)
                self.wire.append(Wire(leg.role, upward, data))
                if await self.attack(leg, upward, data):
                    await sink.send(data)
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class HostileView:
    """What the consultant helper needs of a relay, with the WebSocket routed through
    the hostile relay; the HTTP API still goes to the real relay."""

    def __init__(self, relay: RelayProcess, hostile: HostileRelay) -> None:
        self._relay = relay
        self._hostile = hostile

    @property
    def ws_console_url(self) -> str:
        return self._hostile.url.replace("http", "ws", 1) + "/ws/console"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)
