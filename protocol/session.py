"""The consent and session state machine of both ends, as one table (STYLE §3).

Everything that moves a session between states lives in this file. Both the
agent and the console run the same table over the same messages: each message is
an *event* with an *origin* (the party that sent it). A message we are about to
send is checked with origin = us (a miss is a `LocalProtocolError`, nothing is
sent and the session goes on); a message we received is checked with origin =
the peer (a miss is an `UnexpectedMessage` and the session FAILS).

An entry's outcome is either the next state or DROP. DROP covers honest races:
the consultant's mouse move that was on the wire when the user took the
keyboard back is *received and ignored*; it is never injected. A DROP outcome
is never a licence to send: a local send whose outcome is DROP is refused.

The agent is the authority on rights: only it grants, hands back, or ends a
hand-back; the console can only ask.

Rules the table makes true (tests/protocol/test_session_rules.py shows each):
1. no frame is produced and no input accepted before consent;
2. input is never accepted in view-only or during hand-back;
3. a hand-back ends only by the agent (its user's click) or the end of the session;
4. any escalation of rights needs a new consent: a grant never exceeds the request;
5. after ENDED or FAILED nothing is accepted.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from protocol.errors import LocalProtocolError, UnexpectedMessage
from protocol.messages import (
    INPUT_MESSAGES,
    ClipboardText,
    ConsentDenied,
    ConsentGranted,
    ConsentPending,
    Cursor,
    Delivered,
    End,
    Frame,
    FrameAck,
    HandBackEnded,
    HandBackRequest,
    HandBackStarted,
    Message,
    MonitorLayout,
    Notice,
    Party,
    Ping,
    Pong,
    Rights,
    RightsRequest,
    SelectMonitor,
    SessionRequest,
)


class State(Enum):
    PAIRING = "pairing"  # before keys: relay control, PAKE, confirmation
    KEYED = "keyed"  # keys confirmed; the console has not asked yet
    REQUESTED = "requested"  # the console asked; the agent is checking the attestation
    CONSENT_PENDING = "consent pending"  # the prompt is on the user's screen
    VIEWING = "viewing"
    CONTROLLING = "controlling"
    ESCALATING = "escalating"  # viewing, and a prompt for control is on the user's screen
    HAND_BACK_VIEWING = "hand-back (was viewing)"
    HAND_BACK_CONTROLLING = "hand-back (was controlling)"
    ENDED = "ended"
    FAILED = "failed"


class Drop:
    """Outcome: receive and ignore (an honest race); never allowed as a send."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = Drop()

A, C = Party.AGENT, Party.CONSOLE
S = State

# Events. Most are a message type; a few depend on a field and get their own
# name so that the table, not code elsewhere, decides what they do.
KEYED = "keys confirmed"
SCREEN = "screen (Frame, Cursor, MonitorLayout)"
INPUT = "input (pointer, scroll, key, text)"
GRANT_VIEW = "ConsentGranted(VIEW)"
GRANT_CONTROL = "ConsentGranted(CONTROL)"
GRANT_BEYOND_REQUEST = "ConsentGranted beyond the request"
ASK_CONTROL = "RightsRequest(CONTROL)"
ASK_VIEW = "RightsRequest(VIEW)"

_LIVE_AFTER_CONSENT = (
    S.VIEWING,
    S.CONTROLLING,
    S.ESCALATING,
    S.HAND_BACK_VIEWING,
    S.HAND_BACK_CONTROLLING,
)
_SHOWING_SCREEN = (S.VIEWING, S.CONTROLLING, S.ESCALATING)
_HAND_BACK = (S.HAND_BACK_VIEWING, S.HAND_BACK_CONTROLLING)
_KEYED_LIVE = (S.KEYED, S.REQUESTED, S.CONSENT_PENDING, *_LIVE_AFTER_CONSENT)

Outcome = State | Drop
Key = tuple[State, Party, str]

TABLE: dict[Key, Outcome] = {
    # keys confirmed: either end notes it (origin is the end itself)
    (S.PAIRING, A, KEYED): S.KEYED,
    (S.PAIRING, C, KEYED): S.KEYED,
    # the console asks; the agent says the prompt is up, then the user answers
    (S.KEYED, C, "SessionRequest"): S.REQUESTED,
    (S.REQUESTED, A, "ConsentPending"): S.CONSENT_PENDING,
    (S.REQUESTED, A, "ConsentDenied"): S.ENDED,  # bad attestation, or the PC is busy
    (S.CONSENT_PENDING, A, GRANT_VIEW): S.VIEWING,
    (S.CONSENT_PENDING, A, GRANT_CONTROL): S.CONTROLLING,
    (S.CONSENT_PENDING, A, "ConsentDenied"): S.ENDED,  # Deny, or nobody answered
    # escalation: asking for more needs a new click; asking for less is immediate
    (S.VIEWING, C, ASK_CONTROL): S.ESCALATING,
    (S.ESCALATING, A, GRANT_CONTROL): S.CONTROLLING,
    (S.ESCALATING, A, GRANT_VIEW): S.VIEWING,
    (S.ESCALATING, A, "ConsentDenied"): S.VIEWING,
    (S.CONTROLLING, C, ASK_VIEW): S.VIEWING,
    (S.CONTROLLING, A, GRANT_VIEW): S.VIEWING,  # the user took control away
    (S.VIEWING, A, GRANT_VIEW): S.VIEWING,  # confirms the console's own step down
    # races with a step the agent already took: ignored, never acted on
    (S.VIEWING, C, ASK_VIEW): DROP,
    (S.ESCALATING, C, ASK_VIEW): DROP,
    (S.ESCALATING, C, ASK_CONTROL): DROP,
    (S.CONTROLLING, C, ASK_CONTROL): DROP,
    (S.HAND_BACK_VIEWING, C, ASK_CONTROL): DROP,
    (S.HAND_BACK_VIEWING, C, ASK_VIEW): DROP,
    (S.HAND_BACK_CONTROLLING, C, ASK_CONTROL): DROP,
    (S.HAND_BACK_CONTROLLING, C, ASK_VIEW): DROP,
    # hand-back: the console may ask (the agent obeys at once), the user may start it;
    # only the agent ends it, when its user clicks Done
    (S.VIEWING, A, "HandBackStarted"): S.HAND_BACK_VIEWING,
    (S.ESCALATING, A, "HandBackStarted"): S.HAND_BACK_VIEWING,  # cancels the prompt
    (S.CONTROLLING, A, "HandBackStarted"): S.HAND_BACK_CONTROLLING,
    (S.HAND_BACK_VIEWING, A, "HandBackEnded"): S.VIEWING,
    (S.HAND_BACK_CONTROLLING, A, "HandBackEnded"): S.CONTROLLING,
    (S.VIEWING, C, "HandBackRequest"): S.VIEWING,
    (S.ESCALATING, C, "HandBackRequest"): S.ESCALATING,
    (S.CONTROLLING, C, "HandBackRequest"): S.CONTROLLING,
    (S.HAND_BACK_VIEWING, C, "HandBackRequest"): DROP,
    (S.HAND_BACK_CONTROLLING, C, "HandBackRequest"): DROP,
    # the screen: only while the user lets the consultant see it
    **{(s, A, SCREEN): s for s in _SHOWING_SCREEN},
    **{(s, C, "FrameAck"): s for s in _LIVE_AFTER_CONSENT},
    **{(s, C, "SelectMonitor"): s for s in _SHOWING_SCREEN},
    **{(s, C, "SelectMonitor"): DROP for s in _HAND_BACK},
    # input: only with CONTROL; what was on the wire when control went away is dropped
    (S.CONTROLLING, C, INPUT): S.CONTROLLING,
    (S.VIEWING, C, INPUT): DROP,
    (S.ESCALATING, C, INPUT): DROP,
    **{(s, C, INPUT): DROP for s in _HAND_BACK},
    # clipboard: only with CONTROL, either way
    (S.CONTROLLING, A, "ClipboardText"): S.CONTROLLING,
    (S.CONTROLLING, C, "ClipboardText"): S.CONTROLLING,
    **{(s, C, "ClipboardText"): DROP for s in (S.VIEWING, S.ESCALATING, *_HAND_BACK)},
    # housekeeping
    **{(s, p, m): s for s in _KEYED_LIVE for p in (A, C) for m in ("Ping", "Pong", "Delivered")},
    **{(s, A, "Notice"): s for s in (S.CONSENT_PENDING, *_LIVE_AFTER_CONSENT)},
    # either end may end any keyed session at once
    **{(s, p, "End"): S.ENDED for s in _KEYED_LIVE for p in (A, C)},
}


def event_names() -> tuple[str, ...]:
    """Every event the table knows, for the exhaustive test."""
    return (
        KEYED,
        SCREEN,
        INPUT,
        GRANT_VIEW,
        GRANT_CONTROL,
        GRANT_BEYOND_REQUEST,
        ASK_CONTROL,
        ASK_VIEW,
        "SessionRequest",
        "ConsentPending",
        "ConsentDenied",
        "HandBackStarted",
        "HandBackEnded",
        "HandBackRequest",
        "FrameAck",
        "SelectMonitor",
        "ClipboardText",
        "Ping",
        "Pong",
        "Delivered",
        "Notice",
        "End",
    )


_SCREEN_TYPES = (Frame, Cursor, MonitorLayout)
_SIMPLE_TYPES = (
    SessionRequest,
    ConsentPending,
    ConsentDenied,
    HandBackStarted,
    HandBackEnded,
    HandBackRequest,
    FrameAck,
    SelectMonitor,
    ClipboardText,
    Ping,
    Pong,
    Delivered,
    Notice,
    End,
)


class Session:
    """One end's view of the session: state, requested and granted rights."""

    def __init__(self, role: Party) -> None:
        if role not in (A, C):
            raise LocalProtocolError("a session has an agent end and a console end")
        self.role = role
        self.peer = C if role is A else A
        self.state = S.PAIRING
        self.requested: Rights | None = None  # what the console last asked for
        self.rights: Rights | None = None  # what the user has granted now

    @property
    def live(self) -> bool:
        return self.state not in (S.ENDED, S.FAILED)

    @property
    def input_allowed(self) -> bool:
        return self.state is S.CONTROLLING

    @property
    def screen_allowed(self) -> bool:
        return self.state in _SHOWING_SCREEN

    def event_of(self, message: Message) -> str:
        """Name the table event a message is, given what was asked for."""
        if isinstance(message, _SCREEN_TYPES):
            return SCREEN
        if isinstance(message, INPUT_MESSAGES):
            return INPUT
        if isinstance(message, ConsentGranted):
            if self.requested is None or message.rights > self.requested:
                return GRANT_BEYOND_REQUEST
            return GRANT_CONTROL if message.rights is Rights.CONTROL else GRANT_VIEW
        if isinstance(message, RightsRequest):
            return ASK_CONTROL if message.rights is Rights.CONTROL else ASK_VIEW
        if isinstance(message, _SIMPLE_TYPES):
            return type(message).__name__
        return f"{type(message).__name__} (not a session message)"

    def keyed(self) -> None:
        self._step(self.role, KEYED, local=True)

    def check_send(self, message: Message) -> Outcome:
        """Apply a message we are about to send.

        Raises:
            LocalProtocolError: the table does not let us send it now; the state is unchanged.
        """
        return self._apply(self.role, message, local=True)

    def check_receive(self, message: Message) -> Outcome:
        """Apply a message the peer sent; DROP means ignore it.

        Raises:
            UnexpectedMessage: the table does not allow it; the session is FAILED.
        """
        return self._apply(self.peer, message, local=False)

    def fail(self) -> None:
        self.state = S.FAILED

    def _apply(self, origin: Party, message: Message, *, local: bool) -> Outcome:
        outcome = self._step(origin, self.event_of(message), local=local)
        if isinstance(outcome, State):
            self._track_rights(message)
        return outcome

    def _step(self, origin: Party, event: str, *, local: bool) -> Outcome:
        outcome = TABLE.get((self.state, origin, event))
        if outcome is None or (local and outcome is DROP):
            why = (
                f"{self.role.name.lower()} in state {self.state.value!r}: "
                f"{event} from the {origin.name.lower()} is not allowed"
            )
            if local:
                raise LocalProtocolError(why)
            self.state = S.FAILED
            raise UnexpectedMessage(why)
        if isinstance(outcome, State):
            self.state = outcome
        return outcome

    def _track_rights(self, message: Message) -> None:
        if isinstance(message, SessionRequest | RightsRequest):
            self.requested = message.rights
            if self.state is S.VIEWING:  # a step down takes effect at once
                self.rights = Rights.VIEW
        elif isinstance(message, ConsentGranted):
            self.rights = message.rights
            self.requested = message.rights
        elif isinstance(message, ConsentDenied) and self.state is S.VIEWING:
            self.requested = Rights.VIEW
