"""Bytes ⇄ messages: msgpack arrays `[tag, field, field, ...]`, strictly checked.

Every fault in received bytes becomes `DecodeError` (or `MessageTooLarge`),
never another exception: size is checked before msgpack allocates anything,
msgpack's own limits bound every string, blob and array, maps and extension
types are refused, and the message's own validation runs last.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

import msgpack

from protocol.errors import DecodeError, LocalProtocolError, MessageTooLarge
from protocol.limits import MAX_CONTROL_MESSAGE_SIZE, MAX_FIELDS, MAX_MESSAGE_SIZE
from protocol.messages import (
    ENVELOPE_TAGS,
    INNER_TAGS,
    MESSAGE_TYPES,
    InvalidField,
    Message,
    Sealed,
    Struct,
)

ENVELOPE_OVERHEAD = 64
"""Bytes an envelope adds around a sealed inner message (tag, counter, tag, headers)."""

MAX_ENVELOPE_SIZE = MAX_MESSAGE_SIZE + ENVELOPE_OVERHEAD
"""The largest WebSocket message anyone should accept."""


def encode(message: Message) -> bytes:
    """Serialise a message. Raises LocalProtocolError for an object that is not a message."""
    if not isinstance(message, Message):
        raise LocalProtocolError(f"not a message: {type(message).__name__}")
    return msgpack.packb(_to_wire(message), use_bin_type=True)  # type: ignore[no-any-return]


def _to_wire(obj: Struct) -> list[Any]:
    # msgpack packs IntEnum/IntFlag as ints and tuples as arrays: only nested records
    # need turning into arrays.
    plan = _PLANS.get(type(obj)) or _plan(type(obj))
    out: list[Any] = [obj.TAG] if isinstance(obj, Message) else []
    for name, nested in plan:
        value = getattr(obj, name)
        if nested is not None and value is not None:
            value = [_to_wire(r) for r in value] if nested[0] else _to_wire(value)
        out.append(value)
    return out


def decode_envelope(data: bytes, *, max_size: int = MAX_ENVELOPE_SIZE) -> Message:
    """Decode what travels between an end and the relay.

    Raises:
        MessageTooLarge: `data` is longer than `max_size`, or a field over its limit.
        DecodeError: anything else wrong, including an inner tag outside a Sealed box.
    """
    return _decode(data, max_size, ENVELOPE_TAGS, "an envelope")


def decode_control(data: bytes) -> Message:
    """Decode an envelope the relay must parse itself, under the control-size limit.

    The relay forwards `Sealed` boxes without looking inside; everything else it
    reads is small, so it is held to MAX_CONTROL_MESSAGE_SIZE unless it is Sealed.
    """
    if len(data) > MAX_CONTROL_MESSAGE_SIZE and not is_sealed(data):
        raise MessageTooLarge(f"control message of {len(data)} bytes is over the limit")
    return decode_envelope(data)


def decode_inner(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Decode a message opened from a Sealed box. Raises DecodeError / MessageTooLarge."""
    return _decode(data, max_size, INNER_TAGS, "a sealed")


_SEALED_PREFIX = bytes([0x92, Sealed.TAG])  # msgpack fixarray of 2, then the tag


def is_sealed(data: bytes) -> bool:
    """Does this envelope claim to be a `Sealed` box? The relay forwards those unread
    (it could not read them anyway); the receiving end's channel authenticates them."""
    return data[:2] == _SEALED_PREFIX


def _decode(data: bytes, max_size: int, tags: range, family: str) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise MessageTooLarge(f"message of {len(data)} bytes is over the {max_size}-byte limit")
    try:
        wire = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=max(MAX_FIELDS, 4096),
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData) as exc:
        # includes UnicodeDecodeError, StackError, FormatError, ExtraData, and limit faults
        raise DecodeError(f"not a valid message: {type(exc).__name__}") from None
    if not isinstance(wire, list) or not wire:
        raise DecodeError("a message is a non-empty array")
    tag = wire[0]
    if type(tag) is not int:
        raise DecodeError("message tag is not an integer")
    if tag not in tags:
        raise DecodeError(f"tag {tag} is not {family} message")
    cls = MESSAGE_TYPES.get(tag)
    if cls is None:
        raise DecodeError(f"unknown message tag {tag}")
    try:
        return _build(cls, wire[1:])  # type: ignore[return-value]
    except InvalidField as exc:
        error = MessageTooLarge if exc.too_large else DecodeError
        raise error(str(exc)) from None


def _build(cls: type[Struct], values: list[Any]) -> Struct:
    plan = _PLANS.get(cls) or _plan(cls)
    if len(values) != len(plan):
        raise InvalidField(f"{cls.__name__}: expected {len(plan)} fields, got {len(values)}")
    kwargs: dict[str, Any] = {}
    for (name, nested), value in zip(plan, values, strict=True):
        if nested is not None and value is not None:
            many, record, max_items = nested
            if many:
                if not isinstance(value, list):
                    raise InvalidField(f"{cls.__name__}.{name}: expected a list")
                if len(value) > max_items:
                    raise InvalidField(f"{cls.__name__}.{name}: too many items", too_large=True)
                value = tuple([_build_record(record, v, cls, name) for v in value])
            else:
                value = _build_record(record, value, cls, name)
        kwargs[name] = value
    return cls(**kwargs)


def _build_record(record: type[Struct], value: Any, owner: type, name: str) -> Struct:
    if not isinstance(value, list):
        raise InvalidField(f"{owner.__name__}.{name}: expected a {record.__name__} array")
    return _build(record, value)


_Nested = tuple[bool, type[Struct], int]
_PLANS: dict[type, list[tuple[str, _Nested | None]]] = {}


def _plan(cls: type[Struct]) -> list[tuple[str, _Nested | None]]:
    """Per class, once: each field's name and, for nested records, how to build them."""
    hints = typing.get_type_hints(cls)
    plan: list[tuple[str, _Nested | None]] = []
    for spec in fields(cls):  # type: ignore[arg-type]
        tp = hints[spec.name]
        many = typing.get_origin(tp) is tuple
        nested: _Nested | None = None
        for candidate in typing.get_args(tp) or (tp,):
            if isinstance(candidate, type) and issubclass(candidate, Struct):
                nested = (many, candidate, spec.metadata.get("max_items", 0))
        plan.append((spec.name, nested))
    _PLANS[cls] = plan
    return plan
