"""One test per rule of the consent table, named for who does what (STYLE §8)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.codec import decode_envelope, encode
from protocol.codes import PhoneCode
from protocol.connection import (
    AgentConnection,
    ConsentRequested,
    Dropped,
    EscalationRequested,
    Keyed,
)
from protocol.errors import LocalProtocolError, UnexpectedMessage, WrongCodeError
from protocol.loopback import Pair
from protocol.messages import (
    Abort,
    AbortReason,
    AuditKind,
    ConsentGranted,
    DenyReason,
    Encoding,
    EndReason,
    Frame,
    HandBackEnded,
    KeyEvent,
    Party,
    PointerMove,
    Region,
    Rights,
    SessionRequest,
    TypeText,
)
from protocol.session import State

from .helpers import ended, forge, of_type

FRAME = Frame(
    frame_id=1,
    captured_at_ns=1,
    width=64,
    height=64,
    regions=(
        Region(x=0, y=0, width=8, height=8, encoding=Encoding.SOLID, data=b"\x00\x00\xff\xff"),
    ),
)
KEY = KeyEvent(key="a", down=True)


def agent_of(pair: Pair) -> AgentConnection:
    assert pair.agent is not None
    return pair.agent


# -- rule 1: no frame and no input before consent


def test_agent_cannot_send_a_frame_before_consent() -> None:
    pair = Pair()
    pair.user_connects()
    agent = agent_of(pair)
    assert agent.state is State.CONSENT_PENDING
    with pytest.raises(LocalProtocolError, match="consent pending"):
        agent.send(FRAME)
    assert agent.state is State.CONSENT_PENDING  # a local error changes nothing


def test_console_cannot_send_input_before_consent() -> None:
    pair = Pair()
    pair.user_connects()
    with pytest.raises(LocalProtocolError):
        pair.console.send(PointerMove(x=1, y=1))


def test_agent_rejects_forged_input_before_consent_and_ends_the_session() -> None:
    pair = Pair()
    pair.user_connects()
    forge(pair.console, TypeText(text="format c:"))
    pair.pump()
    agent_end = ended(pair.agent_events)
    assert agent_end is not None and isinstance(agent_end.error, UnexpectedMessage)
    assert agent_end.close_code == UnexpectedMessage.close_code
    assert not of_type(pair.agent_events, TypeText)
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.reason is EndReason.PROTOCOL_ERROR


def test_console_rejects_a_frame_forged_before_consent() -> None:
    pair = Pair()
    pair.user_connects()
    forge(agent_of(pair), FRAME)
    pair.pump()
    assert pair.console.state is State.FAILED
    assert not of_type(pair.console_events, Frame)


# -- rule 2: input never in view-only or hand-back


def test_agent_drops_input_in_view_only() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    agent.send(FRAME)
    pair.pump()
    assert of_type(pair.console_events, Frame) == [FRAME]
    with pytest.raises(LocalProtocolError):
        pair.console.send(KEY)
    forge(pair.console, KEY)
    pair.pump()
    assert not of_type(pair.agent_events, KeyEvent)
    assert of_type(pair.agent_events, Dropped) == [Dropped(KEY, State.VIEWING)]
    assert agent.state is State.VIEWING  # a race, not an attack: the session goes on


def test_user_may_grant_less_than_asked() -> None:
    pair = Pair(rights=Rights.CONTROL)
    agent = pair.consented(Rights.VIEW)
    assert agent.state is State.VIEWING and pair.console.state is State.VIEWING


def test_agent_drops_input_during_hand_back_and_sends_no_frame() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.request_hand_back()
    pair.pump()
    assert agent.state is State.HAND_BACK_CONTROLLING
    assert pair.console.state is State.HAND_BACK_CONTROLLING
    forge(pair.console, KEY)
    pair.pump()
    assert not of_type(pair.agent_events, KeyEvent)
    with pytest.raises(LocalProtocolError):
        agent.send(FRAME)


def test_console_fails_the_session_if_an_agent_sends_a_frame_during_hand_back() -> None:
    pair = Pair()
    agent = pair.consented()
    agent.start_hand_back()
    pair.pump()
    forge(agent, FRAME)
    pair.pump()
    assert pair.console.state is State.FAILED
    assert not of_type(pair.console_events, Frame)


def test_input_racing_with_the_users_hand_back_is_dropped_not_fatal() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.send(KEY)  # on the wire ...
    agent.start_hand_back()  # ... when the user takes the keyboard
    agent_data = agent.data_to_send()
    for data in pair.console.data_to_send():
        agent.receive_data(data)
    for data in agent_data:
        pair._from_agent(decode_envelope(data), data)
    pair.pump()
    assert of_type(pair.agent_events, Dropped) == [Dropped(KEY, State.HAND_BACK_CONTROLLING)]
    assert agent.state is State.HAND_BACK_CONTROLLING


# -- rule 3: hand-back ends only by the agent's user


def test_console_cannot_end_a_hand_back() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.request_hand_back()
    pair.pump()
    with pytest.raises(LocalProtocolError):
        pair.console.send(HandBackEnded())
    forge(pair.console, HandBackEnded())
    pair.pump()
    assert agent.state is State.FAILED
    assert not of_type(pair.agent_events, HandBackEnded)


def test_users_done_restores_the_rights_held_before() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    agent.start_hand_back()
    pair.pump()
    assert pair.console.state is State.HAND_BACK_VIEWING
    agent.end_hand_back()
    pair.pump()
    assert agent.state is State.VIEWING and pair.console.state is State.VIEWING


# -- rule 4: escalation needs a new consent


def test_escalation_to_control_needs_a_new_click() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    pair.console.request_rights(Rights.CONTROL)
    pair.pump()
    assert agent.state is State.ESCALATING
    assert of_type(pair.agent_events, EscalationRequested) == [EscalationRequested(Rights.CONTROL)]
    forge(pair.console, KEY)
    pair.pump()
    assert not of_type(pair.agent_events, KeyEvent)
    agent.grant(Rights.CONTROL)
    pair.pump()
    assert pair.console.state is State.CONTROLLING
    pair.console.send(KEY)
    pair.pump()
    assert of_type(pair.agent_events, KeyEvent) == [KEY]
    kinds = [r.kind for r in pair.audit]
    assert AuditKind.ESCALATION_GRANTED in kinds


def test_user_denies_escalation_and_viewing_goes_on() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    pair.console.request_rights(Rights.CONTROL)
    pair.pump()
    agent.deny()
    pair.pump()
    assert agent.state is State.VIEWING and pair.console.state is State.VIEWING
    assert pair.audit[-1].kind is AuditKind.ESCALATION_DENIED


def test_agent_cannot_grant_more_than_the_console_asked() -> None:
    pair = Pair(rights=Rights.VIEW)
    pair.user_connects()
    agent = agent_of(pair)
    with pytest.raises(LocalProtocolError, match="beyond the request"):
        agent.grant(Rights.CONTROL)


def test_console_refuses_control_it_did_not_ask_for() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    forge(agent, ConsentGranted(rights=Rights.CONTROL))
    pair.pump()
    assert pair.console.state is State.FAILED


def test_user_takes_control_away_and_racing_input_is_dropped() -> None:
    pair = Pair()
    agent = pair.consented()
    agent.reduce_to_view()
    pair.pump()
    assert pair.console.state is State.VIEWING
    forge(pair.console, KEY)
    pair.pump()
    assert of_type(pair.agent_events, Dropped)


def test_consultant_steps_down_to_view_at_once() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.request_rights(Rights.VIEW)
    assert pair.console.state is State.VIEWING
    pair.pump()
    assert agent.state is State.VIEWING and pair.console.state is State.VIEWING


def test_users_hand_back_cancels_a_pending_escalation() -> None:
    pair = Pair(rights=Rights.VIEW)
    agent = pair.consented(Rights.VIEW)
    pair.console.request_rights(Rights.CONTROL)
    pair.pump()
    agent.start_hand_back()
    pair.pump()
    assert pair.console.state is State.HAND_BACK_VIEWING
    with pytest.raises(LocalProtocolError):
        agent.grant(Rights.CONTROL)
    agent.end_hand_back()
    pair.pump()
    assert pair.console.state is State.VIEWING


# -- rule 5: after the end nothing is accepted


def test_after_the_end_nothing_is_sent_or_accepted() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.send(KEY)
    late = pair.console.data_to_send()
    agent.end(EndReason.USER_ENDED)
    pair.pump()
    assert pair.console.state is State.ENDED
    for data in late:
        agent.receive_data(data)
    assert not of_type(agent.events_received(), KeyEvent)
    with pytest.raises(LocalProtocolError):
        agent.send(FRAME)
    with pytest.raises(LocalProtocolError):
        pair.console.send(KEY)
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.by is Party.AGENT
    assert pair.audit[-1].kind is AuditKind.ENDED
    agent.end(EndReason.USER_ENDED)  # twice is harmless


# -- consent itself


def test_user_denies_and_the_consultant_is_told() -> None:
    pair = Pair()
    pair.user_connects()
    agent_of(pair).deny()
    pair.pump()
    assert pair.console.state is State.ENDED
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.reason is EndReason.DENIED
    assert [r.kind for r in pair.audit][-2:] == [AuditKind.DENIED, AuditKind.ENDED]


def test_unanswered_prompt_is_denied_never_accepted() -> None:
    pair = Pair()
    pair.user_connects()
    agent_of(pair).deny(DenyReason.TIMEOUT)
    pair.pump()
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.detail == "TIMEOUT"


def test_prompt_names_the_attested_consultant_and_ticket() -> None:
    pair = Pair()
    pair.user_connects()
    (prompt,) = of_type(pair.agent_events, ConsentRequested)
    assert isinstance(prompt, ConsentRequested)
    assert prompt.attestation.consultant == "Anna Nowak"
    assert prompt.request.ticket_id == "HD-1042"
    assert prompt.attestation.org == "Example Sp. z o.o."


def test_agent_refuses_a_request_signed_by_another_relay() -> None:
    pair = Pair()
    pair.agent = AgentConnection(
        code=pair.code, relay_key=Ed25519PrivateKey.generate().public_key(), org=None
    )
    pair.pump()
    assert not of_type(pair.agent_events, ConsentRequested)
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.reason is EndReason.DENIED
    assert console_end.detail == "ATTESTATION_INVALID"


def test_agent_refuses_a_console_that_lies_about_who_it_is() -> None:
    pair = Pair()
    pair.console.consultant = "Administrator"  # signed name was Anna Nowak
    pair.user_connects()
    assert not of_type(pair.agent_events, ConsentRequested)
    agent_end = ended(pair.agent_events)
    assert agent_end is not None and "does not match" in agent_end.detail


def test_agent_refuses_an_attestation_for_another_organisation() -> None:
    pair = Pair()
    pair.user_connects(org="Other Org")
    assert not of_type(pair.agent_events, ConsentRequested)


def test_console_cannot_ask_twice() -> None:
    pair = Pair()
    pair.user_connects()
    forge(
        pair.console,
        SessionRequest(
            consultant="x", ticket_id="y", ticket_title="z", rights=Rights.CONTROL, attestation=b""
        ),
    )
    pair.pump()
    assert agent_of(pair).state is State.FAILED


# -- the code


def test_mistyped_code_ends_both_ends_and_burns_the_nameplate() -> None:
    pair = Pair()
    wrong = PhoneCode(pair.code.nameplate, f"{(int(pair.code.secret) + 1) % 10**6:06d}")
    pair.user_connects(wrong)
    for events in (pair.agent_events, pair.console_events):
        end = ended(events)
        assert end is not None and end.reason is EndReason.WRONG_CODE
        assert isinstance(end.error, WrongCodeError)
        assert not of_type(events, Keyed)
    assert Abort(reason=AbortReason.WRONG_CODE) in pair.aborts
    assert not pair.audit or all(r.kind is not AuditKind.GRANTED for r in pair.audit)


def test_agent_user_typing_the_code_is_what_creates_the_agent_end() -> None:
    pair = Pair()
    assert pair.agent is None  # no agent end, so nothing can reach the PC
    assert pair.console.state is State.PAIRING
    sent = [type(m).__name__ for who, m in pair.wire if who == "console"]
    assert sent == ["AllocateNameplate"]


def test_frames_and_input_flow_after_consent() -> None:
    pair = Pair()
    agent = pair.consented()
    agent.send(FRAME)
    pair.console.send(TypeText(text="zażółć"))
    pair.pump()
    assert of_type(pair.console_events, Frame) == [FRAME]
    assert of_type(pair.agent_events, TypeText) == [TypeText(text="zażółć")]
    assert encode(FRAME) not in [encode(m) for _, m in pair.wire]  # the relay sees only Sealed


def test_consultant_steps_down_then_asks_again_and_the_users_allow_grants_control() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.request_rights(Rights.VIEW)
    pair.console.request_rights(Rights.CONTROL)  # before the agent saw the step down
    pair.pump()
    assert agent.state is State.ESCALATING
    assert pair.console.state is State.ESCALATING
    agent.grant(Rights.CONTROL)
    pair.pump()
    assert pair.console.state is State.CONTROLLING
