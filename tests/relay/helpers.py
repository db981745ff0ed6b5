"""WebSocket clients for the relay tests: raw envelope clients and protocol-driven ends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, TypeVar

import aiohttp

from protocol.attestation import load_public_key
from protocol.codec import decode_envelope, encode
from protocol.codes import new_secret
from protocol.connection import AgentConnection, CodeReady, Connection, ConsoleConnection
from protocol.errors import RELAY_CLOSE_BASE
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    AllocateNameplate,
    ClaimNameplate,
    Message,
    NameplateAllocated,
    RelayError,
    Rights,
)
from tests.support.relay import RelayProcess

STEP_TIMEOUT = 15.0
"""Upper bound for any single wait in a test: generous, never a speed assertion."""

T = TypeVar("T")


def close_code_for(code: Any) -> int:
    return RELAY_CLOSE_BASE + int(code)


class Client:
    """One WebSocket to the relay that speaks envelopes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        await self.ws.send_bytes(encode(message))

    async def drop(self) -> None:
        """The network under this link dies: the TCP connection ends with no close frame
        (the relay sees 1006, which it holds for a resume, unlike a close with 1000)."""
        sock = self.ws.get_extra_info("socket")
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        await self.ws.close()

    async def send_raw(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def recv(self) -> Message:
        """The next envelope; fails the test on a close or a timeout."""
        msg = await self.ws.receive(timeout=STEP_TIMEOUT)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
        return decode_envelope(msg.data)

    async def expect(self, kind: type[T]) -> T:
        message = await self.recv()
        assert isinstance(message, kind), message
        return message

    async def closed(self) -> int | None:
        """Read until the relay closes; return the code of its close frame.

        The code comes from the frame itself: when the relay closes a socket from
        another task, aiohttp drops the TCP connection right after the frame, so
        the client's echo fails and its own `close_code` reads 1006.
        """
        for _ in range(1000):
            msg = await self.ws.receive(timeout=STEP_TIMEOUT)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                break
        return self.ws.close_code

    async def refused(self) -> tuple[RelayError, int | None]:
        """Expect RelayError then a close; return both."""
        error = await self.expect(RelayError)
        return error, await self.closed()


async def console(
    http: aiohttp.ClientSession, relay: RelayProcess, token: str | None, **kwargs: Any
) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await http.ws_connect(
        relay.ws_console_url, headers=headers, ssl=relay.ssl_context() or True, **kwargs
    )
    return Client(ws)


async def agent(http: aiohttp.ClientSession, relay: RelayProcess, **kwargs: Any) -> Client:
    ws = await http.ws_connect(relay.ws_agent_url, ssl=relay.ssl_context() or True, **kwargs)
    return Client(ws)


async def allocate(
    http: aiohttp.ClientSession, relay: RelayProcess, token: str, ticket_id: str
) -> tuple[Client, NameplateAllocated]:
    end = await console(http, relay, token)
    await end.send(AllocateNameplate(ticket_id=ticket_id))
    return end, await end.expect(NameplateAllocated)


async def claim(http: aiohttp.ClientSession, relay: RelayProcess, nameplate: str) -> Client:
    end = await agent(http, relay)
    await end.send(ClaimNameplate(nameplate=nameplate, protocol_version=PROTOCOL_VERSION))
    return end


async def paired(
    http: aiohttp.ClientSession, relay: RelayProcess, token: str, ticket_id: str
) -> tuple[Client, Client, str]:
    """A console and an agent paired through the relay, control messages consumed."""
    from protocol.messages import Claimed, PeerJoined, SessionOpened

    con, allocated = await allocate(http, relay, token, ticket_id)
    ag = await claim(http, relay, allocated.nameplate)
    await ag.expect(Claimed)
    opened = await ag.expect(SessionOpened)
    await ag.expect(PeerJoined)
    assert (await con.expect(SessionOpened)).session_id == opened.session_id
    await con.expect(PeerJoined)
    return con, ag, opened.session_id


class Driver:
    """A protocol `Connection` driven over a real WebSocket: the shell of a test end."""

    def __init__(self, conn: Connection, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.conn, self.ws = conn, ws
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        for data in self.conn.data_to_send():
            if not self.ws.closed:
                await self.ws.send_bytes(data)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self.flush()
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.conn.receive_data(msg.data)
                await self.flush()
                for event in self.conn.events_received():
                    self.events.put_nowait(event)
        for event in self.conn.events_received():
            self.events.put_nowait(event)
        self.events.put_nowait(("closed", self.ws.close_code))

    async def wait_for(self, kind: type[T]) -> T:
        """The next event of `kind`, skipping others (bounded in count and time)."""
        for _ in range(10_000):
            event = await asyncio.wait_for(self.events.get(), STEP_TIMEOUT)
            if isinstance(event, kind):
                return event
            assert not (isinstance(event, tuple) and event[0] == "closed"), (
                f"closed before {kind.__name__}: {event}"
            )
        raise AssertionError(f"no {kind.__name__}")

    async def stop(self, *, drop: bool = False) -> None:
        """Close the link (with a close frame), or with `drop` cut it as a failing network does."""
        if drop:
            sock = self.ws.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, STEP_TIMEOUT)


async def protocol_pair(
    http: aiohttp.ClientSession, relay: RelayProcess
) -> tuple[dict[str, Any], ConsoleConnection, Driver, AgentConnection, Driver]:
    """Real protocol ends through the relay: a ticket, the console's code, the agent
    typing it. Returns the ticket and each end's connection and running driver."""
    token = relay.token()
    ticket = relay.create_ticket(token)
    console_conn = ConsoleConnection(
        ticket_id=ticket["id"],
        consultant="Anna Nowak",
        ticket_title=ticket["title"],
        rights=Rights.CONTROL,
        secret=new_secret(),
    )
    con = Driver(console_conn, (await console(http, relay, token)).ws)
    con.start()
    ready = await con.wait_for(CodeReady)
    agent_conn = AgentConnection(
        code=ready.code, relay_key=load_public_key(relay.pubkey), org=relay.org
    )
    ag = Driver(agent_conn, (await agent(http, relay)).ws)
    ag.start()
    return ticket, console_conn, con, agent_conn, ag
