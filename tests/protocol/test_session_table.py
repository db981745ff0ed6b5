"""The table checked exhaustively: every state x origin x event is a listed outcome or the error."""

from __future__ import annotations

import itertools
import re

import pytest

from protocol import session as s
from protocol.errors import LocalProtocolError, UnexpectedMessage
from protocol.messages import (
    ClipboardText,
    ConsentDenied,
    ConsentGranted,
    ConsentPending,
    Cursor,
    Delivered,
    DenyReason,
    End,
    EndReason,
    FrameAck,
    HandBackEnded,
    HandBackRequest,
    HandBackStarted,
    Message,
    Notice,
    NoticeCode,
    Party,
    Ping,
    PointerMove,
    Pong,
    Rights,
    RightsRequest,
    SelectMonitor,
    SessionRequest,
)

REQUEST = SessionRequest(
    consultant="A", ticket_id="T", ticket_title="t", rights=Rights.CONTROL, attestation=b""
)

# A message for each event, and what the console must have asked for to make it that event.
SAMPLES: dict[str, tuple[Message | None, Rights | None]] = {
    s.KEYED: (None, None),
    s.SCREEN: (Cursor(x=1, y=1), None),
    s.INPUT: (PointerMove(x=1, y=1), None),
    s.GRANT_VIEW: (ConsentGranted(rights=Rights.VIEW), Rights.CONTROL),
    s.GRANT_CONTROL: (ConsentGranted(rights=Rights.CONTROL), Rights.CONTROL),
    s.GRANT_BEYOND_REQUEST: (ConsentGranted(rights=Rights.CONTROL), Rights.VIEW),
    s.ASK_CONTROL: (RightsRequest(rights=Rights.CONTROL), None),
    s.ASK_VIEW: (RightsRequest(rights=Rights.VIEW), None),
    "SessionRequest": (REQUEST, None),
    "ConsentPending": (ConsentPending(timeout_seconds=1), None),
    "ConsentDenied": (ConsentDenied(reason=DenyReason.USER_DENIED), None),
    "HandBackStarted": (HandBackStarted(by=Party.AGENT), None),
    "HandBackEnded": (HandBackEnded(), None),
    "HandBackRequest": (HandBackRequest(), None),
    "FrameAck": (FrameAck(frame_id=1), None),
    "SelectMonitor": (SelectMonitor(index=0), None),
    "ClipboardText": (ClipboardText(text="x"), None),
    "Ping": (Ping(nonce=1, sent_at_ns=1), None),
    "Pong": (Pong(nonce=1, sent_at_ns=1), None),
    "Delivered": (Delivered(next_counter=1), None),
    "Notice": (Notice(code=NoticeCode.INFO, text=""), None),
    "End": (End(by=Party.AGENT, reason=EndReason.USER_ENDED, detail=""), None),
}

CASES = list(itertools.product(s.State, (Party.AGENT, Party.CONSOLE), s.event_names()))


def test_every_event_has_a_sample_and_every_table_key_is_a_known_event() -> None:
    assert set(SAMPLES) == set(s.event_names())
    assert {event for _, _, event in s.TABLE} <= set(s.event_names())


def test_terminal_states_have_no_way_out() -> None:
    assert not [key for key in s.TABLE if key[0] in (s.State.ENDED, s.State.FAILED)]


def test_only_the_agent_grants_hands_back_and_ends_hand_back() -> None:
    for (_, origin, event), _outcome in s.TABLE.items():
        if event in (s.GRANT_VIEW, s.GRANT_CONTROL, "HandBackStarted", "HandBackEnded"):
            assert origin is Party.AGENT
        if event in (s.INPUT, s.ASK_CONTROL, "HandBackRequest"):
            assert origin is Party.CONSOLE


def test_no_path_reaches_control_without_a_grant() -> None:
    for (state, _, event), outcome in s.TABLE.items():
        if outcome is s.State.CONTROLLING and state is not s.State.CONTROLLING:
            assert event in (s.GRANT_CONTROL, "HandBackEnded")
            if event == "HandBackEnded":
                assert state is s.State.HAND_BACK_CONTROLLING


def _session_in(state: s.State, role: Party, requested: Rights | None) -> s.Session:
    session = s.Session(role)
    session.state = state
    session.requested = requested
    return session


@pytest.mark.parametrize(("state", "origin", "event"), CASES)
def test_every_state_event_pair_is_a_listed_outcome_or_an_error(
    state: s.State, origin: Party, event: str
) -> None:
    message, requested = SAMPLES[event]
    expected = s.TABLE.get((state, origin, event))
    other = Party.CONSOLE if origin is Party.AGENT else Party.AGENT

    # as the receiving end (origin is the peer)
    receiver = _session_in(state, other, requested)
    # as the sending end (origin is us)
    sender = _session_in(state, origin, requested)

    if message is None:  # KEYED is only ever local
        if expected is None:
            with pytest.raises(LocalProtocolError, match=re.escape(state.value)):
                sender.keyed()
        else:
            sender.keyed()
            assert sender.state is expected
        return

    assert receiver.event_of(message) == event
    if expected is None:
        with pytest.raises(UnexpectedMessage) as info:
            receiver.check_receive(message)
        assert state.value in str(info.value) and origin.name.lower() in str(info.value)
        assert receiver.state is s.State.FAILED
        with pytest.raises(LocalProtocolError):
            sender.check_send(message)
        assert sender.state is state
    elif expected is s.DROP:
        assert receiver.check_receive(message) is s.DROP
        assert receiver.state is state
        with pytest.raises(LocalProtocolError):
            sender.check_send(message)
        assert sender.state is state
    else:
        assert receiver.check_receive(message) is expected
        assert receiver.state is expected
        assert sender.check_send(message) is expected
        assert sender.state is expected


def test_a_message_outside_the_session_is_never_a_table_event() -> None:
    from protocol.messages import Pake

    session = _session_in(s.State.VIEWING, Party.AGENT, Rights.VIEW)
    with pytest.raises(UnexpectedMessage, match="not a session message"):
        session.check_receive(Pake(body=bytes(33)))


def test_a_session_has_an_agent_end_and_a_console_end_only() -> None:
    with pytest.raises(LocalProtocolError):
        s.Session(Party.RELAY)
