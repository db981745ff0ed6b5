"""The two WebSocket endpoints: allocate, claim, pair, and forward blind.

Each end (console or agent) is one `End`; its request handler is the one
place that reads its socket, feeds each message to `End.on_message` and
forwards what the peer must see. Forwarding awaits the peer's socket, so a
peer that stops reading fills aiohttp's bounded write buffer
(`write_buffer`), the sender's handler stops reading, aiohttp's bounded read
queue fills, and TCP pushes back on the sender: there is no unbounded queue
anywhere. One sweeper task enforces every deadline (first message, nameplate
expiry, key confirmation, idleness, a peer that accepts nothing).

Close codes: a codec fault closes with the `close_code` of the ProtocolError
the codec raised; a relay refusal closes with `RELAY_CLOSE_BASE + RelayErrorCode`
after a `RelayError` message; a normal end closes with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from protocol import attestation as attest
from protocol.codec import decode_control, encode, is_sealed
from protocol.errors import RELAY_CLOSE_BASE, ProtocolError, UnexpectedMessage
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    Abort,
    AbortReason,
    AllocateNameplate,
    AuditKind,
    AuditReport,
    Claimed,
    ClaimNameplate,
    Confirm,
    Message,
    NameplateAllocated,
    Pake,
    Party,
    PeerAway,
    PeerJoined,
    PeerLeft,
    PeerReturned,
    RelayError,
    RelayErrorCode,
    Resume,
    Resumed,
    Rewind,
    Rights,
    SessionOpened,
)
from relay.core import Relay
from relay.nameplates import NameplatesExhausted
from relay.store import Consultant, StorageFull

log = logging.getLogger("zgoda.relay")

RESUME_TOKEN_BYTES = 32
"""Each end's secret for rejoining its session after a dropped link: 256 bits, so
guessing is hopeless even before the claim rate limits apply to resumes too."""

# Sealed envelopes are forwarded without decoding (`protocol.codec.is_sealed`); the
# WebSocket layer has already refused anything over `max_message_size`.

LINGER_SECONDS = 2.0
"""How long an agent whose console left may take to close its own link (sending its
last consent receipt first) before the relay closes it."""

SWEEP_INTERVAL = 0.5
"""Deadlines are checked twice a second: timeouts are tens of seconds, so this is precise enough."""

STORAGE_FULL_NEW = (
    "The relay's disk is full, so no new session can start. "
    "Please tell the helpdesk's administrator."
)
STORAGE_FULL_RUNNING = (
    "The relay's disk is full, so it cannot record this session's consent and ended it. "
    "Please tell the helpdesk's administrator."
)


class State(enum.Enum):
    NEW = "new"  # connected, no request yet
    WAITING = "waiting"  # console: nameplate allocated, no agent yet
    PAIRED = "paired"
    CLOSED = "closed"


@dataclass(eq=False)
class End:
    """One WebSocket: a console or an agent."""

    role: Party
    ws: web.WebSocketResponse
    ip: str
    deadline: float
    consultant: Consultant | None = None
    state: State = State.NEW
    nameplate: str = ""
    ticket_id: str = ""
    ticket_title: str = ""
    session: Session | None = None
    sending_since: float = 0.0  # monotonic start of a send still waiting for the peer
    transport: asyncio.Transport | None = None
    close_done: asyncio.Event | None = None  # set once a close started elsewhere has finished

    @property
    def name(self) -> str:
        return "console" if self.role is Party.CONSOLE else "agent"


@dataclass(eq=False)
class Session:
    """A console and an agent paired through one nameplate."""

    id: str
    console: End
    agent: End
    ticket_id: str
    consultant: str
    started: float  # wall clock, for the audit
    started_mono: float
    last_activity: float
    consultant_username: str = ""
    confirmed: set[Party] = field(default_factory=set)
    tokens: dict[Party, bytes] = field(default_factory=dict)  # resume tokens, per end
    away: dict[Party, float] = field(default_factory=dict)  # monotonic end of each grace
    bytes_to_agent: int = 0
    bytes_to_console: int = 0
    unreported_to_agent: int = 0
    unreported_to_console: int = 0
    ended: bool = False
    end_reported: bool = False  # the agent's ENDED receipt arrived: no resume after it

    def peer_of(self, end: End) -> End:
        return self.agent if end is self.console else self.console

    @property
    def keyed(self) -> bool:
        return len(self.confirmed) == 2


class Refusal(Exception):
    """Raised inside a handler: send RelayError(code, message) and close this end."""

    def __init__(self, code: RelayErrorCode, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Endpoints:
    """The WebSocket side of a relay."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.config = relay.config
        self.sessions: set[Session] = set()
        self.by_id: dict[str, Session] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._lingering: set[asyncio.Task[None]] = set()

    # -- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Tell every end the relay is going away, close them, stop the sweeper."""
        self.relay.shutting_down = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        message = "The relay is shutting down; please start a new session in a minute."
        ends = list(self.relay.ends)
        for session in list(self.sessions):
            await self._end_session(session, "relay shutdown", notify_peer=False)
        await asyncio.gather(
            *(self._refuse(end, RelayErrorCode.SHUTTING_DOWN, message) for end in ends),
            return_exceptions=True,
        )

    # -- endpoints

    async def console(self, request: web.Request) -> web.StreamResponse:
        """GET /ws/console: bearer token required, then AllocateNameplate."""
        from relay.api import bearer_consultant  # the API owns token checks

        refused = self._admission(request)
        if refused is not None:
            return refused
        # counted against its address before the token lookup awaits the database,
        # so that many slow requests at once cannot slip past the per-address cap
        end = await self._open(request, Party.CONSOLE)
        consultant = await bearer_consultant(request, self.relay)
        end.consultant = consultant
        if consultant is None:
            await self._refuse(
                end, RelayErrorCode.UNAUTHORIZED, "Log in again: the session token is not valid."
            )
            self._forget(end)
            return end.ws
        return await self._serve(end)

    async def agent(self, request: web.Request) -> web.StreamResponse:
        """GET /ws/agent: anonymous; ClaimNameplate."""
        refused = self._admission(request)
        if refused is not None:
            return refused
        return await self._serve(await self._open(request, Party.AGENT))

    def _admission(self, request: web.Request) -> web.Response | None:
        """Refuse before the upgrade: shutting down, or too many sockets from one address."""
        from relay.api import json_error

        if self.relay.shutting_down:
            return json_error(503, "shutting_down", "The relay is shutting down.")
        ip = request.remote or "?"
        if self.relay.connections_per_ip[ip] >= self.config.max_connections_per_ip:
            self.relay.metrics.failures.labels("too_many_connections").inc()
            return json_error(
                429, "too_many_connections", "Too many connections from this address.", 10.0
            )
        return None

    async def _open(self, request: web.Request, role: Party) -> End:
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_size,
            heartbeat=self.config.ping_interval,
            writer_limit=self.config.write_buffer,
            timeout=self.config.shutdown_grace,
        )
        ip = request.remote or "?"
        end = End(role, ws, ip, deadline=time.monotonic() + self.config.handshake_timeout)
        end.transport = request.transport
        self.relay.connections_per_ip[ip] += 1
        self.relay.ends.add(end)
        self.relay.metrics.connections.labels(end.name).inc()
        try:
            await ws.prepare(request)
        except BaseException:
            self._forget(end)
            raise
        return end

    def _forget(self, end: End) -> None:
        if end in self.relay.ends:
            self.relay.ends.discard(end)
            self.relay.metrics.connections.labels(end.name).dec()
            self.relay.connections_per_ip[end.ip] -= 1
            if self.relay.connections_per_ip[end.ip] <= 0:
                del self.relay.connections_per_ip[end.ip]

    async def _serve(self, end: End) -> web.WebSocketResponse:
        ws = end.ws
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    await self._on_message(end, msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await self._fail_input(
                        end, UnexpectedMessage("text frames are not spoken here")
                    )
                elif msg.type is WSMsgType.ERROR:
                    # aiohttp has already closed the socket (1009 for an oversized
                    # message, 1002 for a broken frame) without reading the payload.
                    self.relay.metrics.failures.labels("websocket_error").inc()
                    log.info("%s %s: websocket error: %s", end.name, end.ip, ws.exception())
                    break
                # An end the relay has closed (state CLOSED) keeps being read until
                # its socket closes: returning early would let aiohttp close it
                # with 1000 before the relay's own RelayError and close code.
        except asyncio.CancelledError:
            raise
        except StorageFull:  # a write no handler below expected to fail (logged by Relay.db)
            await self._refuse(end, RelayErrorCode.STORAGE_FULL, STORAGE_FULL_NEW)
        except Exception:  # a bug must end this connection only, never the relay
            log.exception("%s %s: internal error", end.name, end.ip)
            self.relay.metrics.failures.labels("internal").inc()
            await self._refuse(end, RelayErrorCode.INTERNAL, "The relay had an internal error.")
        finally:
            await self._left(end)
            if end.close_done is not None:
                # Another task is closing this socket and waits for the peer's
                # close frame; returning now would let aiohttp drop the transport
                # under it and the peer would see 1006 instead of our close code.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(end.close_done.wait(), self.config.shutdown_grace + 1)
        return ws

    # -- dispatch

    async def _on_message(self, end: End, data: bytes) -> None:
        if end.state is State.CLOSED:
            # The relay is closing this end; what it still sends is moot, but for the
            # agent's consent receipts: its ENDED receipt is often on the wire when the
            # console's deliberate close ends the session, and the log must have it.
            if end.role is Party.AGENT and end.session is not None and len(data) < 4096:
                with contextlib.suppress(ProtocolError):
                    message = decode_control(data)
                    if isinstance(message, AuditReport):
                        await self._receipt(end.session, end, message)
            return
        session = end.session
        if session is not None and end.state is State.PAIRED and is_sealed(data):
            await self._forward(session, end, data)
            return
        try:
            message = decode_control(data)
        except ProtocolError as exc:
            await self._fail_input(end, exc)
            return
        try:
            await self._dispatch(end, message, data)
        except Refusal as refusal:
            await self._refuse(end, refusal.code, refusal.message, refusal.retry_after)
        except ProtocolError as exc:
            await self._fail_input(end, exc)

    async def _dispatch(self, end: End, message: Message, data: bytes) -> None:
        if end.state is State.NEW and isinstance(message, Resume):
            await self._resume(end, message)
            return
        if end.state is State.NEW and end.role is Party.CONSOLE:
            if isinstance(message, AllocateNameplate):
                await self._allocate(end, message)
                return
        elif end.state is State.NEW and end.role is Party.AGENT:
            if isinstance(message, ClaimNameplate):
                await self._claim(end, message)
                return
        elif end.state is State.WAITING and isinstance(message, Abort):
            self.relay.directory.release(end.nameplate, end)
            await self._close(end, 1000, "aborted")
            return
        elif end.state is State.PAIRED and end.session is not None:
            session = end.session
            if isinstance(message, Pake | Confirm | Rewind):
                if isinstance(message, Confirm):
                    session.confirmed.add(end.role)
                await self._forward(session, end, data)
                return
            if isinstance(message, AuditReport) and end.role is Party.AGENT:
                await self._receipt(session, end, message)
                return
            if isinstance(message, Abort):
                await self._abort(session, end, message)
                return
        raise UnexpectedMessage(
            f"{type(message).__name__} is not expected from the {end.name} ({end.state.value})"
        )

    # -- console: allocate

    async def _allocate(self, end: End, message: AllocateNameplate) -> None:
        relay, metrics = self.relay, self.relay.metrics
        assert end.consultant is not None
        if not relay.open_now():
            metrics.allocations.labels("outside_hours").inc()
            raise Refusal(RelayErrorCode.OUTSIDE_HOURS, relay.hours.refusal())
        ticket = await relay.db(relay.store.ticket, message.ticket_id)
        if ticket is None or ticket.status != "open":
            metrics.allocations.labels("ticket_unknown").inc()
            raise Refusal(
                RelayErrorCode.TICKET_UNKNOWN,
                f"Ticket {message.ticket_id} is not an open ticket; register the call first.",
            )
        if end.state is not State.NEW:  # the socket closed while we waited for the database
            return
        try:
            allocation = relay.directory.allocate(end, relay.now(), self.config.nameplate_ttl)
        except NameplatesExhausted:
            metrics.allocations.labels("exhausted").inc()
            raise Refusal(
                RelayErrorCode.NAMEPLATE_EXHAUSTED,
                "Every session code is in use; try again in a minute.",
                60.0,
            ) from None
        end.nameplate = allocation.nameplate
        end.ticket_id, end.ticket_title = ticket.id, ticket.title
        statement = attest.Attestation(
            nameplate=allocation.nameplate,
            consultant=end.consultant.display_name,
            ticket_id=ticket.id,
            ticket_title=ticket.title,
            org=self.config.org,
            expires_at=allocation.expires_at,
        )
        reply = NameplateAllocated(
            nameplate=allocation.nameplate,
            expires_at=allocation.expires_at,
            attestation=attest.sign(statement, relay.key),
        )
        try:
            await relay.audit(
                "nameplate.allocated",
                ticket_id=ticket.id,
                actor=end.consultant.username,
                ip=end.ip,
                detail={"nameplate": allocation.nameplate, "expires_at": allocation.expires_at},
            )
        except StorageFull:
            # No row, no session: a code the audit log does not show is never handed out.
            relay.directory.release(allocation.nameplate, end)
            metrics.allocations.labels("storage_full").inc()
            raise Refusal(RelayErrorCode.STORAGE_FULL, STORAGE_FULL_NEW) from None
        metrics.allocations.labels("ok").inc()
        metrics.waiting.set(len(relay.directory))
        if end.state is not State.NEW:  # the console left while the row was written
            relay.directory.release(allocation.nameplate, end)
            return
        if not relay.directory.holds(allocation.nameplate, end):
            # a claim guessed it during the write and burnt it (see below)
            raise Refusal(
                RelayErrorCode.NAMEPLATE_UNKNOWN,
                "The code was used before it was shown; please start a new session.",
            )
        # Only now can a claim pair with this console (`_claim` wants WAITING), so
        # the console always hears of its nameplate before any SessionOpened; a
        # claim that raced into the audit write above found it not yet claimable.
        end.state = State.WAITING
        # the console waits until the nameplate expires; the sweeper enforces it
        end.deadline = time.monotonic() + self.config.nameplate_ttl
        await self._send(end, encode(reply))

    # -- agent: claim and pair

    def _claim_retry_after(self, ip: str, now: float) -> float:
        relay = self.relay
        return max(
            relay.failed_claims_per_ip.retry_after(ip, now),
            relay.failed_claims_all.retry_after("*", now),
            relay.claims_per_ip.retry_after(ip, now),
        )

    def _count_failed_claim(self, ip: str, now: float) -> None:
        relay = self.relay
        relay.failed_claims_per_ip.record(ip, now)
        relay.failed_claims_all.record("*", now)
        wait = max(
            relay.failed_claims_per_ip.retry_after(ip, now),
            relay.failed_claims_all.retry_after("*", now),
        )
        if wait > 0:
            relay.alarm(ip, wait)

    async def _claim(self, end: End, message: ClaimNameplate) -> None:
        relay, metrics = self.relay, self.relay.metrics
        now = time.monotonic()
        wait = self._claim_retry_after(end.ip, now)
        if wait > 0:
            metrics.claims.labels("rate_limited").inc()
            raise Refusal(
                RelayErrorCode.RATE_LIMITED,
                f"Too many attempts to connect; try again in {wait:.0f} seconds.",
                round(wait, 1),
            )
        relay.claims_per_ip.record(end.ip, now)
        if message.protocol_version != PROTOCOL_VERSION:
            metrics.claims.labels("version").inc()
            raise Refusal(
                RelayErrorCode.VERSION_MISMATCH,
                "This program is too old or too new for the helpdesk's relay; ask for an update.",
            )
        allocation = relay.directory.claim(message.nameplate, relay.now())
        metrics.waiting.set(len(relay.directory))
        if allocation is None or allocation.owner.state is not State.WAITING:
            self._count_failed_claim(end.ip, now)
            metrics.claims.labels("unknown").inc()
            raise Refusal(
                RelayErrorCode.NAMEPLATE_UNKNOWN,
                "This code is not valid (mistyped, already used or expired); "
                "ask the consultant for a new one.",
            )
        metrics.claims.labels("ok").inc()
        console = allocation.owner
        relay.session_counter += 1
        session = Session(
            id=f"s-{secrets.token_hex(8)}",
            console=console,
            agent=end,
            ticket_id=console.ticket_id,
            consultant=console.consultant.display_name if console.consultant else "",
            consultant_username=console.consultant.username if console.consultant else "",
            started=relay.now(),
            started_mono=now,
            last_activity=now,
        )
        if self.config.resume_grace > 0:
            session.tokens = {
                Party.CONSOLE: secrets.token_bytes(RESUME_TOKEN_BYTES),
                Party.AGENT: secrets.token_bytes(RESUME_TOKEN_BYTES),
            }
        deadline = now + self.config.pake_timeout
        for side in (console, end):
            side.session, side.state, side.deadline = session, State.PAIRED, deadline
        end.nameplate, end.ticket_id = console.nameplate, console.ticket_id
        self.sessions.add(session)
        self.by_id[session.id] = session
        metrics.sessions.set(len(self.sessions))
        metrics.sessions_total.inc()
        await self._send(end, encode(Claimed(expires_at=allocation.expires_at)))
        joined = encode(PeerJoined())
        for side in (console, end):
            token = session.tokens.get(side.role, b"")
            opened = SessionOpened(
                session_id=session.id,
                resume_token=token,
                resume_grace_seconds=self.config.resume_grace if token else 0.0,
            )
            await self._send(side, encode(opened))
            await self._send(side, joined)
        try:
            await relay.audit(
                "session.paired",
                ticket_id=session.ticket_id,
                session_id=session.id,
                actor=console.consultant.username if console.consultant else "",
                ip=end.ip,
                detail={"nameplate": console.nameplate, "console_ip": console.ip},
            )
        except StorageFull:
            # Not keyed yet, so nothing was shared: end it before it starts, both ends told.
            await self._refuse_session(session, RelayErrorCode.STORAGE_FULL, STORAGE_FULL_NEW)

    # -- paired

    async def _forward(self, session: Session, end: End, data: bytes) -> None:
        peer = session.peer_of(end)
        now = time.monotonic()
        session.last_activity = now
        if end is session.agent:
            session.bytes_to_console += len(data)
            session.unreported_to_console += len(data)
        else:
            session.bytes_to_agent += len(data)
            session.unreported_to_agent += len(data)
        if peer.state is not State.PAIRED:
            return  # the peer is leaving; what is in flight is dropped with the session
        end.sending_since = now
        try:
            await peer.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass  # the peer's socket closed under us; its own handler ends the session
        finally:
            end.sending_since = 0.0

    async def _receipt(self, session: Session, end: End, report: AuditReport) -> None:
        session.last_activity = time.monotonic()
        if report.kind is AuditKind.ENDED:
            session.end_reported = True
        rights = Rights(report.rights).name.lower() if report.rights else "none"
        try:
            await self.relay.audit(
                "consent." + AuditKind(report.kind).name.lower(),
                ticket_id=session.ticket_id,
                session_id=session.id,
                actor="agent",
                ip=end.ip,
                detail={
                    "rights": rights,
                    "detail": report.detail,
                    "consultant": session.consultant,
                },
            )
        except StorageFull:
            # A consent the audit log cannot show must not go on: fail closed. Sealed
            # traffic is forwarded without the disk, so a running session is only
            # ended here, at its next consent receipt (grant, change, hand-back, end).
            if not session.ended:
                await self._refuse_session(
                    session, RelayErrorCode.STORAGE_FULL, STORAGE_FULL_RUNNING
                )

    async def _abort(self, session: Session, end: End, message: Abort) -> None:
        if message.reason is AbortReason.WRONG_CODE:
            # The consultant is logged in; the code is typed on the agent's side.
            # A wrong code is a failed guess by whoever claimed: it counts
            # against the agent's address like an unknown nameplate does.
            self._count_failed_claim(session.agent.ip, time.monotonic())
        reason = f"{end.name} aborted: {message.reason.name.lower()}"
        await self._end_session(session, reason)
        await self._close(end, 1000, "aborted")

    async def _end_session(
        self, session: Session, reason: str, *, notify_peer: bool = True
    ) -> None:
        """End a session once: audit it, tell the ends that are still there, close them."""
        if session.ended:
            return
        session.ended = True
        self.sessions.discard(session)
        self.by_id.pop(session.id, None)
        self._report_bytes(session)
        metrics = self.relay.metrics
        metrics.sessions.set(len(self.sessions))
        ends = (session.console, session.agent)
        leaving = [e for e in ends if e.state is not State.PAIRED]
        for end in ends:
            if end.state is State.PAIRED:
                end.state = State.CLOSED
        await self._audit_if_space(
            "session.ended",
            ticket_id=session.ticket_id,
            session_id=session.id,
            actor=session.consultant,
            detail={
                "reason": reason,
                "keyed": len(session.confirmed) == 2,
                "bytes_to_agent": session.bytes_to_agent,
                "bytes_to_console": session.bytes_to_console,
                "duration": round(time.monotonic() - session.started_mono, 3),
            },
        )
        if notify_peer:
            for end in ends:
                if end not in leaving:
                    await self._send(end, encode(PeerLeft()))
                    if end.role is Party.AGENT and leaving:
                        # The console left on purpose: its sealed End is in front of this
                        # PeerLeft, and the agent answers it with its ENDED receipt. Let
                        # the agent close its own link (it does on PeerLeft) so the receipt
                        # is not cut off by our close frame; close it ourselves after a while.
                        self._linger(end)
                    else:
                        await self._close(end, 1000, "peer left")

    def _linger(self, end: End) -> None:
        async def close_later() -> None:
            await asyncio.sleep(LINGER_SECONDS)
            if not end.ws.closed:
                await self._close(end, 1000, "peer left")

        task = asyncio.get_running_loop().create_task(close_later())
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)

    def _report_bytes(self, session: Session) -> None:
        metrics = self.relay.metrics
        if session.unreported_to_agent:
            metrics.bytes.labels("to_agent").inc(session.unreported_to_agent)
            session.unreported_to_agent = 0
        if session.unreported_to_console:
            metrics.bytes.labels("to_console").inc(session.unreported_to_console)
            session.unreported_to_console = 0

    # -- endings

    async def _left(self, end: End) -> None:
        """The end's socket is closed: burn what it held, tell its peer."""
        previous, end.state = end.state, State.CLOSED
        if previous is State.WAITING:
            self.relay.directory.release(end.nameplate, end)
            self.relay.metrics.waiting.set(len(self.relay.directory))
        session = end.session
        # an end replaced by a resume (`_resume` took over its session) leaves alone
        current = session is not None and end in (session.console, session.agent)
        if session is not None and current and not session.ended:
            peer = session.peer_of(end)
            # A close frame with 1000/1001 is an end that left on purpose (after the
            # sealed End, or quitting); so is a session whose agent reported its end.
            # Only a link that broke (no close frame: 1006) is held for a resume.
            deliberate = end.ws.close_code in (1000, 1001) or session.end_reported
            if (
                previous is State.PAIRED  # the link dropped; the relay did not close it
                and not deliberate
                and session.keyed
                and session.tokens
                and peer.state is State.PAIRED  # someone is left to wait for it
            ):
                await self._link_lost(session, end)
            else:
                await self._end_session(session, f"{end.name} left")
        self._forget(end)

    async def _link_lost(self, session: Session, end: End) -> None:
        """Hold a keyed session for `resume_grace` seconds; tell the other end to wait."""
        grace = self.config.resume_grace
        session.away[end.role] = time.monotonic() + grace
        peer = session.peer_of(end)
        log.info("%s %s: link lost in session %s; held %.0f s", end.name, end.ip, session.id, grace)
        await self._send(peer, encode(PeerAway(grace_seconds=grace)))
        await self._audit_if_space(
            "session.link_lost",
            ticket_id=session.ticket_id,
            session_id=session.id,
            actor=end.name,
            ip=end.ip,
            detail={"grace_seconds": grace},
        )

    async def _resume(self, end: End, message: Resume) -> None:
        """A new link rejoins its session: check the token, swap the end, tell both."""
        metrics = self.relay.metrics
        now = time.monotonic()
        wait = self._claim_retry_after(end.ip, now)
        if wait > 0:
            metrics.claims.labels("rate_limited").inc()
            raise Refusal(
                RelayErrorCode.RATE_LIMITED,
                f"Too many attempts to connect; try again in {wait:.0f} seconds.",
                round(wait, 1),
            )
        session = self.by_id.get(message.session_id)
        expected = session.tokens.get(end.role, b"") if session is not None else b""
        if (
            session is None
            or session.ended
            or not session.keyed
            or not expected
            or not hmac.compare_digest(expected, message.token)
            or (
                end.role is Party.CONSOLE
                and (
                    end.consultant is None or end.consultant.username != session.consultant_username
                )
            )
        ):
            self._count_failed_claim(end.ip, now)
            metrics.claims.labels("resume_refused").inc()
            raise Refusal(
                RelayErrorCode.SESSION_UNKNOWN,
                "This session cannot be resumed any more; please start a new one.",
            )
        current = session.console if end.role is Party.CONSOLE else session.agent
        if end.role not in session.away:
            # The end's old link still looks alive here (a NAT or Wi-Fi drop that the
            # client noticed first): the token proves it is the same end, so the new
            # link takes over. The peer hears PeerAway first, so that it holds and
            # rewinds exactly as after a drop the relay had seen.
            current.state = State.CLOSED
            if current.transport is not None:
                current.transport.abort()
            grace = self.config.resume_grace
            await self._send(session.peer_of(current), encode(PeerAway(grace_seconds=grace)))
        session.away.pop(end.role, None)
        if end.role is Party.CONSOLE:
            old, session.console = session.console, end
        else:
            old, session.agent = session.agent, end
        end.session, end.state = session, State.PAIRED
        end.nameplate, end.ticket_id, end.ticket_title = (
            old.nameplate,
            old.ticket_id,
            old.ticket_title,
        )
        session.last_activity = now
        metrics.claims.labels("resumed").inc()
        await self._send(end, encode(Resumed()))
        await self._send(session.peer_of(end), encode(PeerReturned()))
        await self._audit_if_space(
            "session.resumed",
            ticket_id=session.ticket_id,
            session_id=session.id,
            actor=end.name,
            ip=end.ip,
        )

    async def _audit_if_space(self, kind: str, **fields: Any) -> None:
        """Append a row about the session's connection (not a consent): on a full disk the
        row is lost (Relay.db logged it) and the session's ending or resuming goes on,
        so that no end is left waiting for a relay stuck on its disk."""
        with contextlib.suppress(StorageFull):
            await self.relay.audit(kind, **fields)

    async def _send(self, end: End, data: bytes) -> None:
        if end.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await end.ws.send_bytes(data)

    async def _close(self, end: End, code: int, reason: str) -> None:
        end.state = State.CLOSED
        if end.close_done is not None:
            return  # already closing
        end.close_done = asyncio.Event()
        try:
            with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                await end.ws.close(code=code, message=reason.encode()[:120])
        finally:
            end.close_done.set()

    async def _refuse(
        self, end: End, code: RelayErrorCode, message: str, retry_after: float = 0.0
    ) -> None:
        """Send RelayError and close with RELAY_CLOSE_BASE + code."""
        self.relay.metrics.failures.labels(code.name.lower()).inc()
        log.info("%s %s refused: %s (%s)", end.name, end.ip, code.name, message)
        if end.state is State.WAITING:
            self.relay.directory.release(end.nameplate, end)
        session = end.session
        end.state = State.CLOSED
        await self._send(
            end, encode(RelayError(code=code, message=message, retry_after=retry_after))
        )
        await self._close(end, RELAY_CLOSE_BASE + int(code), code.name.lower())
        if session is not None and not session.ended:
            await self._end_session(session, f"{end.name} refused: {code.name.lower()}")

    async def _fail_input(self, end: End, exc: ProtocolError) -> None:
        """Bad input: RelayError(BAD_MESSAGE) and the codec error's own close code."""
        self.relay.metrics.failures.labels("bad_message").inc()
        log.info("%s %s sent bad input: %s", end.name, end.ip, exc)
        if end.state is State.WAITING:
            self.relay.directory.release(end.nameplate, end)
        session = end.session
        end.state = State.CLOSED
        text = "The relay could not accept a message from this program."
        await self._send(
            end, encode(RelayError(code=RelayErrorCode.BAD_MESSAGE, message=text, retry_after=0))
        )
        await self._close(end, exc.close_code, type(exc).__name__)
        if session is not None and not session.ended:
            await self._end_session(session, f"{end.name} sent bad input")

    # -- deadlines

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self._sweep(time.monotonic())
            except Exception:
                log.exception("sweeper failed; continuing")

    async def _sweep(self, now: float) -> None:
        cfg = self.config
        for session in list(self.sessions):
            self._report_bytes(session)
            gone = [role for role, until in session.away.items() if now > until]
            if gone:
                name = "console" if gone[0] is Party.CONSOLE else "agent"
                await self._end_session(session, f"{name} did not come back")
                continue
            if session.away:
                continue  # held for a resume: no other deadline runs meanwhile
            for end in (session.console, session.agent):
                if end.sending_since and now - end.sending_since > cfg.slow_peer_timeout:
                    await self._peer_too_slow(session, end)
                    break
            else:
                if len(session.confirmed) < 2 and now > session.agent.deadline:
                    await self._refuse_session(
                        session,
                        RelayErrorCode.PEER_GONE,
                        "The other side did not finish connecting in time.",
                    )
                elif now - session.last_activity > cfg.idle_timeout:
                    await self._refuse_session(
                        session,
                        RelayErrorCode.PEER_GONE,
                        "The session was idle too long and was ended.",
                    )
        for end in list(self.relay.ends):
            if end.state is State.WAITING and now > end.deadline:
                await self._refuse(
                    end,
                    RelayErrorCode.NAMEPLATE_UNKNOWN,
                    "The session code expired unused; start a new session.",
                )
            elif end.state is State.NEW and now > end.deadline:
                await self._refuse(
                    end,
                    RelayErrorCode.BAD_MESSAGE,
                    f"No request within {cfg.handshake_timeout:.0f} seconds.",
                )
        self.relay.directory.expire(self.relay.now())
        self.relay.metrics.waiting.set(len(self.relay.directory))

    async def _refuse_session(self, session: Session, code: RelayErrorCode, message: str) -> None:
        """End a session for a relay-side reason: both ends get the RelayError."""
        ends = (session.console, session.agent)
        for end in ends:
            end.state = State.CLOSED
        await self._end_session(session, code.name.lower())
        await asyncio.gather(*(self._refuse(end, code, message) for end in ends))

    async def _peer_too_slow(self, session: Session, sender: End) -> None:
        """`sender` has waited too long for its peer to accept data: drop the peer."""
        peer = session.peer_of(sender)
        log.info("%s %s: too slow, ending session %s", peer.name, peer.ip, session.id)
        self.relay.metrics.failures.labels("peer_too_slow").inc()
        peer.state = sender.state = State.CLOSED
        await self._end_session(session, f"{peer.name} too slow")
        if peer.transport is not None:
            # it reads nothing, so a close handshake would only wait: cut it
            peer.transport.abort()
        await self._refuse(
            sender,
            RelayErrorCode.PEER_TOO_SLOW,
            "The other side's connection is too slow; the session was ended.",
        )
