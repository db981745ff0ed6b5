"""Test helpers: the in-memory pair lives in protocol.loopback; these add what attackers do."""

from __future__ import annotations

from protocol.codec import encode
from protocol.connection import Connection, Event, SessionEnded
from protocol.messages import Message, Sealed


def forge(sender: Connection, message: Message) -> None:
    """Seal `message` with the sender's real keys but without its own table's check.

    This is what a modified console (or agent) would do: the receiving end's table
    is the only thing left to stop it.
    """
    channel = sender._channel
    assert channel is not None
    sender._outgoing.append(encode(Sealed(box=channel.seal(encode(message)))))


def ended(events: list[Event]) -> SessionEnded | None:
    found = [e for e in events if isinstance(e, SessionEnded)]
    assert len(found) <= 1, "a connection reports its end once"
    return found[0] if found else None


def of_type(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]
