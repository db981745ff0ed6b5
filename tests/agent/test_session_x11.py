"""Whole sessions on a real relay and a real X display, driven by a headless consultant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent.frontend import ConsentAnswer
from protocol.messages import (
    ConsentGranted,
    End,
    EndReason,
    Frame,
    MonitorLayout,
    MouseButton,
    Party,
    PointerButton,
    PointerMove,
    TypeText,
)
from tests.agent.conftest import AgentSide
from tests.agent.consultant import Consultant
from tests.agent.scripted_ui import ScriptedUI
from tests.support.relay import RelayProcess
from tests.support.targets import TargetWindow
from tests.support.xdisplay import XDisplay


@pytest.fixture
def agent(shared_relay: RelayProcess, xdisplay: XDisplay) -> Iterator[AgentSide]:
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    try:
        yield side
    finally:
        side.stop()


async def test_control_types_text_and_clicks_into_real_window(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    code = await consultant.open()
    agent.connect(code)
    granted = await consultant.wait_for(ConsentGranted)
    layout = await consultant.wait_for(MonitorLayout)
    await consultant.wait_for(Frame)
    assert granted.rights.name == "CONTROL"
    monitor = next(m for m in layout.monitors if m.index == layout.selected)
    target.focus_entry()
    await consultant.send(TypeText(text="Hello zgoda: ąćęłńóśźż ĄĆĘŁŃÓŚŹŻ"))
    x, y = target.centre("button")
    x, y = x - monitor.x, y - monitor.y
    await consultant.send(PointerMove(x=x, y=y))
    await consultant.send(PointerButton(button=MouseButton.LEFT, down=True, x=x, y=y))
    await consultant.send(PointerButton(button=MouseButton.LEFT, down=False, x=x, y=y))
    for _ in range(200):
        if target.clicks() == 1:
            break
        await asyncio.sleep(0.02)
    assert target.entry_text() == "Hello zgoda: ąćęłńóśźż ĄĆĘŁŃÓŚŹŻ"
    assert target.clicks() == 1
    await consultant.send(End(by=Party.CONSOLE, reason=EndReason.CONSULTANT_ENDED, detail=""))
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.CONSULTANT_ENDED
