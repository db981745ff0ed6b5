"""The connection ends as a shell sees them: bytes in, events and bytes out."""

from __future__ import annotations

import msgpack
import pytest

from protocol.codec import decode_envelope, encode
from protocol.connection import (
    CodeReady,
    ConsoleConnection,
    Keyed,
    NameplateClaimed,
    PeerConnected,
    SessionIdAssigned,
)
from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    MessageTooLarge,
    ReplayError,
    TamperError,
    UnexpectedMessage,
)
from protocol.loopback import Pair
from protocol.messages import (
    Abort,
    AbortReason,
    Confirm,
    End,
    EndReason,
    KeyEvent,
    NameplateAllocated,
    Pake,
    Party,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    RelayError,
    RelayErrorCode,
    Sealed,
)
from protocol.session import State

from .helpers import ended, of_type


def console() -> ConsoleConnection:
    return ConsoleConnection(ticket_id="T-1", consultant="A", ticket_title="t", secret="123456")


def test_console_asks_for_a_nameplate_and_reports_the_code() -> None:
    conn = console()
    assert next(decode_envelope(d) for d in conn.data_to_send()).ticket_id == "T-1"  # type: ignore[attr-defined]
    conn.receive_data(encode(NameplateAllocated(nameplate="007", expires_at=5.0, attestation=b"")))
    (ready,) = conn.events_received()
    assert ready == CodeReady(conn.code, 5.0)  # type: ignore[arg-type]
    assert str(conn.code) == "007-123-456"


def test_the_opening_events_arrive_in_order() -> None:
    pair = Pair()
    pair.user_connects()
    kinds = [type(e) for e in pair.agent_events]
    assert kinds[:4] == [NameplateClaimed, SessionIdAssigned, PeerConnected, Keyed]
    assert pair.agent is not None and pair.agent.session_id == "s-1"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xc1", DecodeError),
        (msgpack.packb([99]), DecodeError),
        (b"\x00" * (9 * 1024 * 1024), MessageTooLarge),
        (encode(Confirm(mac=bytes(32))), UnexpectedMessage),  # before any Pake
        (encode(Sealed(box=bytes(40))), UnexpectedMessage),  # before keys
        (msgpack.packb([NameplateAllocated.TAG, "1", 1.0, b""]), DecodeError),
    ],
)
def test_bad_bytes_before_keys_end_with_a_close_code_and_an_abort(
    data: bytes, error: type[Exception]
) -> None:
    conn = console()
    conn.data_to_send()
    conn.receive_data(data)
    end = ended(conn.events_received())
    assert end is not None and isinstance(end.error, error)
    assert end.close_code == end.error.close_code and 4000 <= end.close_code < 5000
    assert [decode_envelope(d) for d in conn.data_to_send()] == [
        Abort(reason=AbortReason.PROTOCOL_ERROR)
    ]
    assert conn.state is State.FAILED
    conn.receive_data(data)  # after the end nothing is accepted, nothing is raised
    assert conn.events_received() == []


def test_a_second_nameplate_or_peer_joined_is_unexpected() -> None:
    conn = console()
    allocated = encode(NameplateAllocated(nameplate="007", expires_at=5.0, attestation=b""))
    conn.receive_data(allocated)
    conn.receive_data(encode(PeerJoined()))
    conn.receive_data(encode(PeerJoined()))
    end = ended(conn.events_received())
    assert end is not None and isinstance(end.error, UnexpectedMessage)


def test_pake_from_the_relay_before_peer_joined_is_unexpected() -> None:
    conn = console()
    conn.receive_data(encode(Pake(body=bytes(33))))
    end = ended(conn.events_received())
    assert end is not None and isinstance(end.error, UnexpectedMessage)


def test_tampering_in_transit_ends_both_ends_with_a_channel_error() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.send(KeyEvent(key="a", down=True))
    (data,) = pair.console.data_to_send()
    flipped = bytearray(data)
    flipped[-1] ^= 1
    agent.receive_data(bytes(flipped))
    end = ended(agent.events_received())
    assert end is not None and isinstance(end.error, TamperError)
    pair.pump()
    console_end = ended(pair.console_events)
    assert console_end is not None and console_end.reason is EndReason.PROTOCOL_ERROR
    assert console_end.by is Party.AGENT


def test_replay_in_transit_ends_the_session() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.send(KeyEvent(key="a", down=True))
    (data,) = pair.console.data_to_send()
    agent.receive_data(data)
    agent.receive_data(data)
    end = ended(agent.events_received())
    assert end is not None and isinstance(end.error, ReplayError)


def test_relay_error_ends_the_attempt_with_its_message() -> None:
    conn = console()
    conn.receive_data(
        encode(RelayError(code=RelayErrorCode.OUTSIDE_HOURS, message="Mon–Fri 8–18", retry_after=0))
    )
    end = ended(conn.events_received())
    assert end is not None and end.by is Party.RELAY and end.detail == "Mon–Fri 8–18"
    assert end.reason is EndReason.RELAY_REFUSED and end.error is None and end.close_code == 1000
    assert end.relay_code is RelayErrorCode.OUTSIDE_HOURS


def test_peer_left_ends_the_session() -> None:
    pair = Pair()
    agent = pair.consented()
    agent.receive_data(encode(PeerLeft()))
    end = ended(agent.events_received())
    assert end is not None and end.reason is EndReason.PEER_LOST
    pair.pump()
    with pytest.raises(LocalProtocolError):
        agent.send(KeyEvent(key="a", down=True))


def test_ping_is_answered_by_the_connection() -> None:
    pair = Pair()
    agent = pair.consented()
    pair.console.ping(42)
    pair.pump()
    (pong,) = of_type(pair.console_events, Pong)
    assert isinstance(pong, Pong) and pong.nonce == 42
    assert not of_type(pair.agent_events, Ping)
    assert agent.state is State.CONTROLLING


def test_sending_envelope_messages_or_without_keys_is_a_local_error() -> None:
    conn = console()
    with pytest.raises(LocalProtocolError, match="no live session"):
        conn.send(KeyEvent(key="a", down=True))
    pair = Pair()
    agent = pair.consented()
    with pytest.raises(LocalProtocolError, match="not a sealed message"):
        agent.send(Abort(reason=AbortReason.WRONG_CODE))


def test_end_before_keys_aborts_at_the_relay() -> None:
    conn = console()
    conn.data_to_send()
    conn.end(EndReason.CONSULTANT_ENDED)
    assert [decode_envelope(d) for d in conn.data_to_send()] == [
        Abort(reason=AbortReason.PROTOCOL_ERROR)
    ]
    end = ended(conn.events_received())
    assert end is not None and end.reason is EndReason.CONSULTANT_ENDED


def test_end_is_sealed_once_keyed() -> None:
    pair = Pair()
    pair.consented()
    pair.console.end(EndReason.CONSULTANT_ENDED, "done")
    (data,) = pair.console.data_to_send()
    assert isinstance(decode_envelope(data), Sealed)
    with pytest.raises(LocalProtocolError):
        pair.console.send(End(by=Party.CONSOLE, reason=EndReason.CONSULTANT_ENDED, detail=""))
