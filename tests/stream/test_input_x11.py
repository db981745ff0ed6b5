"""The input benchmark's core as a correctness check (not speed), on the real parts.

One Xvfb, the benchmark's listener window, and every system of `bench.input`: the
console client library through a real relay process to the real agent engine in
its own process, x0vncserver and x11vnc driven over RFB, the agent's injector
alone and plain XTest. Each event sent must arrive at the X server once, in
order, with its coordinates, button and key. Every wait is bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.input import KINDS, SYSTEMS, KindResult, events_for, match, measure_systems
from tests.support.xdisplay import start_display

pytestmark = pytest.mark.x11
COUNT = 6  # per kind: three presses and three releases, three letters


def test_arrivals_are_matched_in_order_with_lost_and_extra_counted() -> None:
    sent = events_for("key", 4)
    result = KindResult("x", "key", sent)
    arrivals = [(sent[0], 1_000_000), (("keydown", 0x7A, 0), 2_000_000), (sent[2], 3_000_000)]
    match(result, [0, 0, 0, 0], arrivals)
    assert result.lost == 2  # sent[1] skipped, sent[3] never came
    assert result.extra == 1
    assert result.latencies_ms == [1.0, 3.0]


async def test_every_event_arrives_once_in_order_at_the_right_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    display = start_display(window_manager=False, screen="1920x1080x24")
    try:
        monkeypatch.setenv("DISPLAY", display.name)  # pynput's controllers open $DISPLAY
        run = await measure_systems(SYSTEMS, COUNT, 0.02, display.env, tmp_path)
    finally:
        display.stop()
    results = run.results
    assert [(r.system.split()[0], r.kind) for r in results] == [
        (s, k) for s in SYSTEMS for k in KINDS
    ]
    for r in results:
        assert (r.lost, r.extra, r.stray) == (0, 0, 0), (r.system, r.kind, r.arrived)
        assert r.arrived == r.sent, (r.system, r.kind)
        assert len(r.latencies_ms) == COUNT
    # the agent's own trace lines up with what the console sent, event for event
    assert [len(stage.ms) for stage in run.stages] == [len(KINDS) * COUNT] * 3
