"""Consent at the process level: what the agent's socket really sent, what reached the window.

The agent is the real engine on Xvfb; its link runs through a recording relay
(`HostileRelay` forwarding everything). Afterwards the test opens every sealed box
the agent's socket sent, with the console's keys, and checks the sequence of inner
messages: no frame before *Allow*, none during a hand-back, nothing after the end.
The consultant is a modified console (`send_raw`) that sends input its own rules
forbid; the Tk window shows whether any of it arrived.

Negative checks ("nothing arrived") wait until the agent has counted the refused
input, then a short fixed while (QUIET): bounded, not a speed assertion.
"""

from __future__ import annotations

import asyncio

from agent.frontend import ConsentAnswer
from protocol.codec import encode
from protocol.messages import (
    AuditKind,
    AuditReport,
    ClaimNameplate,
    Confirm,
    ConsentGranted,
    ConsentPending,
    Cursor,
    End,
    EndReason,
    Frame,
    HandBackEnded,
    HandBackStarted,
    KeyEvent,
    Modifiers,
    MonitorLayout,
    MouseButton,
    Pake,
    Party,
    PointerButton,
    PointerMove,
    Rights,
    Sealed,
    TypeText,
)
from tests.agent.conftest import AgentSide, until, wait_event
from tests.agent.consultant import Consultant
from tests.security.hostile import HostileRelay, Leg
from tests.security.test_hostile_relay import start
from tests.security.wiretap import Seen, names, transcript
from tests.support.targets import TargetWindow

QUIET = 0.6
SCREEN_MESSAGES = (Frame, Cursor, MonitorLayout)


async def forbidden_input(consultant: Consultant, target: TargetWindow) -> None:
    """Keys, text and a click on the window's button, sealed by a console that ignores
    its own table (the agent's table must refuse them by itself)."""
    x, y = target.centre("button")
    for message in (
        TypeText(text="typed without consent"),
        KeyEvent(key="a", down=True, modifiers=Modifiers.NONE),
        KeyEvent(key="a", down=False, modifiers=Modifiers.NONE),
        PointerMove(x=x, y=y),
        PointerButton(button=MouseButton.LEFT, down=True, x=x, y=y),
        PointerButton(button=MouseButton.LEFT, down=False, x=x, y=y),
    ):
        await consultant.send_raw(message)


def agent_sent(consultant: Consultant, hostile: HostileRelay) -> list[Seen]:
    assert consultant.conn is not None
    return transcript(consultant.conn, hostile.wire, Party.AGENT)


async def test_before_allow_the_agents_socket_sends_no_screen_and_input_is_not_injected(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    agent.ui.release_consent.clear()  # the prompt stays on screen
    code = await consultant.open()
    agent.connect(code, relay_url=hostile.url)
    await consultant.wait_for(ConsentPending)
    await wait_event(agent.ui.consent_shown)
    target.focus_entry()
    await asyncio.sleep(QUIET)  # a capture started too early would show up now
    await forbidden_input(consultant, target)
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.PROTOCOL_ERROR
    assert target.entry_text() == ""
    assert target.clicks() == 0
    sent = agent_sent(consultant, hostile)
    assert not [s for s in sent if isinstance(s.inner, SCREEN_MESSAGES)], names(sent)
    kinds = {type(s.inner or s.envelope) for s in sent}
    assert kinds <= {ClaimNameplate, Pake, Confirm, ConsentPending, AuditReport, End}, kinds
    assert agent.runner is not None and agent.runner.stats.frames_sent == 0


async def test_view_only_sends_the_screen_but_input_never_reaches_the_window(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    agent.ui.consent = ConsentAnswer.VIEW_ONLY
    runner = await start(agent, consultant, hostile)
    target.focus_entry()
    await forbidden_input(consultant, target)
    await until(lambda: runner.stats.input_refused >= 6)
    await asyncio.sleep(QUIET)
    assert target.entry_text() == ""
    assert target.clicks() == 0
    assert not runner.finished  # refused, and the session goes on
    granted = next(e for e in consultant.events if isinstance(e, ConsentGranted))
    assert granted.rights is Rights.VIEW


async def test_during_hand_back_no_frame_leaves_the_socket_and_input_is_dropped(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    runner = await start(agent, consultant, hostile)
    target.animate()  # the screen keeps changing: a capture running would send frames
    runner.hand_back()
    await wait_event(agent.ui.hand_back_shown)
    await consultant.wait_for(HandBackStarted)
    target.focus_entry()
    refused_before = runner.stats.input_refused
    await forbidden_input(consultant, target)
    await until(lambda: runner.stats.input_refused >= refused_before + 6)
    await asyncio.sleep(QUIET)
    assert target.entry_text() == ""
    assert target.clicks() == 0
    agent.ui.done.set()
    await consultant.wait_for(HandBackEnded)
    frames = consultant.count(Frame)
    await consultant.wait_until(lambda: consultant.count(Frame) > frames)  # the screen is back
    runner.end()
    await agent.ended()

    sent = agent_sent(consultant, hostile)
    kinds = [type(s.inner) for s in sent]
    start_at, end_at = kinds.index(HandBackStarted), kinds.index(HandBackEnded)
    during = sent[start_at:end_at]
    assert not [s for s in during if isinstance(s.inner, SCREEN_MESSAGES)], names(during)
    assert any(isinstance(s.inner, Frame) for s in sent[:start_at])
    assert any(isinstance(s.inner, Frame) for s in sent[end_at:])
    receipts = [s.envelope.kind for s in sent if isinstance(s.envelope, AuditReport)]
    assert AuditKind.HAND_BACK_STARTED in receipts and AuditKind.HAND_BACK_ENDED in receipts


async def test_after_the_end_the_socket_sends_nothing_sealed_and_nothing_is_injected(
    agent: AgentSide, consultant: Consultant, hostile: HostileRelay, target: TargetWindow
) -> None:
    runner = await start(agent, consultant, hostile)
    target.animate()
    target.focus_entry()
    runner.end()
    await consultant.ended()
    await agent.ended()
    frames = runner.stats.frames_sent
    # the console's link is closed by the relay after the end; a hostile relay still
    # holding the agent's leg open pushes input at it: it is not read any more
    leg = hostile.legs[Party.AGENT]
    await forbidden_input_via_relay(leg, consultant)
    await asyncio.sleep(QUIET)
    assert runner.stats.frames_sent == frames
    assert target.entry_text() == ""
    sent = agent_sent(consultant, hostile)
    last_end = max(i for i, s in enumerate(sent) if isinstance(s.inner, End))
    after = sent[last_end + 1 :]
    assert all(isinstance(s.envelope, AuditReport) for s in after), names(after)
    assert sent[last_end].inner.reason is EndReason.USER_ENDED  # type: ignore[union-attr]


async def forbidden_input_via_relay(leg: Leg, consultant: Consultant) -> None:
    """Seal input with the console's keys (as if the console kept going after the end)
    and hand it to the agent's leg directly."""
    assert consultant.conn is not None and consultant.conn._channel is not None
    box = consultant.conn._channel.seal(encode(TypeText(text="after the end")))
    await leg.to_end(encode(Sealed(box=box)))
