"""A hostile relay between the real agent engine and a real consultant client.

The agent is `agent.runner.SessionRunner` on Xvfb typing into a real Tk window; the
consultant speaks through `tests.security.hostile.HostileRelay`, a WebSocket
man-in-the-middle in front of the real relay process that can read, drop, hold,
reorder, replay, modify, inject and reflect every message. Each attack must end the
session with the error that names it, tell the user, and put nothing into the window.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.runner import SessionRunner
from protocol.attestation import Attestation, sign
from protocol.codec import decode_envelope, encode
from protocol.codes import PhoneCode
from protocol.handshake import Handshake
from protocol.messages import (
    AllocateNameplate,
    AuditReport,
    Claimed,
    ClaimNameplate,
    Confirm,
    ConsentDenied,
    ConsentGranted,
    DenyReason,
    EndReason,
    Frame,
    MonitorLayout,
    NameplateAllocated,
    Pake,
    Party,
    PeerJoined,
    Rights,
    Sealed,
    SessionOpened,
    TypeText,
)
from tests.agent.conftest import AgentSide, until
from tests.agent.consultant import Consultant
from tests.agent.scripted_ui import ScriptedUI
from tests.security.hostile import HostileRelay, Leg
from tests.security.wiretap import entropy, transcript
from tests.support.relay import RelayProcess
from tests.support.targets import TargetWindow

COMMUNICATION_ERROR = "The session was ended because of a communication error."

BIG = 150
"""Sealed boxes from the console larger than this carry the test's TypeText: acks and
pings are a few dozen bytes. A relay can tell messages apart by size too; it cannot
read or forge them."""

SECRET_TEXT = "Tajne hasło: Zażółć gęślą jaźń 4711 " + "x" * 160


async def start(
    agent: AgentSide,
    consultant: Consultant,
    hostile: HostileRelay | None,
    rights: Rights = Rights.CONTROL,
    *,
    relay_url: str | None = None,
) -> SessionRunner:
    """A consented session whose both links run through the hostile relay (or, with
    `hostile=None`, the agent's to `relay_url` or straight to the relay)."""
    consultant.rights = rights
    code = await consultant.open()
    url = hostile.url if hostile is not None else relay_url
    runner = agent.connect(code, **({"relay_url": url} if url else {}))
    await consultant.wait_for(ConsentGranted)
    await consultant.wait_for(MonitorLayout)
    await consultant.wait_for(Frame)
    return runner


def is_big_sealed(data: bytes) -> bool:
    return data[:2] == bytes([0x92, Sealed.TAG]) and len(data) > BIG


async def ended_with(agent: AgentSide, error: str) -> None:
    """The agent ended the session for `error`, told the user, and injects nothing more."""
    await agent.ended()
    outcome = agent.ui.outcome
    assert outcome is not None
    assert outcome.reason is EndReason.PROTOCOL_ERROR, outcome
    assert outcome.detail.startswith(error + ":"), outcome.detail
    assert outcome.message == COMMUNICATION_ERROR


# ------------------------------------------------------------------ reading


async def test_relay_sees_only_sealed_bytes_never_screen_or_keystrokes(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()
    await consultant.send(TypeText(text=SECRET_TEXT))
    await until(lambda: target.entry_text() == SECRET_TEXT)
    frames_before = consultant.count(Frame)
    await consultant.wait_until(lambda: consultant.count(Frame) > frames_before)
    assert agent.runner is not None
    agent.runner.end()
    await consultant.ended()
    await agent.ended()

    # what the relay could read: envelopes only, no inner message outside a box
    envelopes = [decode_envelope(w.data) for w in hostile.wire]
    visible = {type(e) for e in envelopes}
    assert visible <= {
        AllocateNameplate,
        NameplateAllocated,
        ClaimNameplate,
        Claimed,
        SessionOpened,
        PeerJoined,
        Pake,
        Confirm,
        Sealed,
        AuditReport,
    }, visible
    # and what was inside: JPEG regions of the screen, the typed text
    assert consultant.conn is not None
    agent_said = transcript(consultant.conn, hostile.wire, Party.AGENT)
    console_said = transcript(consultant.conn, hostile.wire, Party.CONSOLE)
    regions = [r.data for s in agent_said if isinstance(s.inner, Frame) for r in s.inner.regions]
    pictures = [d for d in regions if len(d) >= 64]  # JPEG, zlib or video: coded screen
    assert pictures, "the session carried no picture: the test proves nothing"
    assert any(isinstance(s.inner, TypeText) for s in console_said)

    everything = b"".join(w.data for w in hostile.wire)
    for needle in (
        # JPEG start of image with its JFIF header: the three-byte marker alone is found in
        # random ciphertext once per 16 MB (about 1 run in 100 here; CI met one)
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        *(p[:16] for p in pictures if p.startswith(b"\xff\xd8\xff")),
        b"\x89PNG\r\n\x1a\n",
        SECRET_TEXT.encode()[:24],
        encode(TypeText(text=SECRET_TEXT))[:24],
        "Zażółć".encode(),
        *(p[2:34] for p in pictures[:20]),  # a fragment of any coded region
    ):
        assert needle not in everything, needle
    # each box crosses two legs (up from its sender, down to its receiver): count it once
    sent = [decode_envelope(w.data) for w in hostile.wire if w.upward]
    boxes = [e.box[8:] for e in sent if isinstance(e, Sealed)]
    for box in boxes:
        if len(box) >= 4096:
            assert entropy(box) > 7.9, (len(box), entropy(box))
    ciphertext = b"".join(boxes)
    assert len(ciphertext) > 20_000  # the first frame alone is 40–90 KB
    assert entropy(ciphertext) > 7.98  # random bytes: 8 minus ~255/(2n ln 2)
    assert len(zlib.compress(ciphertext, 9)) > 0.99 * len(ciphertext)
    # the same keystroke twice gives two different boxes (counter nonces)
    assert len(set(boxes)) == len(boxes)


# ------------------------------------------------------------------ tampering with the channel


async def test_tampered_box_ends_the_session_and_nothing_is_typed(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()

    async def flip_a_bit(leg: Leg, upward: bool, data: bytes) -> bool:
        if leg.role is Party.CONSOLE and upward and is_big_sealed(data):
            spoilt = bytearray(data)
            spoilt[len(spoilt) // 2] ^= 0x01
            await hostile.legs[Party.AGENT].to_end(bytes(spoilt))
            return False
        return True

    hostile.attack = flip_a_bit
    await consultant.send(TypeText(text=SECRET_TEXT))
    await ended_with(agent, "TamperError")
    ended = await consultant.ended()
    assert ended.reason is EndReason.PROTOCOL_ERROR
    assert target.entry_text() == ""


async def test_replayed_keystrokes_are_typed_once_and_end_the_session(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()
    kept: list[bytes] = []

    async def keep(leg: Leg, upward: bool, data: bytes) -> bool:
        if leg.role is Party.CONSOLE and upward and is_big_sealed(data):
            kept.append(data)
        return True

    hostile.attack = keep
    await consultant.send(TypeText(text=SECRET_TEXT))
    await until(lambda: target.entry_text() == SECRET_TEXT)
    await hostile.legs[Party.AGENT].to_end(kept[0])  # the relay plays it again
    await ended_with(agent, "ReplayError")
    assert target.entry_text() == SECRET_TEXT  # once, not twice


async def test_reordered_keystrokes_end_the_session_before_either_is_typed(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()
    consultant.ack_frames = False  # only the two TypeTexts travel up from now on
    held: list[bytes] = []

    async def swap(leg: Leg, upward: bool, data: bytes) -> bool:
        if leg.role is Party.CONSOLE and upward and is_big_sealed(data):
            held.append(data)
            if len(held) == 2:
                await leg.to_relay(held[1])
                await leg.to_relay(held[0])
            return False
        return True

    hostile.attack = swap
    await consultant.send(TypeText(text="first " + SECRET_TEXT))
    await consultant.send(TypeText(text="second " + SECRET_TEXT))
    await ended_with(agent, "GapError")
    assert target.entry_text() == ""


async def test_dropped_keystroke_ends_the_session_at_the_next_one(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()
    consultant.ack_frames = False
    dropped: list[bytes] = []

    async def drop_first(leg: Leg, upward: bool, data: bytes) -> bool:
        if leg.role is Party.CONSOLE and upward and is_big_sealed(data) and not dropped:
            dropped.append(data)
            return False
        return True

    hostile.attack = drop_first
    await consultant.send(TypeText(text="lost " + SECRET_TEXT))
    await until(lambda: dropped)
    await consultant.send(TypeText(text="next " + SECRET_TEXT))
    await ended_with(agent, "GapError")
    assert target.entry_text() == ""


async def test_box_forged_by_the_relay_is_a_tamper_error(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    runner = await start(agent, consultant, hostile)
    target.focus_entry()
    consultant.ack_frames = False
    await asyncio.sleep(0.2)  # acks in flight have arrived
    sent_up = [decode_envelope(d) for d in hostile.sent(Party.CONSOLE)]
    last = max(int.from_bytes(e.box[:8], "big") for e in sent_up if isinstance(e, Sealed))
    # the next counter the agent expects, and ciphertext the relay made up
    forged = (last + 1).to_bytes(8, "big") + os.urandom(len(encode(TypeText(text="rm -rf"))) + 16)
    await hostile.legs[Party.AGENT].to_end(encode(Sealed(box=forged)))
    await ended_with(agent, "TamperError")
    assert runner.stats.input_refused == 0  # nothing reached the injector at all
    assert target.entry_text() == ""


async def test_inner_message_injected_in_clear_is_a_decode_error(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    target.focus_entry()
    await hostile.legs[Party.AGENT].to_end(encode(TypeText(text="typed by the relay")))
    await ended_with(agent, "DecodeError")
    assert target.entry_text() == ""


async def test_agents_own_box_reflected_back_is_a_reflection_error(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    await start(agent, consultant, hostile)
    own = next(d for d in reversed(hostile.sent(Party.AGENT)) if is_big_sealed(d))
    await hostile.legs[Party.AGENT].to_end(own)
    await ended_with(agent, "ReflectionError")
    assert target.entry_text() == ""


# ------------------------------------------------------------------ the opening


async def test_relay_running_its_own_pake_with_a_guessed_code_fails_and_burns_the_nameplate(
    agent: AgentSide,
    consultant: Consultant,
    hostile: HostileRelay,
    shared_relay: RelayProcess,
) -> None:
    code = await consultant.open()
    guess = PhoneCode(code.nameplate, f"{(int(code.secret) + 1) % 10**6:06d}")
    impostor = Handshake(Party.CONSOLE, guess)
    impostor_pake = impostor.start()

    async def answer_for_the_console(leg: Leg, upward: bool, data: bytes) -> bool:
        message = decode_envelope(data)
        if leg.role is Party.AGENT and upward and isinstance(message, Pake):
            confirm = impostor.receive_pake(message)
            await leg.to_end(encode(impostor_pake))
            await leg.to_end(encode(confirm))
            return False  # the real console never hears from this agent
        if leg.role is Party.AGENT and not upward and isinstance(message, Pake | Confirm):
            return False  # nor does the agent hear the real console
        return not (leg.role is Party.AGENT and upward and isinstance(message, Confirm))

    hostile.attack = answer_for_the_console
    agent.connect(code, relay_url=hostile.url)
    await agent.ended()
    outcome = agent.ui.outcome
    assert outcome is not None and outcome.reason is EndReason.WRONG_CODE, outcome
    assert outcome.message == "The code did not match. Ask the consultant for a new code."
    assert not agent.ui.consent_shown.is_set()
    await consultant.wait_until(lambda: consultant.closed.is_set())
    # the agent told the relay (Abort), so the real code no longer works: burnt
    second = AgentSide(shared_relay, ScriptedUI())
    try:
        second.connect(code)
        await second.ended()
    finally:
        second.stop()
    assert second.ui.outcome is not None
    assert second.ui.outcome.reason is EndReason.RELAY_REFUSED
    assert "not valid" in second.ui.outcome.message


def _replace_attestation(new: Callable[[NameplateAllocated], bytes]):  # type: ignore[no-untyped-def]
    async def attack(leg: Leg, upward: bool, data: bytes) -> bool:
        if leg.role is Party.CONSOLE and not upward:
            message = decode_envelope(data)
            if isinstance(message, NameplateAllocated):
                forged = NameplateAllocated(
                    nameplate=message.nameplate,
                    expires_at=message.expires_at,
                    attestation=new(message),
                )
                await leg.to_end(encode(forged))
                return False
        return True

    return attack


async def refused(agent: AgentSide, consultant: Consultant, hostile: HostileRelay) -> None:
    code = await consultant.open()
    agent.connect(code, relay_url=hostile.url)
    denied = await consultant.wait_for(ConsentDenied)
    await agent.ended()
    assert denied.reason is DenyReason.ATTESTATION_INVALID
    assert not agent.ui.consent_shown.is_set()  # no name was ever shown to the user
    assert agent.ui.outcome is not None and agent.ui.outcome.reason is EndReason.DENIED
    assert "could not be verified" in agent.ui.outcome.message
    assert agent.runner is not None and agent.runner.stats.frames_sent == 0


async def test_attestation_signed_by_another_key_is_refused(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, shared_relay: RelayProcess
) -> None:
    key = Ed25519PrivateKey.generate()

    def administrator(real: NameplateAllocated) -> bytes:
        return sign(
            Attestation(
                nameplate=real.nameplate,
                consultant="Administrator",
                ticket_id=consultant.ticket["id"],
                ticket_title=consultant.ticket["title"],
                org=shared_relay.org,
                expires_at=real.expires_at,
            ),
            key,
        )

    hostile.attack = _replace_attestation(administrator)
    await refused(agent, consultant, hostile)


async def test_attestation_with_a_flipped_bit_is_refused(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay
) -> None:
    def flipped(real: NameplateAllocated) -> bytes:
        spoilt = bytearray(real.attestation)
        spoilt[-1] ^= 0x01
        return bytes(spoilt)

    hostile.attack = _replace_attestation(flipped)
    await refused(agent, consultant, hostile)


async def test_attestation_replayed_from_an_earlier_session_is_refused(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay
) -> None:
    # the relay keeps a genuine attestation of an earlier nameplate and ticket ...
    first = Consultant(consultant.relay)
    old: list[bytes] = []

    async def record(leg: Leg, upward: bool, data: bytes) -> bool:
        message = decode_envelope(data)
        if isinstance(message, NameplateAllocated):
            old.append(message.attestation)
        return True

    hostile.attack = record
    try:
        await first.open()
    finally:
        await first.close()
    assert old
    # ... and hands it out again for a new one
    hostile.attack = _replace_attestation(lambda real: old[0])
    await refused(agent, consultant, hostile)
