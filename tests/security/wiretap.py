"""Reading what crossed the hostile relay, with the keys only the two ends hold.

The hostile relay records bytes; a test that also holds the console's end can open
the sealed boxes afterwards and say exactly which inner messages the agent's socket
sent and when. The relay itself cannot: that is the point of the other tests.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from protocol.codec import decode_envelope, decode_inner
from protocol.connection import ConsoleConnection
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import Message, Party, Sealed
from tests.security.hostile import Wire

COUNTER_SIZE = 8


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


@dataclass(frozen=True)
class Seen:
    wire: Wire
    envelope: Message
    inner: Message | None  # the opened Sealed box, when it was one


def open_box(conn: ConsoleConnection, sender: Party, box: bytes) -> Message:
    """Open a sealed box sent by `sender` with the console's keys (test-only reach
    into the channel: the keys never leave the ends in the product)."""
    channel = conn._channel
    assert channel is not None
    aead = channel._receive if sender is Party.AGENT else channel._send
    ad = f"zgoda/{PROTOCOL_VERSION}/sealed/from-{sender.name.lower()}".encode()
    nonce = b"\x00" * 4 + box[:COUNTER_SIZE]
    return decode_inner(aead.decrypt(nonce, box[COUNTER_SIZE:], ad))


def transcript(conn: ConsoleConnection, wire: list[Wire], role: Party) -> list[Seen]:
    """What `role` sent (upward on its own leg), each sealed box opened."""
    seen = []
    for w in wire:
        if w.role is not role or not w.upward:
            continue
        envelope = decode_envelope(w.data)
        inner = open_box(conn, role, envelope.box) if isinstance(envelope, Sealed) else None
        seen.append(Seen(w, envelope, inner))
    return seen


def names(seen: list[Seen]) -> list[str]:
    return [type(s.inner or s.envelope).__name__ for s in seen]
