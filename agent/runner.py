"""The session engine: one session, from the user's click to its end (issue 4).

`SessionRunner` is the agent's shell around `protocol.connection.AgentConnection`
(STYLE §2): it is the one place that receives from the relay, feeds the
protocol, sends what the protocol returns and acts on its events. What the
session may do is never decided here but read from the protocol's table
(`conn.state`): after every event and every local action, `_apply_state()`
makes the world match it:

* screen allowed (VIEWING, CONTROLLING, ESCALATING) ⇔ a stream task with a
  `ScreenCapture` exists;
* CONTROLLING ⇔ an `Injector` exists (created on *Allow control*, closed —
  keys released — the moment control ends).

Nothing touches the network before `start()` (the user's click), and nothing
touches the display before the user's *Allow*.

Threads: the runner owns one thread running an asyncio loop. The front end
(`agent.frontend.SessionUI`) is called on that thread; the front end calls the
runner's public methods (`end`, `hand_back`, ...) from any thread. Capture and
encoding run on a one-thread executor; input on the injector's thread.

Resume: when the agent's link drops, the engine reconnects (backing off) and
resumes the same consented session with the same keys, without a new click, if it
gets back within the grace period (`protocol.limits.RESUME_GRACE_SECONDS`); the
protocol resends what was lost. Meanwhile input is paused (held keys released)
and at most the ack window's frames wait in the retransmit buffer. After the grace
period the session ends (PEER_LOST): a new code and a new *Allow* are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.config import AgentConfig
from agent.frontend import ConsentAnswer, Phase, SessionOutcome, SessionUI
from agent.h264 import video_encoder_for
from agent.hotkey import END_HOTKEY, EndHotkey
from agent.inject import Injector
from agent.pacing import DEFAULT_FRAME_WINDOW, DEFAULT_MAX_FPS, FramePacer
from agent.platform import default_platform
from agent.platform.base import LOOK_NOW, MonitorInfo, Platform, PlatformError, ScreenCapture
from agent.screen import (
    DEFAULT_JPEG_QUALITY,
    QUIET_INTERVAL,
    STILL_INTERVAL,
    TILE,
    VIDEO_INTERVAL,
    FrameEncoder,
    Rect,
    StreamEncoder,
    frame_parts,
)
from agent.transport import TlsPinMismatch, open_link
from protocol.codec import decode_envelope
from protocol.codes import PhoneCode
from protocol.connection import (
    AgentConnection,
    ConsentRequested,
    Dropped,
    EscalationRequested,
    Keyed,
    LinkLost,
    LinkRestored,
    NameplateClaimed,
    PeerAwayEvent,
    PeerConnected,
    SessionEnded,
    SessionIdAssigned,
)
from protocol.errors import AttestationError, LocalProtocolError, ProtocolError
from protocol.limits import CONSENT_TIMEOUT_SECONDS
from protocol.messages import (
    INPUT_MESSAGES,
    AuditReport,
    ClipboardText,
    Cursor,
    DenyReason,
    EndReason,
    Frame,
    FrameAck,
    HandBackRequest,
    Message,
    MonitorLayout,
    Notice,
    NoticeCode,
    Party,
    Pong,
    Rights,
    SelectMonitor,
)
from protocol.session import State

log = logging.getLogger(__name__)

SCREEN_RETRY_SECONDS = 1.0
"""How long to wait after the screen could not be read (secure desktop, a mode
change) before trying again; the consultant gets one notice, not one per frame."""

OVERFLOW_NOTICE_SECONDS = 2.0
"""At most one "input dropped" notice to the consultant per this many seconds."""

STILL_CHECK_SECONDS = 1.0
"""A still screen whose platform wakes the agent (X DAMAGE and XInput 2) is still
looked at once a second: a safety net that costs nothing measurable."""

RECONNECT_FIRST_DELAY = 0.25
RECONNECT_MAX_DELAY = 4.0
"""Reconnect attempts back off from a quarter second to 4 s: quick after a blip,
without hammering a relay that is restarting (its claim rate limit counts these)."""

CLOSE_TIMEOUT = 2.0
"""Seconds to flush the final End and receipts before dropping the link anyway."""

_NOTICE_STATES = (State.VIEWING, State.CONTROLLING, State.ESCALATING)
_HAND_BACK_STATES = (State.HAND_BACK_VIEWING, State.HAND_BACK_CONTROLLING)
_CONSENTED = (State.VIEWING, State.CONTROLLING, State.ESCALATING, *_HAND_BACK_STATES)
_PHASES = {
    State.PAIRING: Phase.VERIFYING,
    State.KEYED: Phase.VERIFYING,
    State.REQUESTED: Phase.VERIFYING,
    State.CONSENT_PENDING: Phase.ASKING,
    State.VIEWING: Phase.VIEWING,
    State.CONTROLLING: Phase.CONTROLLING,
    State.ESCALATING: Phase.ESCALATING,
    State.HAND_BACK_VIEWING: Phase.HAND_BACK,
    State.HAND_BACK_CONTROLLING: Phase.HAND_BACK,
    State.ENDED: Phase.ENDING,
    State.FAILED: Phase.ENDING,
}


@dataclass
class SessionStats:
    """Counters a front end may show and tests read; updated on the engine thread."""

    frames_sent: int = 0
    frame_bytes_sent: int = 0
    input_refused: int = 0  # input the table dropped, or that arrived while paused
    screen_errors: int = 0


def describe_end(ended: SessionEnded) -> str:
    """A sentence for the user about why the session ended."""
    reason, by = ended.reason, ended.by
    if reason is EndReason.USER_ENDED and by is Party.AGENT:
        return "You ended the session."
    if reason is EndReason.CONSULTANT_ENDED or (
        reason is EndReason.USER_ENDED and by is Party.CONSOLE
    ):
        return "The consultant ended the session."
    if reason is EndReason.DENIED:
        if isinstance(ended.error, AttestationError):
            return (
                "The request could not be verified as coming from your helpdesk, so it was "
                "refused. Nothing was shared."
            )
        if ended.detail == DenyReason.TIMEOUT.name.lower():
            return "Nobody answered the prompt in time, so the session was refused."
        if by is Party.AGENT:
            return "You refused the session. Nothing was shared."
        return "The session was refused."
    if reason is EndReason.WRONG_CODE:
        return "The code did not match. Ask the consultant for a new code."
    if reason is EndReason.RELAY_REFUSED:
        return f"The helpdesk server refused the session: {ended.detail}"
    if reason is EndReason.PEER_LOST:
        return "The connection was lost, so the session has ended. Nothing is shared any more."
    if reason is EndReason.AGENT_SHUTDOWN:
        return "The session ended because this computer is shutting down or logging off."
    return "The session was ended because of a communication error."


class SessionRunner:
    """Runs one session on its own thread. Construct on the user's click, then `start()`."""

    def __init__(
        self,
        config: AgentConfig,
        code: PhoneCode,
        ui: SessionUI,
        *,
        platform: Platform | None = None,
        consent_timeout: float = CONSENT_TIMEOUT_SECONDS,
        frame_window: int = DEFAULT_FRAME_WINDOW,
        max_fps: float = DEFAULT_MAX_FPS,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        end_hotkey: str | None = END_HOTKEY,
        resume_grace: float | None = None,
        video: bool = True,
    ) -> None:
        self.config, self.code, self.ui = config, code, ui
        self._platform = platform
        self.consent_timeout = consent_timeout
        self._pacer = FramePacer(window=frame_window, max_fps=max_fps)
        self._encoder = FrameEncoder(jpeg_quality)
        self._video = video  # H.264 for full-screen motion (`agent.h264`; config: which encoder)
        self.stats = SessionStats()
        # benchmarks only: called on the capture thread with (frame_id, BGRA pixels) of
        # every frame that is sent; the pixels are reused, copy them to keep them
        self.on_capture: Callable[[int, npt.NDArray[np.uint8]], None] | None = None
        self.outcome: SessionOutcome | None = None
        self.session_id: str | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # guards _loop and _pending across threads
        self._pending: list[Callable[[], None]] = []  # front-end calls made before the loop ran
        # engine-thread state
        self._conn: AgentConnection | None = None
        self._ws: ClientConnection | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._send_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._prompt_task: asyncio.Task[None] | None = None
        self._hand_back_task: asyncio.Task[None] | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._ack_event: asyncio.Event | None = None
        self._input_event: asyncio.Event | None = None
        self._injector: Injector | None = None
        self._end_hotkey = end_hotkey
        self._resume_grace = resume_grace  # None: the protocol's RESUME_GRACE_SECONDS
        self._hotkey: EndHotkey | None = None
        self._own_windows: set[str] = set()
        self._link_down = False  # our link or the consultant's is away: input paused
        self._relinking = False  # our own link is away: nothing but Resume may be sent
        self._receipts_waiting: list[bytes] = []
        self._monitor: MonitorInfo | None = None
        self._selected: int | None = None
        self._frame_id = 0
        self._phase: Phase | None = None
        self._ended: SessionEnded | None = None
        self._cancel_reason = EndReason.USER_ENDED

    # ------------------------------------------------------------ front-end side

    def start(self) -> None:
        """Open the session on a new thread. Call once, on the user's click.

        Raises:
            RuntimeError: called twice.
        """
        if self._thread is not None:
            raise RuntimeError("a SessionRunner runs one session; make a new one")
        self._thread = threading.Thread(target=self.run, name="zgoda-session")
        self._thread.start()

    def run(self) -> SessionOutcome:
        """Run the session in the calling thread until it ends; return how it ended."""
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()
        assert self.outcome is not None
        return self.outcome

    def wait(self, timeout: float | None = None) -> SessionOutcome | None:
        """Block until the session ended (None on timeout); joins the thread."""
        if not self._done.wait(timeout):
            return None
        if self._thread is not None:
            self._thread.join()
        return self.outcome

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def end(self, reason: EndReason = EndReason.USER_ENDED) -> None:
        """End the session at once. Thread-safe.

        USER_ENDED: the user's button, tray item or hotkey; AGENT_SHUTDOWN: the front
        end is exiting (logoff, shutdown, quit).
        """
        self._call(lambda: self._end_by_user(reason))

    def hand_back(self) -> None:
        """The user takes the keyboard back on their own (e.g. to type a password)."""
        self._call(self._hand_back_by_user)

    def withdraw_control(self) -> None:
        """The user takes mouse and keyboard away; the consultant keeps watching."""
        self._call(self._withdraw_control)

    def set_own_window(self, name: str, visible: bool) -> None:
        """A front-end window is shown/hidden: consultant input waits while any is shown."""
        self._call(lambda: self._set_own_window(name, visible))

    def _call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._loop is None:
                self._pending.append(fn)
                return
            loop = self._loop
        with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
            loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------ the loop

    async def _main(self) -> None:
        self._main_task = asyncio.current_task()
        self._send_lock = asyncio.Lock()
        self._ack_event = asyncio.Event()
        self._input_event = asyncio.Event()  # consultant input: a quiet screen is looked at now
        self._overflow_told = 0  # injector overflows the consultant was told about
        self._overflow_notice_at = -OVERFLOW_NOTICE_SECONDS
        with self._lock:
            self._loop = asyncio.get_running_loop()
            pending, self._pending = self._pending, []
        try:
            for fn in pending:
                fn()
            if self._ended is None:
                await self._session()
        except asyncio.CancelledError:
            if self._ended is None:  # ended before the relay answered
                self._finish(SessionEnded(Party.AGENT, self._cancel_reason, "ended before pairing"))
        finally:
            self._stop_everything()
            await self._cancel_tasks()
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)
            if self._ended is None:
                self._finish(
                    SessionEnded(Party.AGENT, EndReason.AGENT_SHUTDOWN, "the engine stopped")
                )
            with self._lock:
                self._loop = None
            self._report_end()

    async def _session(self) -> None:
        self._status(Phase.CONNECTING, self.config.relay_url)
        try:
            self._ws = await open_link(self.config)
        except TlsPinMismatch as exc:
            self._finish(SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, str(exc)))
            return
        except ssl.SSLCertVerificationError as exc:
            log.info("relay certificate refused: %r", exc)
            self._finish(
                SessionEnded(
                    Party.RELAY,
                    EndReason.RELAY_REFUSED,
                    f"its certificate is not trusted ({exc.verify_message}); ask your IT team",
                )
            )
            return
        except (OSError, TimeoutError, InvalidURI, InvalidHandshake) as exc:
            log.info("cannot reach the relay: %r", exc)
            self._finish(
                SessionEnded(
                    Party.RELAY,
                    EndReason.RELAY_REFUSED,
                    "it cannot be reached; check the network and try again",
                )
            )
            return
        self._conn = AgentConnection(
            code=self.code,
            relay_key=self.config.relay_public_key,
            org=self.config.org_name,
            consent_timeout=self.consent_timeout,
        )
        if self._resume_grace is not None:
            self._conn.grace_seconds = self._resume_grace
        while True:
            await self._flush()  # first ClaimNameplate (the first byte ever sent), or Resume
            await self._receive()
            if self._ended is not None or not await self._reconnect():
                return

    async def _receive(self) -> None:
        """Feed the relay's messages to the protocol until the link closes or the end."""
        assert self._conn is not None and self._ws is not None
        try:
            async for data in self._ws:
                self._conn.receive_data(data if isinstance(data, bytes) else data.encode())
                self._dispatch()
                await self._flush()
                if self._ended is not None:
                    return
        except ConnectionClosed:
            pass

    async def _reconnect(self) -> bool:
        """The link dropped: get a new one and resume within the grace period, or end."""
        conn = self._conn
        assert conn is not None
        if not conn.link_lost():  # not keyed yet, or the relay offers no resume
            self._dispatch()
            if self._ended is None:
                self._finish(
                    SessionEnded(Party.RELAY, EndReason.PEER_LOST, "the link to the relay was lost")
                )
            return False
        self._dispatch()  # LinkLost: input paused, the user sees "reconnecting"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + conn.grace_seconds
        delay = RECONNECT_FIRST_DELAY
        while self._ended is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
            try:
                ws = await asyncio.wait_for(open_link(self.config), max(remaining, 0.1))
            except TlsPinMismatch as exc:  # someone else answers at the relay's address
                conn.end(EndReason.PEER_LOST, "the relay's certificate changed")
                self._finish(SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, str(exc)))
                return False
            except (OSError, TimeoutError, InvalidURI, InvalidHandshake) as exc:
                log.info("reconnect failed: %r", exc)
                continue
            if self._ended is not None:  # the user ended it meanwhile
                await ws.close()
                return False
            self._ws = ws
            conn.resume()
            return True
        if self._ended is None:
            conn.end(EndReason.PEER_LOST, "the link did not come back in time")
            self._dispatch()
        return False

    async def _flush(self) -> None:
        """Send everything the protocol queued, in order (sealed counters must not reorder)."""
        conn, ws, lock = self._conn, self._ws, self._send_lock
        if conn is None or ws is None or lock is None:
            return
        async with lock:
            while True:
                data = conn.data_to_send()
                if self._receipts_waiting and not self._relinking:
                    data += self._receipts_waiting
                    self._receipts_waiting = []
                if not data:
                    break
                for index, item in enumerate(data):
                    try:
                        await ws.send(item)
                    except ConnectionClosed:
                        # Sealed boxes are kept by the protocol for a resume; consent
                        # receipts are not, so they wait here for the next link.
                        self._receipts_waiting += [d for d in data[index:] if _is_receipt(d)]
                        return  # the receive loop sees the close
        if self._ended is not None and self._main_task is not None:
            # The End and its receipt are out: close, which ends the receive loop.
            self._spawn(self._close_link())

    async def _close_link(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("engine task failed", exc_info=exc)
            # A failed task must not leave the session half-running: end it.
            if self._conn is not None and self._ended is None:
                self._conn.end(EndReason.PROTOCOL_ERROR, "agent internal error")
                self._after_local()

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _after_local(self) -> None:
        """After a local action: act on its events, send what it queued."""
        self._dispatch()
        if self._loop is not None and self._send_lock is not None:
            self._spawn(self._flush())

    # ------------------------------------------------------------ events

    def _dispatch(self) -> None:
        conn = self._conn
        if conn is None:
            return
        for event in conn.events_received():
            if isinstance(event, SessionEnded):
                self._finish(event)
            elif isinstance(event, NameplateClaimed):
                self._status(Phase.WAITING_FOR_CONSULTANT)
            elif isinstance(event, PeerConnected | Keyed):
                self._status(Phase.VERIFYING)
            elif isinstance(event, SessionIdAssigned):
                self.session_id = event.session_id
                if self._resume_grace is not None:  # the relay just told its own grace
                    conn.grace_seconds = self._resume_grace
            elif isinstance(event, ConsentRequested):
                self._prompt_task = self._spawn(self._ask_consent(event))
            elif isinstance(event, EscalationRequested):
                self._prompt_task = self._spawn(self._ask_escalation(event.rights))
            elif isinstance(event, HandBackRequest):
                self._begin_hand_back(Party.CONSOLE)  # the connection already started it
            elif isinstance(event, FrameAck):
                if self._pacer.acked(event.frame_id) and self._ack_event is not None:
                    self._ack_event.set()
            elif isinstance(event, SelectMonitor):
                self._select_monitor(event.index)
            elif isinstance(event, INPUT_MESSAGES):
                self._inject(event)
            elif isinstance(event, Dropped):
                if isinstance(event.message, INPUT_MESSAGES):
                    self.stats.input_refused += 1
            elif isinstance(event, ClipboardText):
                log.info("clipboard from the consultant ignored: not supported yet")
            elif isinstance(event, LinkLost | PeerAwayEvent):
                self._link_down = True
                self._relinking = self._relinking or isinstance(event, LinkLost)
                self._set_own_window("link", True)  # pauses input, releases held keys
                self._status(Phase.RECONNECTING)
            elif isinstance(event, LinkRestored):
                self._link_down = self._relinking = False
                self._set_own_window("link", False)
            elif isinstance(event, Pong):
                pass
            else:
                log.debug("ignored event %r", type(event).__name__)
        self._apply_state()

    def _apply_state(self) -> None:
        """Make capture and injection match what the table says now."""
        conn = self._conn
        if self._ended is not None or conn is None or not conn.session.live:
            self._stop_everything()
            return
        if conn.session.screen_allowed:
            if self._stream_task is None:
                self._stream_task = self._spawn(self._stream())
        else:
            self._stop_stream()
        if conn.session.input_allowed:
            if self._injector is None:
                self._open_injector()
        else:
            self._close_injector()
        if conn.state in _CONSENTED and self._hotkey is None and self._end_hotkey:
            self._open_hotkey(self._end_hotkey)
        self._status(Phase.RECONNECTING if self._link_down else _PHASES[conn.state])

    def _finish(self, ended: SessionEnded) -> None:
        """The session is over: stop capture and injection at once, remember why."""
        if self._ended is not None:
            return
        self._ended = ended
        self._stop_everything()
        for task in (self._prompt_task, self._hand_back_task):
            if task is not None:
                task.cancel()
        self.outcome = SessionOutcome(
            by=ended.by,
            reason=ended.reason,
            message=describe_end(ended),
            detail=ended.detail,
            session_id=self.session_id,
            relay_code=ended.relay_code,
        )
        self._status(Phase.ENDING)

    def _stop_everything(self) -> None:
        self._stop_stream()
        self._close_injector()
        hotkey, self._hotkey = self._hotkey, None
        if hotkey is not None:
            hotkey.close()

    def _report_end(self) -> None:
        assert self.outcome is not None
        try:
            self.ui.session_ended(self.outcome)
        except Exception:
            log.exception("the front end failed to show the end of the session")

    def _status(self, phase: Phase, detail: str = "") -> None:
        if phase is self._phase and not detail:
            return
        self._phase = phase
        try:
            self.ui.status(phase, detail)
        except Exception:
            log.exception("the front end failed to show the status")

    # ------------------------------------------------------------ the user's answers

    async def _ask_consent(self, event: ConsentRequested) -> None:
        conn = self._conn
        assert conn is not None
        requested = event.request.rights
        self._set_own_window("consent", True)
        answer: ConsentAnswer | None = None
        try:
            answer = await asyncio.wait_for(
                self.ui.ask_consent(event.request, event.attestation, requested),
                timeout=event.timeout_seconds,
            )
        except TimeoutError:
            answer = None
        except Exception:
            log.exception("the consent prompt failed; denying")
            answer = ConsentAnswer.DENY
        finally:
            self._set_own_window("consent", False)
        if conn.state is not State.CONSENT_PENDING:
            return  # ended meanwhile
        if answer is None:
            conn.deny(DenyReason.TIMEOUT)  # never an implicit yes
        elif answer is ConsentAnswer.DENY:
            conn.deny(DenyReason.USER_DENIED)
        elif answer is ConsentAnswer.ALLOW_CONTROL and requested is Rights.CONTROL:
            conn.grant(Rights.CONTROL)
        else:
            conn.grant(Rights.VIEW)  # a grant never exceeds the request
        self._after_local()

    async def _ask_escalation(self, rights: Rights) -> None:
        conn = self._conn
        assert conn is not None and conn.attestation is not None
        self._set_own_window("escalation", True)
        allowed: bool | None = None
        try:
            allowed = await asyncio.wait_for(
                self.ui.ask_escalation(conn.attestation, rights), timeout=self.consent_timeout
            )
        except TimeoutError:
            allowed = None
        except Exception:
            log.exception("the escalation prompt failed; denying")
            allowed = False
        finally:
            self._set_own_window("escalation", False)
        if conn.state is not State.ESCALATING:
            return  # a hand-back or the end cancelled the question
        if allowed:
            conn.grant(rights)
        else:
            conn.deny(DenyReason.USER_DENIED if allowed is False else DenyReason.TIMEOUT)
        self._after_local()

    def _begin_hand_back(self, by: Party) -> None:
        if self._prompt_task is not None:
            self._prompt_task.cancel()  # an escalation prompt makes no sense now
        self._apply_state()  # stops frames and injection before anything else
        if self._hand_back_task is None or self._hand_back_task.done():
            self._hand_back_task = self._spawn(self._wait_for_done(by))

    async def _wait_for_done(self, by: Party) -> None:
        conn = self._conn
        assert conn is not None
        self._set_own_window("hand-back", True)
        try:
            await self.ui.show_hand_back(by)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the hand-back banner failed; ending the session")
            if conn.session.live:
                conn.end(EndReason.USER_ENDED, "the hand-back banner failed")
                self._after_local()
            return
        finally:
            self._set_own_window("hand-back", False)
        if conn.state in _HAND_BACK_STATES:  # only the user's Done leaves the mode
            conn.end_hand_back()
            self._after_local()

    def _end_by_user(self, reason: EndReason) -> None:
        detail = "the user ended the session" if reason is EndReason.USER_ENDED else "shutdown"
        conn = self._conn
        if conn is None or self._ws is None:
            self._cancel_reason = reason
            if self._main_task is not None and self._ended is None:
                self._main_task.cancel()
            elif self._ended is None:
                self._finish(SessionEnded(Party.AGENT, reason, detail))
            return
        conn.end(reason, detail)
        self._after_local()
        if self._relinking and self._main_task is not None:
            # Reconnecting: nothing can reach the relay, and a connect attempt may hang
            # for seconds; stop it so the user hears of the end now.
            self._main_task.cancel()

    def _hand_back_by_user(self) -> None:
        conn = self._conn
        if conn is None or conn.state not in (State.VIEWING, State.CONTROLLING, State.ESCALATING):
            return
        conn.start_hand_back(Party.AGENT)
        self._begin_hand_back(Party.AGENT)
        self._after_local()

    def _withdraw_control(self) -> None:
        conn = self._conn
        if conn is not None and conn.state is State.CONTROLLING:
            conn.reduce_to_view()
            self._after_local()

    def _set_own_window(self, name: str, visible: bool) -> None:
        before = bool(self._own_windows)
        if visible:
            self._own_windows.add(name)
        else:
            self._own_windows.discard(name)
        after = bool(self._own_windows)
        if before == after:
            return
        if self._injector is not None:
            if after:
                self._injector.pause()
            else:
                self._injector.resume()
        conn = self._conn
        notify = name != "link" and not self._link_down  # the consultant knows the link dropped
        if conn is not None and self._ended is None and conn.state in _NOTICE_STATES and notify:
            if after:
                notice = Notice(
                    code=NoticeCode.INPUT_PAUSED,
                    text="A zgoda window is open on the user's screen; your input waits.",
                )
            else:
                notice = Notice(code=NoticeCode.INPUT_RESUMED, text="")
            self._send(notice)

    def _send(self, message: Message) -> None:
        conn = self._conn
        if conn is None or self._ended is not None:
            return
        try:
            conn.send(message)
        except LocalProtocolError as exc:  # a race with a state change: not sent
            log.debug("not sent: %s", exc)
            return
        self._after_local()

    # ------------------------------------------------------------ input

    def _platform_or_default(self) -> Platform:
        if self._platform is None:
            self._platform = default_platform()
        return self._platform

    def _open_injector(self) -> None:
        try:
            backend = self._platform_or_default().open_input()
        except PlatformError as exc:
            log.warning("input injection unavailable: %s", exc)
            self._send(Notice(code=NoticeCode.INFO, text=f"Input cannot be injected: {exc}"))
            return
        self._injector = Injector(backend, on_blocked=self._input_blocked)
        if self._own_windows:
            self._injector.pause()

    def _open_hotkey(self, combination: str) -> None:
        try:
            self._hotkey = EndHotkey(combination, lambda: self.end(EndReason.USER_ENDED))
        except PlatformError as exc:
            self._end_hotkey = None  # do not retry on every event
            log.warning("the end-session hotkey is unavailable: %s", exc)

    def _input_blocked(self, reason: str | None) -> None:
        """From the injector thread: input stopped (or started again) reaching the window."""
        if reason is not None:
            notice = Notice(code=NoticeCode.ELEVATED_WINDOW, text=reason)
        else:
            notice = Notice(code=NoticeCode.INPUT_RESUMED, text="Input reaches the PC again.")
        self._call(lambda: self._send(notice))

    def _close_injector(self) -> None:
        injector, self._injector = self._injector, None
        self._overflow_told = 0  # the next injector counts from zero
        if injector is not None:
            injector.close()  # releases held keys and buttons before returning

    def _inject(self, message: Message) -> None:
        if self._input_event is not None:
            self._input_event.set()
        injector = self._injector
        if injector is None or not injector.submit(message, self._monitor):
            self.stats.input_refused += 1
            if injector is not None and injector.overflowed > self._overflow_told:
                self._tell_overflow(injector.overflowed)

    def _tell_overflow(self, overflowed: int) -> None:
        """Tell the consultant that input is being dropped (a flood), at most every
        OVERFLOW_NOTICE_SECONDS: what they sent did not all reach the PC."""
        now = time.monotonic()
        if now - self._overflow_notice_at < OVERFLOW_NOTICE_SECONDS:
            return
        dropped, self._overflow_told = overflowed - self._overflow_told, overflowed
        self._overflow_notice_at = now
        self._send(
            Notice(
                code=NoticeCode.INFO,
                text=f"Input arrives faster than the PC can take it: {dropped} events "
                "were dropped. Wait a moment before typing on.",
            )
        )

    # ------------------------------------------------------------ the screen

    def _stop_stream(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None:
            task.cancel()
        self._pacer.reset()
        self._monitor = None

    def _select_monitor(self, index: int) -> None:
        if index == self._selected:
            return
        self._selected = index
        self._stop_stream()
        self._apply_state()

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zgoda-capture")
        capture: ScreenCapture | None = None
        opening = pool.submit(self._platform_or_default().open_capture)
        try:
            try:
                capture = await asyncio.wrap_future(opening)
                monitors = await loop.run_in_executor(pool, capture.monitors)
            except PlatformError as exc:
                log.warning("screen capture unavailable: %s", exc)
                self._send(Notice(code=NoticeCode.INFO, text=f"The screen cannot be read: {exc}"))
                return
            monitor = self._choose_monitor(monitors)
            self._monitor = monitor
            self._send(
                MonitorLayout(
                    monitors=tuple(m.to_message() for m in monitors), selected=monitor.index
                )
            )
            await self._stream_monitor(loop, pool, capture, monitor)
        finally:
            if capture is not None:
                pool.submit(capture.close)  # after any grab still running in the pool
            else:  # cancelled while the display was being opened: close it once open
                opening.add_done_callback(_close_if_opened)
            pool.shutdown(wait=False)

    def _choose_monitor(self, monitors: list[MonitorInfo]) -> MonitorInfo:
        by_index = {m.index: m for m in monitors}
        if self._selected in by_index:
            return by_index[self._selected]
        if self._selected is not None:
            self._send(Notice(code=NoticeCode.INFO, text=f"There is no monitor {self._selected}."))
        singles = [m for m in monitors if m.index > 0] or monitors
        chosen = next((m for m in singles if m.primary), singles[0])
        self._selected = chosen.index
        return chosen

    async def _stream_monitor(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: ThreadPoolExecutor,
        capture: ScreenCapture,
        monitor: MonitorInfo,
    ) -> None:
        assert self._ack_event is not None
        video = None
        if self._video:  # probing a GPU's encoder takes ~0.3 s: off the loop
            choose = partial(
                video_encoder_for, monitor.width, monitor.height, self.config.video_encoder
            )
            video = await loop.run_in_executor(pool, choose)
        stream = StreamEncoder(monitor.width, monitor.height, self._encoder, video=video)
        cursor_serial: int | None = None
        last_cursor: tuple[int, int, bool] | None = None
        screen_failing = False
        while True:
            while not self._pacer.window_open():
                self._ack_event.clear()
                await self._ack_event.wait()
            # H.264 frames at most at the video rate (the encoder is the costly part);
            # tiles (typing, scrolling, a pointer) up to the pacer's cap, or 60 a
            # second where every look is a grab and a compare (`look_interval`)
            delay = self._pacer.delay(look_interval(stream))
            if stream.quiet and not stream.damage_known and self._input_event is not None:
                # a still screen is looked at less often (idle CPU), unless the
                # consultant's input is about to change it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._input_event.wait(), max(delay, self._pacer.delay(QUIET_INTERVAL))
                    )
            elif stream.damage_known and stream.exact and not stream.needs_grab:
                # drawing is reported and the console's picture is exact: nothing to do
                # until something is drawn (or the pointer moves); wait, do not look
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._wait_still(capture, self._pacer.delay(STILL_INTERVAL))
            elif delay > 0:
                await asyncio.sleep(delay)
            self._pacer.captured()
            if self._input_event is not None:
                # input from now on wakes the next wait; input before it is in this look
                self._input_event.clear()
            frame_id = self._frame_id + 1
            link = (self._pacer.round_trip, self._pacer.throughput)  # read on the loop's thread
            try:
                frames, cursor = await loop.run_in_executor(
                    pool,
                    self._capture_once,
                    capture,
                    monitor,
                    stream,
                    frame_id,
                    cursor_serial,
                    link,
                )
            except PlatformError as exc:
                self.stats.screen_errors += 1
                if not screen_failing:
                    screen_failing = True
                    self._send(
                        Notice(
                            code=NoticeCode.SECURE_DESKTOP,
                            text=f"The screen cannot be read now ({exc}); the user must answer "
                            "any system prompt on the PC.",
                        )
                    )
                await asyncio.sleep(SCREEN_RETRY_SECONDS)
                stream.reset()
                continue
            screen_failing = False
            conn = self._conn
            if conn is None or not conn.session.screen_allowed:
                return  # the right went away while the grab ran: this frame is never sent
            if cursor.message.shape is not None or cursor.position != last_cursor:
                cursor_serial = cursor.serial
                last_cursor = cursor.position
                conn.send(cursor.message)
            size = 0
            for frame in frames:
                conn.send(frame)
                size += sum(len(r.data) for r in frame.regions)
            self.stats.frame_bytes_sent += size
            if frames:
                self._frame_id = frame_id
                self._pacer.sent(frame_id, size)
                self.stats.frames_sent += 1
            await self._flush()

    async def _wait_still(self, capture: ScreenCapture, poll: float) -> None:
        """Wait until a still screen may have changed: its platform's wake-up
        descriptor is readable (a drawing, a new cursor, the pointer moved), the
        consultant sent input, or STILL_CHECK_SECONDS passed. Without a descriptor,
        sleep `poll` seconds. No wake-ups at all while nothing happens: idle CPU."""
        fd = capture.wake_fd()
        if fd == LOOK_NOW:
            return  # drawn while the last look was being sent: look again at once
        if fd is None or self._input_event is None:
            await asyncio.sleep(poll)
            return
        loop = asyncio.get_running_loop()
        woke = asyncio.Event()
        loop.add_reader(fd, woke.set)
        waits = [
            asyncio.ensure_future(woke.wait()),
            asyncio.ensure_future(self._input_event.wait()),
        ]
        try:
            await asyncio.wait(
                waits, timeout=STILL_CHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            loop.remove_reader(fd)
            for wait in waits:
                wait.cancel()

    def _capture_once(
        self,
        capture: ScreenCapture,
        monitor: MonitorInfo,
        stream: StreamEncoder,
        frame_id: int,
        cursor_serial: int | None,
        link: tuple[float | None, float | None],
    ) -> tuple[list[Frame], _CursorUpdate]:
        """On the capture thread: grab, find changed tiles, encode, read the cursor.

        `link`: the latest frame round trip and the measured throughput.
        """
        captured_at = time.time_ns()
        stream.adapt(link[0], rate=link[1])
        drawn = capture.changed()
        stream.damage_known = drawn is not None
        area = _tile_area(capture.damaged_area(), monitor) if drawn else None
        if area is not None and area.width == 0:  # drawn on another monitor only
            drawn = False
        if drawn is False and not stream.needs_grab:  # nothing drawn: no grab, no compare
            bgra = stream.diff.previous
            regions = stream.unchanged()
        elif area is not None and not stream.needs_grab:  # drawn in a small area only
            raw = capture.grab_area(monitor, (area.x, area.y, area.width, area.height))
            block = np.frombuffer(raw, dtype=np.uint8).reshape(area.height, area.width, 4)
            regions = stream.regions_in(area, block)
            bgra = stream.diff.previous
        else:
            raw = capture.grab(monitor)
            bgra = np.frombuffer(raw, dtype=np.uint8).reshape(monitor.height, monitor.width, 4)
            # drawn over more than a small area, as the platform says: video may go on
            # without a compare (known only with DAMAGE; a first look covers everything)
            regions = stream.regions(bgra, drawn_all_over=drawn is True and area is None)
        frames: list[Frame] = []
        if regions:
            if self.on_capture is not None:
                self.on_capture(frame_id, bgra)
            frames = frame_parts(
                frame_id=frame_id,
                captured_at_ns=captured_at,
                width=monitor.width,
                height=monitor.height,
                regions=regions,
            )
        info = capture.cursor(known_serial=cursor_serial)
        x, y = info.x - monitor.left, info.y - monitor.top
        inside = 0 <= x < monitor.width and 0 <= y < monitor.height
        visible = info.visible and inside
        message = Cursor(x=x, y=y, visible=visible, shape=info.shape)
        return frames, _CursorUpdate((x, y, visible), info.serial, message)


POLLED_INTERVAL = 1 / 60
"""Seconds between looks at least where the platform cannot say what was drawn (no X
DAMAGE: Windows' GDI grabs and compares every look until the screen is quiet). The
pacer's 75/s cap is for looks that happen only when something was drawn."""


def look_interval(stream: StreamEncoder) -> float | None:
    """The shortest time between this stream's next looks (None: the pacer's cap)."""
    if stream.in_video:
        return VIDEO_INTERVAL  # the encoder is the costly part
    if not stream.damage_known:
        return POLLED_INTERVAL
    return None


SMALL_AREA = 0.25
"""A drawing whose tile-aligned box covers at most this share of the monitor is
grabbed and compared alone (typing, a menu, a caret: a few KB instead of 8 MB);
a larger one takes the whole-screen path, where scrolls and video are found."""


def _tile_area(box: tuple[int, int, int, int] | None, monitor: MonitorInfo) -> Rect | None:
    """The damaged box, in monitor coordinates, widened to the tile grid and clipped
    to the monitor; an empty Rect when it lies outside the monitor; None when it is
    unknown or too large (grab the whole monitor)."""
    if box is None:
        return None
    x, y, width, height = box
    x0, y0 = max(0, x - monitor.left), max(0, y - monitor.top)
    x1 = min(monitor.width, x + width - monitor.left)
    y1 = min(monitor.height, y + height - monitor.top)
    if x1 <= x0 or y1 <= y0:
        return Rect(0, 0, 0, 0)
    x0, y0 = x0 - x0 % TILE, y0 - y0 % TILE
    x1, y1 = min(monitor.width, -(-x1 // TILE) * TILE), min(monitor.height, -(-y1 // TILE) * TILE)
    if (x1 - x0) * (y1 - y0) > SMALL_AREA * monitor.width * monitor.height:
        return None
    return Rect(x0, y0, x1 - x0, y1 - y0)


def _is_receipt(data: bytes) -> bool:
    try:
        return isinstance(decode_envelope(data), AuditReport)
    except ProtocolError:
        return False


def _close_if_opened(opening: Future[ScreenCapture]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


@dataclass(frozen=True, slots=True)
class _CursorUpdate:
    position: tuple[int, int, bool]  # monitor-relative x, y, visible
    serial: int | None
    message: Cursor
