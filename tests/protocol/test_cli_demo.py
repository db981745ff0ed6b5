from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import cli, demo


def test_in_process_demo_shows_a_consented_session_and_refused_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    assert demo.main(["--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["frame_delivered"] is True
    assert report["keys_delivered"] == 2
    assert str(report["input_before_consent"]).startswith("refused")
    assert report["wrong_code"] == "WRONG_CODE"
    assert set(report["relay_saw"]) <= {
        "AllocateNameplate",
        "ClaimNameplate",
        "Pake",
        "Confirm",
        "Sealed",
        "AuditReport",
    }
    assert "GRANTED" in report["audit"]
    assert "read over the phone" in capsys.readouterr().out
    assert demo.run(None)["sealed_messages"] == report["sealed_messages"]


def test_cli_lists_commands_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
