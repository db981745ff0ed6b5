"""One end of a session, sans-I/O: bytes in, events and bytes out (STYLE §1).

A shell feeds every WebSocket message it receives to `receive_data()`, sends
every item of `data_to_send()` as one binary WebSocket message, and acts on
`events_received()`. The shell never decides what is allowed: the session table
(`protocol.session`) does, here, for both ends.

Remote faults never raise out of `receive_data()`: the connection fails, queues
an `End` (sealed, if keys exist) or an `Abort` for the relay, and reports one
`SessionEnded` event carrying the error and its WebSocket close code. Local
faults (our shell sending what the state does not allow) raise
`LocalProtocolError` and change nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import attestation as attest
from protocol.channel import Channel
from protocol.codec import decode_envelope, decode_inner, encode
from protocol.codes import PhoneCode, new_secret
from protocol.errors import (
    AttestationError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UnexpectedMessage,
    WrongCodeError,
)
from protocol.handshake import Handshake
from protocol.limits import (
    CONSENT_TIMEOUT_SECONDS,
    PROTOCOL_VERSION,
    RESUME_GRACE_SECONDS,
    RETRANSMIT_BUFFER_BYTES,
)
from protocol.messages import (
    Abort,
    AbortReason,
    AllocateNameplate,
    AuditKind,
    AuditReport,
    Claimed,
    ClaimNameplate,
    Confirm,
    ConsentDenied,
    ConsentGranted,
    ConsentPending,
    Delivered,
    DenyReason,
    End,
    EndReason,
    FrameAck,
    HandBackEnded,
    HandBackRequest,
    HandBackStarted,
    Message,
    NameplateAllocated,
    Pake,
    Party,
    PeerAway,
    PeerJoined,
    PeerLeft,
    PeerReturned,
    Ping,
    Pong,
    RelayError,
    RelayErrorCode,
    Resume,
    Resumed,
    Rewind,
    Rights,
    RightsRequest,
    Sealed,
    SessionOpened,
    SessionRequest,
)
from protocol.session import DROP, Session, State

# ------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class CodeReady:
    """Console: the relay gave a nameplate; read `code` to the caller."""

    code: PhoneCode
    expires_at: float


@dataclass(frozen=True, slots=True)
class NameplateClaimed:
    """Agent: the relay accepted the nameplate; waiting for the console."""

    expires_at: float


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """Both ends are on the relay; the PAKE runs now."""


@dataclass(frozen=True, slots=True)
class SessionIdAssigned:
    session_id: str


@dataclass(frozen=True, slots=True)
class Keyed:
    """The code matched on both ends: the channel is sealed."""


@dataclass(frozen=True, slots=True)
class ConsentRequested:
    """Agent: show the prompt. The attestation checked, so the name can be shown."""

    request: SessionRequest
    attestation: attest.Attestation
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class EscalationRequested:
    """Agent: the consultant asks for control; show a new prompt."""

    rights: Rights


@dataclass(frozen=True, slots=True)
class Dropped:
    """A peer message that raced with a state change and was ignored, never acted on."""

    message: Message
    state: State


@dataclass(frozen=True, slots=True)
class LinkLost:
    """Our link to the relay dropped; the shell should reconnect and call `resume()`."""

    grace_seconds: float


@dataclass(frozen=True, slots=True)
class PeerAwayEvent:
    """The other end's link dropped; it may come back within `grace_seconds`."""

    grace_seconds: float


@dataclass(frozen=True, slots=True)
class LinkRestored:
    """Both ends are back and the channel resent what was lost; the session goes on."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The last event of a connection. `error` is set when the session FAILED."""

    by: Party
    reason: EndReason
    detail: str
    error: ProtocolError | None = None
    relay_code: RelayErrorCode | None = None  # why the relay refused, when it did

    @property
    def close_code(self) -> int:
        return self.error.close_code if self.error is not None else 1000


Event = (
    CodeReady
    | NameplateClaimed
    | PeerConnected
    | SessionIdAssigned
    | Keyed
    | ConsentRequested
    | EscalationRequested
    | Dropped
    | LinkLost
    | PeerAwayEvent
    | LinkRestored
    | SessionEnded
    | Message
)


# -------------------------------------------------------------------- connection

DELIVERY_ACK_EVERY = 64
"""Every this many sealed boxes received, an end tells the other what it has
(`Delivered`), so the other can drop them from its resend buffer: without it the
buffer of a long session would only ever fill up."""


def _is_receipt(data: bytes) -> bool:
    return data[:2] == bytes([0x94, AuditReport.TAG])  # msgpack fixarray of 4, then the tag


_RETAINED_OVERHEAD = 128
"""What keeping one sealed box costs beyond its bytes (the bytes object, the tuple,
the deque slot), counted against RETRANSMIT_BUFFER_BYTES."""


class Connection:
    """What both ends share: envelope handling, PAKE, the channel, the table."""

    def __init__(self, role: Party) -> None:
        self.role = role
        self.peer = Party.CONSOLE if role is Party.AGENT else Party.AGENT
        self.session = Session(role)
        self.session_id: str | None = None
        self.ended: SessionEnded | None = None
        self._handshake: Handshake | None = None
        self._peer_pake = False
        self._channel: Channel | None = None
        self._events: list[Event] = []
        self._outgoing: list[bytes] = []
        # resume: every sealed box is kept (bounded) until it cannot be needed again;
        # while `_holding`, new boxes are kept but not sent (the peer is away or has not
        # yet said where to resume from).
        self.resume_token = b""
        self.grace_seconds = RESUME_GRACE_SECONDS
        self._retained: deque[tuple[int, bytes]] = deque()
        self._retained_bytes = 0
        self._holding = False
        self._unacknowledged = 0  # boxes received since we last sent Delivered
        self._unsent_receipts: list[bytes] = []

    # -- the shell's side

    @property
    def state(self) -> State:
        return self.session.state

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        data, self._outgoing = self._outgoing, []
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed one WebSocket message. Never raises for what the peer or relay did."""
        if not self.session.live:
            return  # after the end nothing is accepted; in-flight data is normal
        try:
            self._receive_envelope(decode_envelope(data))
        except RemoteProtocolError as exc:
            self._fail(exc)

    def send(self, message: Message) -> None:
        """Seal and queue an inner message, if the table allows it now.

        Raises:
            LocalProtocolError: not allowed in this state, not keyed, or not an inner message.
        """
        if self._channel is None or not self.session.live:
            raise LocalProtocolError(f"cannot send {type(message).__name__}: no live session")
        payload = encode(message)
        if message.TAG < 32:
            raise LocalProtocolError(f"{type(message).__name__} is not a sealed message")
        self.session.check_send(message)
        self._emit_sealed(payload)
        if isinstance(message, End):
            self._finish(SessionEnded(by=self.role, reason=message.reason, detail=message.detail))

    def end(self, reason: EndReason, detail: str = "") -> None:
        """End the session at once, from any state. Safe to call twice."""
        if not self.session.live:
            return
        if self._channel is not None and self.session.state is not State.PAIRING:
            self.send(End(by=self.role, reason=reason, detail=detail))
        else:
            self._send_envelope(Abort(reason=AbortReason.PROTOCOL_ERROR))
            self.session.state = State.ENDED
            self._finish(SessionEnded(by=self.role, reason=reason, detail=detail))

    def link_lost(self) -> bool:
        """The shell's link to the relay dropped. Returns True if it should reconnect
        and call `resume()` within `grace_seconds`; otherwise the session has ended."""
        if not self.session.live:
            return False
        # Unsent sealed boxes are in the retained buffer; consent receipts (cleartext,
        # for the relay's audit log) are kept aside and sent once the link is back.
        self._unsent_receipts += [d for d in self._outgoing if _is_receipt(d)]
        self._outgoing.clear()
        keyed = self._channel is not None and self.session.state is not State.PAIRING
        if not (keyed and self.resume_token and self.session_id):
            self.session.state = State.ENDED
            self._finish(SessionEnded(Party.RELAY, EndReason.PEER_LOST, "the link dropped"))
            return False
        self._holding = True
        self._events.append(LinkLost(self.grace_seconds))
        return True

    def resume(self) -> None:
        """Queue the first message of a new link after `link_lost()`."""
        if not self._holding or self.session_id is None:
            raise LocalProtocolError("resume() without a lost link")
        self._send_envelope(Resume(session_id=self.session_id, token=self.resume_token))

    def ping(self, nonce: int) -> None:
        self.send(Ping(nonce=nonce, sent_at_ns=time.monotonic_ns()))

    # -- internals

    def _send_envelope(self, message: Message) -> None:
        self._outgoing.append(encode(message))

    def _emit_sealed(self, payload: bytes) -> None:
        assert self._channel is not None
        counter = self._channel.next_send
        data = encode(Sealed(box=self._channel.seal(payload)))
        self._retained.append((counter, data))
        self._retained_bytes += len(data) + _RETAINED_OVERHEAD
        while self._retained_bytes > RETRANSMIT_BUFFER_BYTES and len(self._retained) > 1:
            self._retained_bytes -= len(self._retained.popleft()[1]) + _RETAINED_OVERHEAD
        if not self._holding:
            self._outgoing.append(data)

    def _forget_delivered(self, next_counter: int) -> None:
        """The peer has every box before `next_counter`: they will never be resent."""
        while self._retained and self._retained[0][0] < next_counter:
            self._retained_bytes -= len(self._retained.popleft()[1]) + _RETAINED_OVERHEAD

    def _rewind(self, message: Rewind) -> None:
        """The peer is back and expects our box `next_counter` next: resend from there."""
        assert self._channel is not None
        wanted = message.next_counter
        if wanted > self._channel.next_send:
            raise UnexpectedMessage(f"rewind to {wanted}, but only {self._channel.next_send} sent")
        oldest = self._retained[0][0] if self._retained else self._channel.next_send
        if wanted < oldest:
            self.session.state = State.ENDED
            self._finish(
                SessionEnded(Party.RELAY, EndReason.PEER_LOST, "too much was lost to resume")
            )
            return
        self._forget_delivered(wanted)
        self._outgoing.extend(data for _, data in self._retained)
        self._holding = False
        self._events.append(LinkRestored())

    def _receive_envelope(self, message: Message) -> None:
        if isinstance(message, Sealed):
            self._receive_sealed(message)
        elif isinstance(message, PeerJoined) and self._handshake is not None:
            if self._handshake_started:
                raise UnexpectedMessage("PeerJoined twice")
            self._handshake_started = True
            self._events.append(PeerConnected())
            self._send_envelope(self._handshake.start())
        elif isinstance(message, Pake) and self._handshake_started and not self._peer_pake:
            self._peer_pake = True
            assert self._handshake is not None
            self._send_envelope(self._handshake.receive_pake(message))
        elif isinstance(message, Confirm) and self._peer_pake and self._channel is None:
            assert self._handshake is not None
            try:
                keys = self._handshake.receive_confirm(message)
            except WrongCodeError as exc:
                self._send_envelope(Abort(reason=AbortReason.WRONG_CODE))
                self.session.fail()
                self._finish(SessionEnded(self.role, EndReason.WRONG_CODE, str(exc), exc))
                return
            self._channel = Channel(keys)
            self.session.keyed()
            self._events.append(Keyed())
            self._on_keyed()
        elif isinstance(message, SessionOpened) and self.session_id is None:
            self.session_id = message.session_id
            self.resume_token = message.resume_token
            if message.resume_grace_seconds > 0:
                self.grace_seconds = message.resume_grace_seconds
            self._events.append(SessionIdAssigned(message.session_id))
        elif isinstance(message, PeerAway) and self._channel is not None:
            self._holding = True
            self.grace_seconds = message.grace_seconds
            self._events.append(PeerAwayEvent(message.grace_seconds))
        elif isinstance(message, Resumed | PeerReturned) and self._holding:
            assert self._channel is not None
            self._send_envelope(Rewind(next_counter=self._channel.next_receive))
            if isinstance(message, Resumed):  # our new link is up: the receipts can go
                self._outgoing += self._unsent_receipts
                self._unsent_receipts = []
        elif isinstance(message, Rewind) and self._holding and self._channel is not None:
            self._rewind(message)
        elif isinstance(message, PeerLeft):
            self.session.state = State.ENDED
            self._finish(SessionEnded(Party.RELAY, EndReason.PEER_LOST, "the other end left"))
        elif isinstance(message, RelayError):
            self.session.state = State.ENDED
            self._finish(
                SessionEnded(
                    Party.RELAY,
                    EndReason.RELAY_REFUSED,
                    message.message,
                    relay_code=message.code,
                )
            )
        else:
            self._receive_control(message)

    _handshake_started = False

    def _receive_control(self, message: Message) -> None:
        raise UnexpectedMessage(f"{type(message).__name__} is not expected by the {self._name}")

    @property
    def _name(self) -> str:
        return self.role.name.lower()

    def _receive_sealed(self, message: Sealed) -> None:
        if self._channel is None:
            raise UnexpectedMessage("a sealed message before the keys were confirmed")
        inner = decode_inner(self._channel.open(message.box))
        self._unacknowledged += 1
        if self.session.check_receive(inner) is DROP:
            self._events.append(Dropped(inner, self.session.state))
            return
        if isinstance(inner, Delivered):
            self._forget_delivered(inner.next_counter)
            return
        if self._unacknowledged >= DELIVERY_ACK_EVERY and self.session.live:
            self._unacknowledged = 0
            self.send(Delivered(next_counter=self._channel.next_receive))
        if isinstance(inner, Ping):
            self.send(Pong(nonce=inner.nonce, sent_at_ns=inner.sent_at_ns))
            return
        if isinstance(inner, End):
            self._finish(SessionEnded(inner.by, inner.reason, inner.detail))
            return
        self._on_message(inner)

    def _on_keyed(self) -> None:
        """Hook: the channel is up."""

    def _on_message(self, message: Message) -> None:
        """Hook: a message the table accepted; by default the shell gets it as an event."""
        self._events.append(message)

    def _fail(self, error: ProtocolError) -> None:
        if self.ended is not None:
            return
        was_keyed = self._channel is not None and self.session.state is not State.PAIRING
        self.session.fail()
        detail = f"{type(error).__name__}: {error}"
        if was_keyed:
            assert self._channel is not None
            end = End(by=self.role, reason=EndReason.PROTOCOL_ERROR, detail=detail[:256])
            self._outgoing.append(encode(Sealed(box=self._channel.seal(encode(end)))))
        else:
            self._send_envelope(Abort(reason=AbortReason.PROTOCOL_ERROR))
        self._finish(SessionEnded(self.role, EndReason.PROTOCOL_ERROR, detail[:256], error))

    def _finish(self, ended: SessionEnded) -> None:
        if self.ended is None:
            self.ended = ended
            self._events.append(ended)
            self._on_finished(ended)

    def _on_finished(self, ended: SessionEnded) -> None:
        """Hook: the session is over."""


class ConsoleConnection(Connection):
    """The consultant's end: asks the relay for a nameplate, then asks the user."""

    def __init__(
        self,
        *,
        ticket_id: str,
        consultant: str,
        ticket_title: str,
        rights: Rights = Rights.CONTROL,
        secret: str | None = None,
    ) -> None:
        super().__init__(Party.CONSOLE)
        self.ticket_id, self.consultant, self.ticket_title = ticket_id, consultant, ticket_title
        self.requested_rights = rights
        self._secret = secret if secret is not None else new_secret()
        self.code: PhoneCode | None = None
        self._attestation = b""
        self._send_envelope(AllocateNameplate(ticket_id=ticket_id))

    def _receive_control(self, message: Message) -> None:
        if isinstance(message, NameplateAllocated) and self.code is None:
            self.code = PhoneCode(message.nameplate, self._secret)
            self._attestation = message.attestation
            self._handshake = Handshake(Party.CONSOLE, self.code)
            self._events.append(CodeReady(self.code, message.expires_at))
        else:
            super()._receive_control(message)

    def _on_keyed(self) -> None:
        self.send(
            SessionRequest(
                consultant=self.consultant,
                ticket_id=self.ticket_id,
                ticket_title=self.ticket_title,
                rights=self.requested_rights,
                attestation=self._attestation,
            )
        )

    def _on_message(self, message: Message) -> None:
        super()._on_message(message)
        if isinstance(message, ConsentDenied) and not self.session.live:
            self._finish(SessionEnded(Party.AGENT, EndReason.DENIED, message.reason.name))

    def request_rights(self, rights: Rights) -> None:
        self.send(RightsRequest(rights=rights))

    def request_hand_back(self) -> None:
        self.send(HandBackRequest())

    def ack(self, frame_id: int) -> None:
        self.send(FrameAck(frame_id=frame_id))


class AgentConnection(Connection):
    """The PC's end: exists only after its user typed a code and clicked Connect.

    It checks the relay's attestation against the pinned key, raises the consent
    prompt as an event, and reports every grant, escalation, hand-back and end to
    the relay's audit log as a cleartext `AuditReport`.
    """

    def __init__(
        self,
        *,
        code: PhoneCode,
        relay_key: Ed25519PublicKey,
        org: str | None = None,
        consent_timeout: float = CONSENT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(Party.AGENT)
        self.code = code
        self._relay_key, self._org, self._clock = relay_key, org, clock
        self.consent_timeout = consent_timeout
        self.request: SessionRequest | None = None
        self.attestation: attest.Attestation | None = None
        self._handshake = Handshake(Party.AGENT, code)
        self._send_envelope(
            ClaimNameplate(nameplate=code.nameplate, protocol_version=PROTOCOL_VERSION)
        )

    # -- what the user's clicks do

    def grant(self, rights: Rights) -> None:
        """The user clicked Allow (first prompt or escalation)."""
        escalation = self.session.state is State.ESCALATING
        self.send(ConsentGranted(rights=rights))
        kind = AuditKind.ESCALATION_GRANTED if escalation else AuditKind.GRANTED
        self._audit(kind, rights)

    def deny(self, reason: DenyReason = DenyReason.USER_DENIED) -> None:
        """The user clicked Deny, or the prompt timed out (never an implicit yes)."""
        escalation = self.session.state is State.ESCALATING
        self.send(ConsentDenied(reason=reason))
        kind = AuditKind.ESCALATION_DENIED if escalation else AuditKind.DENIED
        self._audit(kind, None, reason.name.lower())
        if not self.session.live:
            self._finish(SessionEnded(Party.AGENT, EndReason.DENIED, reason.name.lower()))

    def reduce_to_view(self) -> None:
        """The user took the mouse and keyboard away; the consultant keeps watching."""
        self.send(ConsentGranted(rights=Rights.VIEW))
        self._audit(AuditKind.GRANTED, Rights.VIEW, "control withdrawn by the user")

    def start_hand_back(self, by: Party = Party.AGENT) -> None:
        self.send(HandBackStarted(by=by))
        self._audit(AuditKind.HAND_BACK_STARTED, None, f"by {by.name.lower()}")

    def end_hand_back(self) -> None:
        """The user clicked Done after typing the password."""
        self.send(HandBackEnded())
        self._audit(AuditKind.HAND_BACK_ENDED, self.session.rights)

    def end(self, reason: EndReason = EndReason.USER_ENDED, detail: str = "") -> None:
        super().end(reason, detail)

    # -- the table's decisions turned into prompts

    def _receive_control(self, message: Message) -> None:
        if isinstance(message, Claimed) and not self._claimed:
            self._claimed = True
            self._events.append(NameplateClaimed(message.expires_at))
        else:
            super()._receive_control(message)

    _claimed = False

    def _on_message(self, message: Message) -> None:
        if isinstance(message, SessionRequest):
            self._on_request(message)
        elif isinstance(message, RightsRequest):
            if self.session.state is State.ESCALATING:
                self._audit(AuditKind.REQUESTED, message.rights, "escalation")
                self._events.append(EscalationRequested(message.rights))
            else:  # a step down takes effect on both ends at once: nothing to ask or confirm
                self._audit(AuditKind.GRANTED, Rights.VIEW, "consultant stepped down to view")
        elif isinstance(message, HandBackRequest):
            self._events.append(message)
            self.start_hand_back(by=Party.CONSOLE)
        else:
            super()._on_message(message)

    def _on_finished(self, ended: SessionEnded) -> None:
        if self._channel is not None:  # the relay logs the end of every keyed session
            self._audit(AuditKind.ENDED, None, f"{ended.by.name.lower()}: {ended.reason.name}")

    def _on_request(self, request: SessionRequest) -> None:
        self._audit(AuditKind.REQUESTED, request.rights, f"ticket {request.ticket_id}")
        try:
            stated = attest.verify(
                request.attestation,
                self._relay_key,
                nameplate=self.code.nameplate,
                now=self._clock(),
            )
            if (stated.consultant, stated.ticket_id, stated.ticket_title) != (
                request.consultant,
                request.ticket_id,
                request.ticket_title,
            ):
                raise AttestationError("the request does not match what the relay attested")
            if self._org is not None and stated.org != self._org:
                raise AttestationError("the attestation is for another organisation")
        except AttestationError as exc:
            self.send(ConsentDenied(reason=DenyReason.ATTESTATION_INVALID))
            self._audit(AuditKind.DENIED, None, "attestation invalid")
            self._finish(SessionEnded(Party.AGENT, EndReason.DENIED, str(exc), exc))
            return
        self.request, self.attestation = request, stated
        self.send(ConsentPending(timeout_seconds=self.consent_timeout))
        self._events.append(ConsentRequested(request, stated, self.consent_timeout))

    def _audit(self, kind: AuditKind, rights: Rights | None, detail: str = "") -> None:
        self._send_envelope(
            AuditReport(kind=kind, rights=0 if rights is None else int(rights), detail=detail)
        )
