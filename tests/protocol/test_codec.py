from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.codec import (
    MAX_ENVELOPE_SIZE,
    decode_control,
    decode_envelope,
    decode_inner,
    encode,
)
from protocol.errors import DecodeError, LocalProtocolError, MessageTooLarge
from protocol.limits import MAX_CONTROL_MESSAGE_SIZE, MAX_MESSAGE_SIZE

from .examples import EXAMPLES


def decode(data: bytes) -> m.Message:
    tag = msgpack.unpackb(data)[0]
    return decode_envelope(data) if tag < 32 else decode_inner(data)


def test_every_message_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(m.MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", list(EXAMPLES.values()), ids=lambda x: type(x).__name__)
def test_every_message_survives_a_round_trip(message: m.Message) -> None:
    assert decode(encode(message)) == message


def test_envelope_decoder_refuses_inner_messages_and_back() -> None:
    with pytest.raises(DecodeError, match="not an envelope"):
        decode_envelope(encode(EXAMPLES[m.KeyEvent]))
    with pytest.raises(DecodeError, match="not a sealed"):
        decode_inner(encode(EXAMPLES[m.Pake]))


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ([30], "unknown message tag"),
        ([99], "not an envelope"),
        ([m.Pake.TAG], "expected 1 fields"),
        ([m.Pake.TAG, bytes(33), 1], "expected 1 fields"),
        ([m.Pake.TAG, "x" * 33], "expected bytes"),
        ([m.Claimed.TAG, True], "expected a number"),
        ([m.ClaimNameplate.TAG, "482", 1.5], "expected int"),
        ([m.Abort.TAG, 99], "not a AbortReason"),
        ([m.Pake.TAG, bytes(32)], "shorter than 33"),
        (["x"], "tag is not an integer"),
        ({"tag": 9}, "not a valid message"),
        (7, "non-empty array"),
        ([], "non-empty array"),
    ],
)
def test_malformed_envelopes_are_decode_errors(wire: object, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_envelope(msgpack.packb(wire, use_bin_type=True))


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ([m.KeyEvent.TAG, "enterr", True, 0], "unknown key"),
        ([m.KeyEvent.TAG, "a", True, 1 << 10], "unknown flag bits"),
        ([m.Frame.TAG, 1, True, 0, 100, 100, [[90, 90, 20, 20, 1, b""]]], "outside the 100x100"),
        ([m.Frame.TAG, 1, True, 0, 100, 100, [[0, 0, 1]]], "expected 6 fields"),
        ([m.Frame.TAG, 1, True, 0, 100, 100, "regions"], "expected a list"),
        ([m.Frame.TAG, -1, True, 0, 100, 100, []], "outside"),
        ([m.Region.__name__ and m.Cursor.TAG, 0, 0, True, [1, 1, 0, 0, b"abc"]], "rgba"),
        ([m.MonitorLayout.TAG, [], 0], "at least one monitor"),
        ([m.Scroll.TAG, 0, 10_000, 0, 0], "outside"),
        ([m.Frame.TAG, 1, True, 0, 100, 100, [[0, 0, 1, 1, 3, b"12"]]], "SOLID"),
        ([m.Ping.TAG, 1, float("nan")], "expected int"),
        ([m.ConsentPending.TAG, float("inf")], "finite"),
    ],
)
def test_malformed_inner_messages_are_decode_errors(wire: object, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_inner(msgpack.packb(wire, use_bin_type=True))


def test_oversize_is_refused_before_unpacking() -> None:
    too_big = b"\x91" + b"\x00" * MAX_ENVELOPE_SIZE
    with pytest.raises(MessageTooLarge):
        decode_envelope(too_big)
    with pytest.raises(MessageTooLarge):
        decode_inner(b"\x00" * (MAX_MESSAGE_SIZE + 1))


def test_a_field_over_its_limit_is_message_too_large() -> None:
    with pytest.raises(MessageTooLarge):
        decode_inner(msgpack.packb([m.TypeText.TAG, "a" * 5000]))
    regions = [[0, 0, 1, 1, 3, b"1234"]] * (m.MAX_REGIONS_PER_FRAME + 1)
    with pytest.raises(DecodeError):
        decode_inner(msgpack.packb([m.Frame.TAG, 1, True, 0, 100, 100, regions]))


def test_relay_reads_control_messages_under_a_small_limit_but_forwards_big_sealed_boxes() -> None:
    big_claim = msgpack.packb([m.AuditReport.TAG, 2, 0, "x" * MAX_CONTROL_MESSAGE_SIZE])
    with pytest.raises(MessageTooLarge):
        decode_control(big_claim)
    sealed = encode(m.Sealed(box=bytes(100_000)))
    assert decode_control(sealed) == m.Sealed(box=bytes(100_000))


def test_maps_extension_types_and_deep_nesting_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode_envelope(msgpack.packb([m.Pake.TAG, {"a": 1}]))
    with pytest.raises(DecodeError):
        decode_envelope(msgpack.packb([m.Pake.TAG, msgpack.ExtType(1, b"x")]))
    deep = b"\x91" * 5000 + b"\x00"
    with pytest.raises(DecodeError):
        decode_envelope(deep)
    with pytest.raises(DecodeError):
        decode_envelope(encode(EXAMPLES[m.Pake]) + b"\x00")  # trailing bytes
    with pytest.raises(DecodeError):
        decode_envelope(b"\x92\x0c\xa3\xff\xfe\xfd")  # invalid UTF-8 string


def test_building_an_invalid_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match=r"KeyEvent\.key"):
        m.KeyEvent(key="a" * 17, down=True)
    with pytest.raises(LocalProtocolError, match="expected bool"):
        m.KeyEvent(key="a", down=1)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="is required"):
        m.ConsentGranted(rights=None)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="not a message"):
        encode(m.REGION if hasattr(m, "REGION") else object())  # type: ignore[arg-type]


def test_enums_and_numbers_are_normalised_when_built() -> None:
    msg = m.ConsentGranted(rights=2)  # type: ignore[arg-type]
    assert msg.rights is m.Rights.CONTROL
    assert isinstance(m.Claimed(expires_at=5).expires_at, float)
    assert m.Frame(frame_id=1, captured_at_ns=0, width=1, height=1, regions=[]).regions == ()  # type: ignore[arg-type]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_message_or_a_decode_error(data: bytes) -> None:
    for decoder in (decode_envelope, decode_inner, decode_control):
        try:
            message = decoder(data)
        except DecodeError:
            continue
        assert decode(encode(message)) == message


_wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=7),
    max_leaves=30,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(m.MESSAGE_TYPES)), st.lists(_wire_values, max_size=8))
def test_well_tagged_arrays_of_anything_decode_or_raise_decode_error(
    tag: int, fields: list[object]
) -> None:
    data = msgpack.packb([tag, *fields], use_bin_type=True)
    try:
        message = decode(data)
    except DecodeError:
        return
    assert tag == message.TAG


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(list(EXAMPLES.values())), st.data())
def test_mutated_valid_messages_decode_or_raise_decode_error(
    message: m.Message, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    for decoder in (decode_envelope, decode_inner):
        with contextlib.suppress(DecodeError):
            decoder(bytes(raw))
