"""A dropped link resumes the same consented session: same keys, no new click, nothing lost."""

from __future__ import annotations

import pytest

from protocol.codec import decode_envelope, encode
from protocol.connection import (
    DELIVERY_ACK_EVERY,
    ConsentRequested,
    ConsoleConnection,
    LinkLost,
    LinkRestored,
    PeerAwayEvent,
)
from protocol.errors import GapError, LocalProtocolError, ReplayError
from protocol.limits import RETRANSMIT_BUFFER_BYTES
from protocol.loopback import Pair
from protocol.messages import (
    AuditKind,
    Encoding,
    EndReason,
    Frame,
    KeyEvent,
    Region,
    Rewind,
    Sealed,
    SessionOpened,
    TypeText,
)
from protocol.session import State

from .helpers import ended, of_type


def keys(text: str) -> list[KeyEvent]:
    return [KeyEvent(key=ch, down=True) for ch in text]


def test_input_lost_in_a_dropped_link_arrives_once_after_the_agent_resumes() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.down.add("agent")  # the link is dead but nobody has noticed yet
    for key in keys("abc"):
        pair.console.send(key)
    pair.pump()
    assert pair.lost == 3
    assert pair.drop("agent") is True
    assert of_type(pair.agent_events, LinkLost)
    assert of_type(pair.console_events, PeerAwayEvent)
    for key in keys("de"):  # typed while the agent is away: held, not lost
        pair.console.send(key)
    pair.restore("agent")
    assert of_type(pair.agent_events, KeyEvent) == keys("abcde")
    assert of_type(pair.agent_events, LinkRestored)
    assert agent.state is State.CONTROLLING
    assert len(of_type(pair.agent_events, ConsentRequested)) == 1  # no new click needed


def test_frames_held_while_the_console_is_away_arrive_after_it_returns() -> None:
    pair = Pair()
    agent = pair.consented()
    assert pair.drop("console") is True
    frame = Frame(
        frame_id=1,
        captured_at_ns=1,
        width=8,
        height=8,
        regions=(Region(x=0, y=0, width=8, height=8, encoding=Encoding.SOLID, data=bytes(4)),),
    )
    agent.send(frame)
    pair.pump()
    assert not of_type(pair.console_events, Frame)
    pair.restore("console")
    assert of_type(pair.console_events, Frame) == [frame]
    pair.console.send(TypeText(text="ok"))
    pair.pump()
    assert of_type(pair.agent_events, TypeText) == [TypeText(text="ok")]


def test_a_link_lost_before_the_keys_ends_the_attempt() -> None:
    pair = Pair()
    assert pair.console.link_lost() is False
    end = ended(pair.console.events_received())
    assert end is not None
    assert end.reason is EndReason.PEER_LOST


def test_resume_without_a_lost_link_is_a_local_error() -> None:
    pair = Pair()
    pair.consented()
    with pytest.raises(LocalProtocolError):
        pair.console.resume()


def test_a_resume_that_needs_more_than_was_kept_ends_the_session() -> None:
    pair = Pair()
    pair.consented()
    pair.down.add("agent")  # silently dead: everything below is lost on the way
    big = "x" * 4000
    for _ in range(RETRANSMIT_BUFFER_BYTES // 4000 + 50):
        pair.console.send(TypeText(text=big))
    pair.pump()
    pair.drop("agent")
    pair.restore("agent")
    end = ended(pair.console_events)
    assert end is not None
    assert end.reason is EndReason.PEER_LOST
    assert "too much was lost" in end.detail


def test_a_relay_that_rewinds_too_far_makes_the_channel_fail() -> None:
    pair = Pair()
    agent = pair.consented()
    for key in keys("ab"):
        pair.console.send(key)
    pair.pump()
    pair.drop("agent")  # the console now waits for the agent's Rewind
    pair.console.receive_data(encode(Rewind(next_counter=0)))  # forged by the relay
    for data in pair.console.data_to_send():
        if isinstance(decode_envelope(data), Sealed):
            agent.receive_data(data)
    end = ended(agent.events_received())
    assert end is not None
    assert isinstance(end.error, ReplayError | GapError)
    assert of_type(pair.agent_events, KeyEvent) == keys("ab")  # nothing twice


def test_what_the_peer_has_received_is_dropped_from_the_resend_buffer() -> None:
    pair = Pair()
    agent = pair.consented()
    for _ in range(1000):
        pair.console.send(KeyEvent(key="a", down=True))
        pair.pump()
    # the agent says what it has every DELIVERY_ACK_EVERY boxes
    assert len(pair.console._retained) <= DELIVERY_ACK_EVERY + 1
    assert agent.state is State.CONTROLLING


def test_the_relays_grace_period_reaches_both_ends() -> None:
    pair = Pair()
    agent = pair.consented()
    assert agent.grace_seconds == 30.0
    agent.receive_data(
        encode(SessionOpened(session_id="other", resume_token=b"x" * 16, resume_grace_seconds=3))
    )
    assert agent.grace_seconds == 30.0  # only the first SessionOpened counts
    fresh = ConsoleConnection(ticket_id="T", consultant="A", ticket_title="t")
    fresh.receive_data(
        encode(SessionOpened(session_id="s", resume_token=b"x" * 16, resume_grace_seconds=3))
    )
    assert fresh.grace_seconds == 3.0


def test_consent_receipts_queued_when_the_link_drops_reach_the_relay_after_the_resume() -> None:
    pair = Pair()
    agent = pair.consented()
    audited = len(pair.audit)
    agent.start_hand_back()  # a receipt (and a sealed message) queued ...
    pair.drop("agent")  # ... when the link drops, before anything was sent
    assert len(pair.audit) == audited  # nothing went out on the dead link
    pair.restore("agent")
    assert [r.kind for r in pair.audit[audited:]] == [AuditKind.HAND_BACK_STARTED]
    assert pair.console.state is State.HAND_BACK_CONTROLLING
