"""One remote session from the consultant's side: the console's shell (STYLE §2).

`ConsoleSession` owns the `/ws/console` WebSocket and one
`protocol.connection.ConsoleConnection`. Its reader is the one place that
receives bytes, feeds the protocol, queues what the protocol returns and acts
on its events: frames go into the reused `FrameBuffer` and are acknowledged
once applied (the acks pace the agent), cursor and monitor messages are kept
for the viewer, every change is announced to listeners. The protocol's table
decides what may be sent; this module only asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import aiohttp

from console.api import RelayApi, Ticket
from console.errors import (
    BadFrame,
    ConsoleError,
    InputNotAllowed,
    NotLoggedIn,
    RelayUnreachable,
    SessionClosed,
    SessionRefused,
    TlsPinMismatch,
)
from console.framebuffer import FrameBuffer, Rect
from protocol.codec import MAX_ENVELOPE_SIZE, decode_envelope
from protocol.codes import PhoneCode
from protocol.connection import (
    CodeReady,
    ConsoleConnection,
    Dropped,
    Event,
    Keyed,
    LinkLost,
    LinkRestored,
    PeerAwayEvent,
    PeerConnected,
    SessionEnded,
    SessionIdAssigned,
)
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.limits import MAX_CONTROL_MESSAGE_SIZE
from protocol.messages import (
    ClipboardText,
    ConsentDenied,
    ConsentPending,
    Cursor,
    CursorShape,
    EndReason,
    Frame,
    HandBackEnded,
    HandBackStarted,
    KeyEvent,
    Message,
    Modifiers,
    MonitorLayout,
    MouseButton,
    Notice,
    NoticeCode,
    Party,
    PointerButton,
    PointerMove,
    Pong,
    RelayError,
    RelayErrorCode,
    Rights,
    Scroll,
    SelectMonitor,
    TypeText,
)
from protocol.session import State

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 15.0
"""Connecting and getting a nameplate: a healthy relay needs milliseconds."""

PING_INTERVAL_SECONDS = 2.0
"""How often the round-trip time on the status line is refreshed."""

STATS_WINDOW_SECONDS = 2.0
"""fps and kbit/s are averaged over this window: steady enough to read, quick to follow."""

MAX_STATS_SAMPLES = 4096
"""Bound on the samples kept for the window (a 2 s window at 1000 msg/s needs 2000)."""

RECONNECT_FIRST_DELAY_SECONDS = 0.25
RECONNECT_MAX_DELAY_SECONDS = 2.0
"""Back-off between reconnection attempts: quick for a blip, gentle on a relay that restarts."""

_RELAY_ERROR_TAG = RelayError.TAG


class Phase(Enum):
    """Where the session is, as the consultant sees it."""

    CONNECTING = "connecting to the relay"
    WAITING_FOR_USER = "read the code to the user"
    PAIRING = "the user typed the code: checking it"
    WAITING_FOR_CONSENT = "waiting for the user to allow"
    VIEWING = "viewing"
    ESCALATING = "asking the user for control"
    CONTROLLING = "controlling"
    HAND_BACK = "the user is typing a password: screen hidden"
    RECONNECTING = "the link dropped: reconnecting"
    ENDED = "ended"


# -- what listeners receive


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    phase: Phase
    state: State


@dataclass(frozen=True, slots=True)
class FrameApplied:
    frame_id: int
    rect: Rect | None


@dataclass(frozen=True, slots=True)
class CursorChanged:
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class LayoutChanged:
    layout: MonitorLayout


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    notice: Notice


@dataclass(frozen=True, slots=True)
class ConsentAsked:
    """The prompt is on the user's screen; unanswered, it denies after `timeout_seconds`."""

    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class ControlDenied:
    """The user refused to give control; the session goes on view-only."""


@dataclass(frozen=True, slots=True)
class SessionFinished:
    ended: SessionEnded


Update = (
    PhaseChanged
    | FrameApplied
    | CursorChanged
    | LayoutChanged
    | NoticeReceived
    | ConsentAsked
    | ControlDenied
    | SessionFinished
)
Listener = Callable[[Update], None]


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    fps: float
    kbit_per_second: float
    rtt_ms: float | None
    codec: str
    frames: int


class Stats:
    """Frame rate, throughput, round-trip time and codec over a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._frames: deque[float] = deque(maxlen=MAX_STATS_SAMPLES)
        self._bytes: deque[tuple[float, int]] = deque(maxlen=MAX_STATS_SAMPLES)
        self.frames = 0
        self.bytes = 0
        self.rtt_ms: float | None = None
        self.codec = ""

    def received(self, size: int) -> None:
        now = self._clock()
        self.bytes += size
        self._bytes.append((now, size))
        while self._bytes[0][0] < now - STATS_WINDOW_SECONDS:
            self._bytes.popleft()

    def frame(self, codec: str) -> None:
        now = self._clock()
        self.frames += 1
        self._frames.append(now)
        while self._frames[0] < now - STATS_WINDOW_SECONDS:
            self._frames.popleft()
        if codec:
            self.codec = codec

    def snapshot(self) -> StatsSnapshot:
        now = self._clock()
        since = now - STATS_WINDOW_SECONDS
        frames = sum(1 for t in self._frames if t >= since)
        size = sum(n for t, n in self._bytes if t >= since)
        return StatsSnapshot(
            fps=frames / STATS_WINDOW_SECONDS,
            kbit_per_second=size * 8 / 1000 / STATS_WINDOW_SECONDS,
            rtt_ms=self.rtt_ms,
            codec=self.codec,
            frames=self.frames,
        )


class ConsoleSession:
    """A remote session for one ticket; `await open()` returns the code to read aloud.

    Listeners (`add_listener`) are called on the event loop's thread for every
    change; scripts can instead `await wait_for(...)`. Input methods are plain
    calls (a GUI's key handler is synchronous): they queue sealed messages that
    a writer task sends in order.
    """

    def __init__(
        self,
        api: RelayApi,
        ticket: Ticket,
        *,
        consultant: str,
        rights: Rights = Rights.CONTROL,
        ping_interval: float = PING_INTERVAL_SECONDS,
    ) -> None:
        self.api = api
        self.ticket = ticket
        self.conn = ConsoleConnection(
            ticket_id=ticket.id,
            consultant=consultant,
            ticket_title=ticket.title,
            rights=rights,
        )
        self.framebuffer = FrameBuffer()
        self.stats = Stats()
        self.code: PhoneCode | None = None
        self.expires_at: float | None = None
        self.session_id: str | None = None
        self.consent_timeout: float | None = None
        self.cursor: Cursor | None = None
        self.cursor_shape: CursorShape | None = None
        self.layout: MonitorLayout | None = None
        self.notice: Notice | None = None
        self.secure_desktop = False
        self.input_paused = False
        self.hand_back_by: Party | None = None
        self.relay_error: RelayError | None = None
        self.ended: SessionEnded | None = None
        self.last_frame_id: int | None = None
        self.last_captured_at_ns = 0  # the agent's capture time of the last frame applied
        self._ping_interval = ping_interval
        self._peer_connected = False
        self._phase = Phase.CONNECTING
        self._listeners: list[Listener] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pinger: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._link_lost = False  # our link dropped; reconnecting to resume
        self.peer_away = False  # the PC's link dropped; it may come back
        self.reconnect_attempts = 0
        self.resumed = 0  # how often the link was restored
        self.close_code: int | None = None
        self._reconnect_error = ""

    # ------------------------------------------------------------------ state

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def rights(self) -> Rights | None:
        """What the user has granted now (None before consent)."""
        return self.conn.session.rights

    @property
    def live(self) -> bool:
        return self.ended is None

    @property
    def can_control(self) -> bool:
        """Input is sent only now: the user granted control and has the keyboard given."""
        return self.conn.session.input_allowed and self.live

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds (checked after every received message).

        Raises:
            TimeoutError: it did not hold within `timeout` seconds.
            SessionClosed: the session ended first (and the predicate does not hold).
        """
        if predicate():
            return
        if not self.live:
            raise SessionClosed(self._ended_text())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def wait_phase(self, *phases: Phase, timeout: float) -> Phase:
        """Wait for one of `phases`; see `wait_for` for what it raises."""
        await self.wait_for(lambda: self._phase in phases, timeout)
        return self._phase

    async def wait_frames(self, count: int, timeout: float) -> None:
        """Wait until `count` complete frames have been applied in total."""
        await self.wait_for(lambda: self.stats.frames >= count, timeout)

    async def wait_closed(self, timeout: float) -> None:
        """Wait until the WebSocket is closed and the tasks are done."""
        await asyncio.wait_for(self._closed.wait(), timeout)

    # ------------------------------------------------------------------ opening

    async def open(self, timeout: float = OPEN_TIMEOUT_SECONDS) -> PhoneCode:
        """Connect to `/ws/console`, allocate the nameplate, return the phone code.

        Raises:
            NotLoggedIn: the relay refused the token (log in again).
            RelayUnreachable, TlsPinMismatch: the relay cannot be reached safely.
            SessionRefused: the relay refused the nameplate (ticket closed, hours, limits).
            TimeoutError: no nameplate within `timeout`.
        """
        if self._ws is not None:
            raise ConsoleError("this session is already open")
        self._ws = await self._connect(timeout)
        self._tasks = [asyncio.create_task(self._run(), name="console-link")]
        self._flush()
        try:
            await self.wait_for(lambda: self.code is not None, timeout)
        except SessionClosed:
            error = self.relay_error
            await self.close()
            if error is not None and error.code is RelayErrorCode.UNAUTHORIZED:
                raise NotLoggedIn(401, "unauthorized", error.message) from None
            if error is not None:
                raise SessionRefused(error.message, error.code.name, error.retry_after) from None
            raise SessionRefused(self._ended_text()) from None
        except TimeoutError:
            await self.close()
            raise
        assert self.code is not None
        return self.code

    # ------------------------------------------------------------------ actions

    def request_control(self) -> None:
        """Ask the user for mouse and keyboard (a new prompt on their screen).

        Raises:
            InputNotAllowed: only from view-only; SessionClosed after the end.
        """
        self._send_request(lambda: self.conn.request_rights(Rights.CONTROL))

    def request_view_only(self) -> None:
        """Give up control at once and keep watching.

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self._send_request(lambda: self.conn.request_rights(Rights.VIEW))

    def hand_back(self) -> None:
        """Hand the keyboard to the user: the screen is hidden until they click Done.

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self._send_request(self.conn.request_hand_back)

    def select_monitor(self, index: int) -> None:
        """Show another of the PC's monitors.

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self._send_request(lambda: self.conn.send(SelectMonitor(index=index)))

    def pointer_move(self, x: int, y: int) -> None:
        """Move the remote pointer (selected monitor's pixels). Raises InputNotAllowed."""
        self.send_input(PointerMove(x=x, y=y))

    def pointer_button(self, button: MouseButton, down: bool, x: int, y: int) -> None:
        """Press or release a mouse button at the PC's pixel (x, y).

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self.send_input(PointerButton(button=button, down=down, x=x, y=y))

    def scroll(self, dx: int, dy: int, x: int, y: int) -> None:
        """Scroll by wheel notches (positive dy = away from the user, i.e. up).

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self.send_input(Scroll(dx=max(-120, min(120, dx)), dy=max(-120, min(120, dy)), x=x, y=y))

    def key(self, key: str, down: bool, modifiers: Modifiers = Modifiers.NONE) -> None:
        """A key down/up: one printable character or a `NAMED_KEYS` name.

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self.send_input(KeyEvent(key=key, down=down, modifiers=modifiers))

    def type_text(self, text: str) -> None:
        """Type text as the user's keyboard would (layout-independent).

        Raises:
            InputNotAllowed: not possible in this state.
            SessionClosed: the session has ended.
        """
        self.send_input(TypeText(text=text))

    def send_input(self, message: Message) -> None:
        """Send one input message if control is granted now.

        Raises:
            InputNotAllowed: no control now (view-only, hand-back, escalation pending).
            SessionClosed: the session has ended.
        """
        if not self.live:
            raise SessionClosed(self._ended_text())
        if not self.can_control:
            raise InputNotAllowed(f"No control now ({self._phase.value}).")
        self._send_request(lambda: self.conn.send(message))

    def end_soon(self, detail: str = "") -> None:
        """End the session now from synchronous code (a button); the close follows."""
        if not self.live:
            return
        self.conn.end(EndReason.CONSULTANT_ENDED, detail)
        self._after_protocol()

    async def end(self, detail: str = "", timeout: float = 5.0) -> None:
        """End the session (the user sees who ended it) and close the connection."""
        self.end_soon(detail)
        with contextlib.suppress(TimeoutError):
            await self.wait_closed(timeout)
        await self.close()

    async def close(self) -> None:
        """Close the WebSocket and stop the tasks; ends the session if it was live."""
        if self.live and self._ws is not None:
            self.end_soon("console closed")
        self._outgoing.put_nowait(None)
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        for task in self._tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), 2.0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        self._closed.set()

    # ------------------------------------------------------------------ the shell

    def _send_request(self, action: Callable[[], None]) -> None:
        if not self.live:
            raise SessionClosed(self._ended_text())
        try:
            action()
        except LocalProtocolError as exc:
            raise InputNotAllowed(f"Not possible now ({self._phase.value}): {exc}") from None
        self._after_protocol()

    async def _connect(self, timeout: float) -> aiohttp.ClientWebSocketResponse:
        """Open `/ws/console` with the bearer token; errors translated for the UI."""
        headers = self.api.auth_headers()
        try:
            return await asyncio.wait_for(
                self.api.http.ws_connect(
                    self.api.ws_url,
                    headers=headers,
                    ssl=self.api.ssl,
                    max_msg_size=MAX_ENVELOPE_SIZE,
                    autoping=True,
                ),
                timeout,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise NotLoggedIn(
                    401, "unauthorized", "Your login expired: log in again."
                ) from None
            raise SessionRefused(f"The relay refused the session ({exc.status}).") from None
        except aiohttp.ServerFingerprintMismatch as exc:
            raise TlsPinMismatch(self.api.tls_pin or "", exc.got.hex()) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RelayUnreachable(
                f"The relay at {self.api.url} does not answer ({exc})."
            ) from None

    async def _run(self) -> None:
        """Pump the link; when it drops in a keyed session, reconnect and resume."""
        try:
            while True:
                assert self._ws is not None
                await self._pump(self._ws)
                if not self.live:
                    return
                if not self.conn.link_lost():  # not resumable: the protocol ended it
                    self._after_protocol()
                    return
                self._drain_outgoing()  # unsent boxes are kept by the protocol for the resume
                self._after_protocol()  # LinkLost: the phase says "reconnecting"
                ws = await self._reconnect(self.conn.grace_seconds)
                if ws is None or not self.live:
                    if ws is not None:
                        await ws.close()
                    self._finish(
                        SessionEnded(
                            Party.RELAY,
                            EndReason.PEER_LOST,
                            f"the link to the relay dropped: {self._reconnect_error}",
                        )
                    )
                    return
                self._ws = ws
                self.conn.resume()
                self._flush()
        finally:
            self._link_lost = False
            if self._pinger is not None:
                self._pinger.cancel()  # it sleeps between pings: no reason to wait for it
            if self._ws is not None and not self._ws.closed:
                await self._ws.close()
            self._closed.set()

    async def _reconnect(self, grace: float) -> aiohttp.ClientWebSocketResponse | None:
        """Try to get a new link within `grace` seconds (backing off); None if not."""
        deadline = time.monotonic() + grace
        delay = RECONNECT_FIRST_DELAY_SECONDS
        self._reconnect_error = "no answer"
        while self.live and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)
            self.reconnect_attempts += 1
            try:
                return await self._connect(max(0.5, min(5.0, deadline - time.monotonic())))
            except NotLoggedIn as exc:
                self._reconnect_error = str(exc)
                return None  # a new token needs the consultant: the session cannot resume
            except ConsoleError as exc:
                self._reconnect_error = str(exc)
        return None

    def _drain_outgoing(self) -> None:
        while not self._outgoing.empty():
            self._outgoing.get_nowait()

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read `ws` until it closes while a writer task sends the queue in order."""
        writer = asyncio.create_task(self._write(ws), name="console-write")
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._receive(msg.data)
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    self._receive(msg.data.encode())  # not our wire: the decoder says why
                else:
                    break
        except (aiohttp.ClientError, OSError) as exc:
            log.info("console link error: %s", exc)
        finally:
            self.close_code = ws.close_code
            if self.live:
                writer.cancel()
            else:
                self._outgoing.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer, 5.0)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while (data := await self._outgoing.get()) is not None:
                await ws.send_bytes(data)
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            log.info("console send failed: %s", exc)
        finally:
            if not self.live and not ws.closed:
                await ws.close()  # the end is sent: closing also ends the reader

    def _receive(self, data: bytes) -> None:
        self.stats.received(len(data))
        if len(data) <= MAX_CONTROL_MESSAGE_SIZE and data[1:2] == bytes([_RELAY_ERROR_TAG]):
            # keep the relay's reason code (the connection keeps only its message)
            with contextlib.suppress(ProtocolError):
                message = decode_envelope(data)
                if isinstance(message, RelayError):
                    self.relay_error = message
        self.conn.receive_data(data)
        self._after_protocol()

    def _after_protocol(self) -> None:
        # acting on an event may add events (a bad frame ends the session): drain them all
        while events := self.conn.events_received():
            for event in events:
                try:
                    self._on_event(event)
                except BadFrame as exc:
                    self.conn.end(EndReason.PROTOCOL_ERROR, str(exc)[:256])
        self._flush()
        if not self.live:
            self._outgoing.put_nowait(None)  # the writer sends what is queued, then closes
        self._update_phase()
        self._wake_waiters()

    def _flush(self) -> None:
        for data in self.conn.data_to_send():
            self._outgoing.put_nowait(data)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Frame):
            self._on_frame(event)
        elif isinstance(event, CodeReady):
            self.code, self.expires_at = event.code, event.expires_at
        elif isinstance(event, PeerConnected):
            self._peer_connected = True
        elif isinstance(event, SessionIdAssigned):
            self.session_id = event.session_id
        elif isinstance(event, LinkLost):
            self._link_lost = True
        elif isinstance(event, PeerAwayEvent):
            self.peer_away = True
        elif isinstance(event, LinkRestored):
            self._link_lost = self.peer_away = False
            self.resumed += 1
        elif isinstance(event, Keyed):
            self._start_pinging()
        elif isinstance(event, ConsentPending):
            self.consent_timeout = event.timeout_seconds
            self._emit(ConsentAsked(event.timeout_seconds))
        elif isinstance(event, ConsentDenied):
            if self.live and self.conn.session.live:
                self._emit(ControlDenied())
        elif isinstance(event, Cursor):
            self.cursor = event
            if event.shape is not None:
                self.cursor_shape = event.shape
            self._emit(CursorChanged(event))
        elif isinstance(event, MonitorLayout):
            self.layout = event
            self._emit(LayoutChanged(event))
        elif isinstance(event, Notice):
            self._on_notice(event)
        elif isinstance(event, HandBackStarted):
            self.hand_back_by = event.by
        elif isinstance(event, HandBackEnded):
            self.hand_back_by = None
        elif isinstance(event, Pong):
            self.stats.rtt_ms = (time.monotonic_ns() - event.sent_at_ns) / 1e6
        elif isinstance(event, SessionEnded):
            self._finish(event)
        elif isinstance(event, Dropped):
            log.debug("dropped %s in %s (a race)", type(event.message).__name__, event.state)
        elif isinstance(event, ClipboardText):
            pass  # clipboard sync is not offered by the console
        else:
            log.debug("unhandled event %r", event)

    def _on_frame(self, frame: Frame) -> None:
        rect = self.framebuffer.apply(frame)
        if not frame.final:
            return
        self.last_frame_id = frame.frame_id
        self.last_captured_at_ns = frame.captured_at_ns
        self.stats.frame("+".join(sorted(e.name for e in self.framebuffer.encodings)))
        # acknowledge once applied: the agent's pacing window opens by one
        with contextlib.suppress(LocalProtocolError):
            self.conn.ack(frame.frame_id)
        self._emit(FrameApplied(frame.frame_id, rect))

    def _on_notice(self, notice: Notice) -> None:
        self.notice = notice
        if notice.code is NoticeCode.SECURE_DESKTOP:
            self.secure_desktop = True
        elif notice.code is NoticeCode.INPUT_PAUSED:
            self.input_paused = True
        elif notice.code is NoticeCode.INPUT_RESUMED:
            self.input_paused = False
            self.secure_desktop = False
        self._emit(NoticeReceived(notice))

    def _start_pinging(self) -> None:
        if self._ping_interval > 0:
            self._pinger = asyncio.create_task(self._ping_loop(), name="console-ping")

    async def _ping_loop(self) -> None:
        while self.live:
            try:
                self.conn.ping(secrets.randbits(63))
            except LocalProtocolError:
                return
            self._flush()
            await asyncio.sleep(self._ping_interval)

    def _finish(self, ended: SessionEnded) -> None:
        if self.ended is not None:
            return
        self.ended = ended
        self._update_phase()
        self._emit(SessionFinished(ended))

    def _update_phase(self) -> None:
        phase = self._compute_phase()
        if phase is not self._phase:
            self._phase = phase
            self._emit(PhaseChanged(phase, self.conn.state))

    def _compute_phase(self) -> Phase:
        state = self.conn.state
        if self.ended is not None or state in (State.ENDED, State.FAILED):
            return Phase.ENDED
        if self._link_lost:
            return Phase.RECONNECTING
        if state is State.PAIRING:
            if self.code is None:
                return Phase.CONNECTING
            return Phase.PAIRING if self._peer_connected else Phase.WAITING_FOR_USER
        return {
            State.KEYED: Phase.WAITING_FOR_CONSENT,
            State.REQUESTED: Phase.WAITING_FOR_CONSENT,
            State.CONSENT_PENDING: Phase.WAITING_FOR_CONSENT,
            State.VIEWING: Phase.VIEWING,
            State.CONTROLLING: Phase.CONTROLLING,
            State.ESCALATING: Phase.ESCALATING,
            State.HAND_BACK_VIEWING: Phase.HAND_BACK,
            State.HAND_BACK_CONTROLLING: Phase.HAND_BACK,
        }[state]

    def _emit(self, update: Update) -> None:
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # a UI bug must not take the session down; it is logged loudly
                log.exception("console listener failed on %s", type(update).__name__)

    def _wake_waiters(self) -> None:
        for predicate, future in list(self._waiters):
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            elif not self.live:
                future.set_exception(SessionClosed(self._ended_text()))

    def _ended_text(self) -> str:
        return describe_end(self.ended) if self.ended else "the session is not open"


def describe_end(ended: SessionEnded) -> str:
    """A sentence for the consultant: who ended the session and why."""
    who = {
        Party.AGENT: "the user",
        Party.CONSOLE: "you",
        Party.RELAY: "the relay",
    }[ended.by]
    reasons = {
        EndReason.USER_ENDED: "The user ended the session.",
        EndReason.CONSULTANT_ENDED: "You ended the session.",
        EndReason.DENIED: "The user did not allow the session.",
        EndReason.PROTOCOL_ERROR: f"The session failed ({who}): a protocol error.",
        EndReason.PEER_LOST: "The connection was lost.",
        EndReason.WRONG_CODE: "The user typed a wrong code: read a new code.",
        EndReason.AGENT_SHUTDOWN: "The user's PC is shutting down or logging off.",
        EndReason.RELAY_REFUSED: "The relay ended the session.",
    }
    text = reasons[ended.reason]
    if ended.reason is EndReason.DENIED and ended.detail.lower() == "timeout":
        text = "Nobody answered the prompt on the user's screen: the session was not allowed."
    if ended.detail and ended.reason is not EndReason.DENIED:
        text += f" ({ended.detail})"
    return text
