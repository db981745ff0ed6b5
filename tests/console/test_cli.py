"""`zgoda console ...` headless, as scripts and the demo use it: real processes, real relay."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from console.cli import main as cli_main
from protocol.codes import parse_code
from protocol.messages import Encoding, Frame, Region, Rights, TypeText
from tests.console.peer import ScriptedAgent
from tests.support.relay import RelayProcess

REPO = Path(__file__).resolve().parents[2]


def console_env(relay: RelayProcess) -> dict[str, str]:
    return {
        **os.environ,
        "ZGODA_RELAY_URL": relay.url,
        "ZGODA_CONSOLE_USER": relay.username,
        "ZGODA_CONSOLE_PASSWORD": relay.password,
    }


def zgoda(relay: RelayProcess, *args: str, stdin: str = "") -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "console", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=console_env(relay),
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, (result.returncode, lines, result.stderr[-2000:])
    return lines


def in_process(
    relay: RelayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    stdin: str = "",
) -> tuple[int, list[dict[str, Any]]]:
    """`zgoda console ARGS` run in this process (the same `main`, measurable by coverage)."""
    for key, value in console_env(relay).items():
        if key.startswith("ZGODA_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli_main(list(args))
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def test_tickets_from_the_command_line(
    relay: RelayProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str, stdin: str = "") -> list[dict[str, Any]]:
        status, lines = in_process(relay, monkeypatch, capsys, *args, stdin=stdin)
        assert status == 0, lines
        return lines

    [ticket] = run(
        "ticket",
        "new",
        "--caller",
        "Jan Kowalski",
        "--phone",
        "600 100 200",
        "--problem",
        "Outlook nie startuje",
    )
    assert ticket["status"] == "open" and ticket["title"]
    assert ticket["id"] in [t["id"] for t in run("ticket", "list")]
    [shown] = run("ticket", "show", ticket["id"])
    assert shown["caller_name"] == "Jan Kowalski"
    [closed] = run("ticket", "close", ticket["id"], "--resolution", "restart")
    assert closed["closed"] == ticket["id"]
    assert ticket["id"] not in [t["id"] for t in run("ticket", "list")]
    assert ticket["id"] in [t["id"] for t in run("ticket", "list", "--status", "closed")]
    history = run("ticket", "history", ticket["id"])
    assert history and all("kind" in e for e in history)
    [login] = run("login", "--password-stdin", stdin=relay.password + "\n")
    assert login["display_name"] == relay.display_name and login["token"]
    [info] = run("relay-info")
    assert info["public_key"] == relay.pubkey and info["org"] == relay.org
    # a token from `login` is enough for the next commands
    monkeypatch.delenv("ZGODA_CONSOLE_PASSWORD")
    listed = run("ticket", "list", "--status", "all", "--token", login["token"])
    assert ticket["id"] in [t["id"] for t in listed]


def test_command_line_errors_are_one_json_line_and_status_1(
    relay: RelayProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = in_process(relay, monkeypatch, capsys, "ticket", "show", "HD-nope")
    assert status == 1 and lines[-1]["error"] == "ApiError"
    status, lines = in_process(
        relay, monkeypatch, capsys, "ticket", "list", "--relay", "http://127.0.0.1:9"
    )
    assert status == 1 and lines[-1]["error"] == "RelayUnreachable"
    status, lines = in_process(relay, monkeypatch, capsys, "fingerprint", "http://127.0.0.1:9")
    assert status == 1 and lines == [{"url": "http://127.0.0.1:9", "sha256": None}]


def test_bad_password_is_a_clear_error_and_exit_status(relay: RelayProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "console", "ticket", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**console_env(relay), "ZGODA_CONSOLE_PASSWORD": "wrong"},
        check=False,
    )
    assert result.returncode == 1
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["error"] == "LoginFailed" and error["message"]


async def test_session_prints_the_code_then_the_states_and_saves_a_screenshot(
    relay: RelayProcess, tmp_path: Path
) -> None:
    ticket = relay.create_ticket(relay.token())
    shot = tmp_path / "screen.png"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "protocol.cli",
        "console",
        "session",
        ticket["id"],
        "--screenshot",
        str(shot),
        "--type",
        "ipconfig /all",
        "--consent-timeout",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=console_env(relay),
    )
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []

    async def next_line() -> dict[str, Any]:
        assert proc.stdout is not None
        raw = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert raw, lines
        lines.append(json.loads(raw))
        return lines[-1]

    try:
        while "code" not in (line := await next_line()):
            pass
        code = parse_code(line["code"])
        async with ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, code) as agent:
            await agent.consent_prompt()
            await agent.allow(Rights.CONTROL)
            region = Region(
                x=0, y=0, width=64, height=32, encoding=Encoding.SOLID, data=b"\x10\x80\xf0\xff"
            )
            await agent.send(
                Frame(frame_id=1, captured_at_ns=0, width=64, height=32, regions=(region,))
            )
            await agent.wait(lambda: bool(agent.of(TypeText)))
            assert agent.of(TypeText) == [TypeText(text="ipconfig /all")]
            await agent.ended()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        while proc.stdout.at_eof() is False and (raw := await proc.stdout.readline()):
            lines.append(json.loads(raw))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        stderr = await proc.stderr.read() if proc.stderr else b""
        assert stderr.count(b"Traceback") == 0, stderr[-2000:]
    phases = [line["phase"] for line in lines if "phase" in line]
    assert phases[:1] == ["WAITING_FOR_USER"] and "CONTROLLING" in phases, lines
    assert {"typed": 13} in lines and any(line.get("ended") == "CONSULTANT_ENDED" for line in lines)
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (64, 32)
    assert image.pixelColor(5, 5).getRgb()[:3] == (0xF0, 0x80, 0x10)
