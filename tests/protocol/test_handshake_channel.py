from __future__ import annotations

import pytest

from protocol.channel import OVERHEAD, Channel
from protocol.codes import PhoneCode
from protocol.errors import (
    ChannelError,
    GapError,
    HandshakeError,
    LocalProtocolError,
    ReflectionError,
    ReplayError,
    TamperError,
    TruncatedError,
    WrongCodeError,
)
from protocol.handshake import Handshake, SessionKeys
from protocol.messages import Confirm, Pake, Party

CODE = PhoneCode("482", "913775")


def keyed(
    console_code: PhoneCode = CODE, agent_code: PhoneCode = CODE
) -> tuple[SessionKeys, SessionKeys]:
    console, agent = Handshake(Party.CONSOLE, console_code), Handshake(Party.AGENT, agent_code)
    to_agent, to_console = console.start(), agent.start()
    confirm_from_console = console.receive_pake(to_console)
    confirm_from_agent = agent.receive_pake(to_agent)
    return console.receive_confirm(confirm_from_agent), agent.receive_confirm(confirm_from_console)


def test_same_code_gives_mirrored_keys() -> None:
    console, agent = keyed()
    assert console.send == agent.receive and console.receive == agent.send
    assert console.send != console.receive


def test_wrong_secret_is_a_wrong_code_error_on_both_ends() -> None:
    console, agent = (
        Handshake(Party.CONSOLE, CODE),
        Handshake(Party.AGENT, PhoneCode("482", "913776")),
    )
    a, b = console.start(), agent.start()
    c1, c2 = console.receive_pake(b), agent.receive_pake(a)
    with pytest.raises(WrongCodeError):
        console.receive_confirm(c2)
    with pytest.raises(WrongCodeError):
        agent.receive_confirm(c1)


def test_keys_are_bound_to_the_nameplate() -> None:
    with pytest.raises(WrongCodeError):
        keyed(CODE, PhoneCode("483", CODE.secret))


def test_keys_differ_every_session_with_the_same_code() -> None:
    assert keyed()[0].send != keyed()[0].send


def test_reflected_pake_message_is_a_handshake_error() -> None:
    agent = Handshake(Party.AGENT, CODE)
    own = agent.start()
    with pytest.raises(HandshakeError):
        agent.receive_pake(own)


@pytest.mark.parametrize("body", [bytes(33), b"\x41" + b"\xff" * 32, b"\x42" + bytes(32)])
def test_garbage_pake_message_is_a_handshake_error(body: bytes) -> None:
    agent = Handshake(Party.AGENT, CODE)
    agent.start()
    with pytest.raises(HandshakeError):
        agent.receive_pake(Pake(body=body))


def test_reflected_confirmation_is_a_wrong_code_error() -> None:
    console, agent = Handshake(Party.CONSOLE, CODE), Handshake(Party.AGENT, CODE)
    a, b = console.start(), agent.start()
    own_confirm = console.receive_pake(b)
    agent.receive_pake(a)
    with pytest.raises(WrongCodeError):
        console.receive_confirm(own_confirm)


def test_handshake_steps_out_of_order_are_local_errors() -> None:
    hs = Handshake(Party.CONSOLE, CODE)
    with pytest.raises(LocalProtocolError):
        hs.receive_pake(Pake(body=bytes(33)))
    with pytest.raises(LocalProtocolError):
        hs.receive_confirm(Confirm(mac=bytes(32)))
    hs.start()
    with pytest.raises(LocalProtocolError):
        hs.start()
    with pytest.raises(LocalProtocolError):
        Handshake(Party.RELAY, CODE)


@pytest.fixture
def channels() -> tuple[Channel, Channel]:
    console, agent = keyed()
    return Channel(console), Channel(agent)


def test_channel_opens_in_order(channels: tuple[Channel, Channel]) -> None:
    console, agent = channels
    boxes = [console.seal(f"m{i}".encode()) for i in range(3)]
    assert [agent.open(b) for b in boxes] == [b"m0", b"m1", b"m2"]
    assert console.open(agent.seal(b"back")) == b"back"
    assert len(boxes[0]) == 2 + OVERHEAD


def test_replayed_box_is_a_replay_error(channels: tuple[Channel, Channel]) -> None:
    console, agent = channels
    box = console.seal(b"click")
    agent.open(box)
    with pytest.raises(ReplayError):
        agent.open(box)


def test_reordered_boxes_are_a_gap_error(channels: tuple[Channel, Channel]) -> None:
    console, agent = channels
    console.seal(b"first")
    second = console.seal(b"second")
    with pytest.raises(GapError):
        agent.open(second)


@pytest.mark.parametrize("position", [0, 7, 8, 20, -1])
def test_any_flipped_bit_is_a_tamper_error(
    channels: tuple[Channel, Channel], position: int
) -> None:
    console, agent = channels
    box = bytearray(console.seal(b"type: rm -rf"))
    box[position] ^= 0x01
    with pytest.raises(TamperError):
        agent.open(bytes(box))


def test_truncated_box_is_a_truncated_error(channels: tuple[Channel, Channel]) -> None:
    console, agent = channels
    with pytest.raises(TruncatedError):
        agent.open(console.seal(b"x")[: OVERHEAD - 1])


def test_own_box_sent_back_is_a_reflection_error(channels: tuple[Channel, Channel]) -> None:
    console, _ = channels
    with pytest.raises(ReflectionError):
        console.open(console.seal(b"frame"))


def test_a_failed_channel_opens_nothing_more(channels: tuple[Channel, Channel]) -> None:
    console, agent = channels
    first = console.seal(b"1")
    with pytest.raises(TamperError):
        agent.open(first[:-1] + bytes([first[-1] ^ 1]))
    with pytest.raises(ChannelError, match="already failed"):
        agent.open(first)
