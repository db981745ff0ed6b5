"""The real agent as its own process: `zgoda agent connect CODE`, answered on its terminal.

The test plays the PC's user on the agent's terminal front (`agent.terminal`):
it reads the prompts the user would read and types the answers the user would
type (`a` to allow control, `done` after a password). Stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from tests.support.relay import RelayProcess

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0
READING_PAUSE = 0.3


class AgentProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def connect(cls, relay: RelayProcess, code: str, env: dict[str, str]) -> AgentProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "protocol.cli",
            "agent",
            "connect",
            code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
            env={
                **env,
                "ZGODA_RELAY_URL": relay.url,
                "ZGODA_RELAY_KEY": relay.pubkey,
                "ZGODA_ORG_NAME": relay.org,
                "ZGODA_LANGUAGE": "en",
            },
        )
        return cls(proc)

    async def read_until(self, text: str, timeout: float = WAIT) -> str:
        """Read the agent's output until a line containing `text` (bounded in time)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"agent never said {text!r}; it said: {self.lines[-20:]}")
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                continue
            if not raw:
                raise AssertionError(f"agent exited before {text!r}; it said: {self.lines[-20:]}")
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if text in line:
                return line

    async def answer(self, line: str) -> None:
        """Type an answer to the prompt just printed, after a reading pause.

        The terminal front ignores type-ahead (an answer typed before its question
        is asked is never taken as a yes), and it prints the question just before
        it starts listening; a person reads first, and so does this helper.
        """
        await asyncio.sleep(READING_PAUSE)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait(self, timeout: float = WAIT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.proc.stdin.wait_closed()
