"""`zgoda agent connect` as a real process: no socket before the code, then a whole
session answered on its terminal; `zgoda agent config`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from protocol.messages import ConsentGranted, EndReason, Frame, HandBackEnded, Rights
from tests.agent.consultant import WAIT, Consultant
from tests.support.relay import REPO, RelayProcess
from tests.support.xdisplay import XDisplay

TCP_LISTEN = "0A"
TCP_ESTABLISHED = "01"


def socket_inodes(pid: int) -> set[str]:
    """Inodes of every socket the process holds open (any family)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def inet_sockets(pid: int) -> list[tuple[str, int, str]]:
    """(protocol, remote port, state) of the process's TCP/UDP sockets, from /proc/PID/net."""
    mine = socket_inodes(pid)
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        for row in table:
            cols = row.split()
            remote, state, inode = cols[2], cols[3], cols[9]
            if inode in mine:
                found.append((proto, int(remote.rsplit(":", 1)[1], 16), state))
    return found


def write_config(tmp_path: Path, relay: RelayProcess) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'relay_url = "{relay.url}"\nrelay_key = "{relay.pubkey}"\norg_name = "{relay.org}"\n',
        encoding="utf-8",
    )
    return path


class AgentProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []

    async def read_until(self, text: str) -> str:
        """Read stdout until a line containing `text` (bounded); returns that line."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"agent exited; output: {self.output}")
                line = raw.decode()
                self.output.append(line)
                if text in line:
                    return line

    async def prompt(self, text: str) -> None:
        """Read until a prompt that does not end with a newline."""
        assert self.proc.stdout is not None
        seen = ""
        async with asyncio.timeout(WAIT):
            while text not in seen:
                chunk = await self.proc.stdout.read(1)
                if not chunk:
                    raise AssertionError(f"agent exited; output: {seen!r}")
                seen += chunk.decode(errors="replace")
        self.output.append(seen)

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()


async def test_connect_opens_no_socket_before_the_code_then_runs_a_session(
    tmp_path: Path, shared_relay: RelayProcess, xdisplay: XDisplay, consultant: Consultant
) -> None:
    config = write_config(tmp_path, shared_relay)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "connect",
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
        env=xdisplay.env,
    )
    agent = AgentProcess(proc)
    try:
        await agent.prompt("Type the code the consultant reads to you:")
        # the agent runs and waits for its user: not one socket, of any family
        assert socket_inodes(proc.pid) == set()
        code = await consultant.open()
        await agent.type("12-34")  # a typo is refused without touching the network
        await agent.read_until("The code has 9 digits; you typed 4")
        assert socket_inodes(proc.pid) == set()
        await agent.type(str(code))
        await agent.read_until("asks to see your screen and control your mouse and keyboard")
        await agent.prompt("[a] allow control  [v] view only  [d] deny")
        relay_port = int(shared_relay.url.rsplit(":", 1)[1])
        sockets = inet_sockets(proc.pid)
        assert sockets, "connected, so there is a socket"
        assert all(port == relay_port and state == TCP_ESTABLISHED for _, port, state in sockets)
        assert not any(state == TCP_LISTEN for _, _, state in sockets)
        await agent.type("a")
        granted = await consultant.wait_for(ConsentGranted)
        assert granted.rights is Rights.CONTROL
        await consultant.wait_for(Frame)
        assert consultant.conn is not None
        consultant.conn.request_hand_back()
        await consultant.flush()
        await agent.read_until("The consultant handed the keyboard back")
        await agent.prompt("[done] give the screen back to the consultant >")
        await agent.type("done")
        await consultant.wait_for(HandBackEnded)
        await agent.type("end")
        ended = await consultant.ended()
        assert ended.reason is EndReason.USER_ENDED
        await agent.read_until("Session ended: You ended the session.")
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_connect_with_a_malformed_code_exits_with_a_clear_error(
    tmp_path: Path, shared_relay: RelayProcess
) -> None:
    config = write_config(tmp_path, shared_relay)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "connect", "48x-913-775", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "The code has only digits" in result.stderr


def test_config_command_prints_the_effective_configuration(tmp_path: Path) -> None:
    key = "wVaIKxwFeFigmBZVCPVY0i95wtonX3SZN6MPeKNYSlA="
    config = tmp_path / "agent.toml"
    config.write_text(f'relay_url = "https://relay.example.com"\nrelay_key = "{key}"\n')
    env = {**os.environ, "ZGODA_ORG_NAME": "Example"}
    result = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "agent", "config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "org_name = 'Example'" in result.stdout
    assert "video_encoder = 'auto'" in result.stdout
    assert "# H.264 encoders in this build: h264_nvenc, h264_amf, h264_qsv, libx264" in (
        result.stdout
    )
    assert "# agent endpoint: wss://relay.example.com/ws/agent" in result.stdout


def test_missing_configuration_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZGODA_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "connect", "482-913-775"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration error: no relay_url or relay_key configured" in result.stderr


def test_python_m_agent_tray_is_the_tray_command() -> None:
    """What the MSI's Run entry and shortcut start: `zgoda-agent.exe tray [--autostart]`."""
    result = subprocess.run(
        [sys.executable, "-m", "agent", "tray", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--autostart" in result.stdout
