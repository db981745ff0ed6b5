"""`make demo` without a screen: the whole scripted call, every part real, checked by its report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("Xvfb", "openbox", "xdotool", "import", "dbus-daemon", "dunst", "trayer")


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (installed by .ci/system-packages)",
)
def test_scripted_demo_plays_a_whole_call_and_leaves_its_report(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "demo", "--headless", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "session-report.json").read_text())
    assert report["input_before_consent"].startswith("refused")
    assert report["typed_text_arrived"] is True
    assert report["frames_during_hand_back"] == 0
    events = report["audit_events"]
    for kind in (
        "consent.granted",
        "consent.hand_back_started",
        "consent.hand_back_ended",
        "consent.ended",
    ):
        assert kind in events
    assert "intact" in report["audit_verify"]
    shots = {p.name for p in (out / "screenshots").iterdir()}
    assert {"employee-2-consent.png", "consultant-1-view.png"} <= shots
    assert (out / "session-report.md").read_text().startswith("# zgoda demo")
