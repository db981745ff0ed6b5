"""`zgoda tray` as a real process on the test's X display, and its config file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.relay import REPO, RelayProcess

STOP_TIMEOUT = 15.0


def write_config(path: Path, relay: RelayProcess, language: str | None = "en") -> Path:
    """The agent's TOML; `language=None` leaves the choice to the system locale."""
    text = f'relay_url = "{relay.url}"\nrelay_key = "{relay.pubkey}"\norg_name = "{relay.org}"\n'
    if language is not None:
        text += f'language = "{language}"\n'
    path.write_text(text)
    return path


class TrayProcess:
    """One `zgoda tray` process with its own runtime dir (single-instance lock)."""

    def __init__(self, env: dict[str, str], config: Path, runtime: Path, *args: str) -> None:
        runtime.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "XDG_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1"}
        self.env["PYTHONFAULTHANDLER"] = "1"  # a hang's stacks reach the log (see stop)
        for var in ("ZGODA_RELAY_URL", "ZGODA_RELAY_KEY", "ZGODA_LANGUAGE", "ZGODA_ORG_NAME"):
            self.env.pop(var, None)
        self.config = config
        self.log_path = runtime / "tray.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.command(*args), env=self.env, cwd=REPO, stdout=self._log, stderr=self._log
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "protocol.cli", "tray", "--config", str(self.config), *args]

    def knock(self) -> subprocess.CompletedProcess[str]:
        """A second start: it must ask this one to open Get help, and exit 0."""
        return subprocess.run(
            self.command(), env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (the app quits cleanly, ending any session), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # SIGABRT: the fault handler writes every thread's stack to the log.
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT)
        self._log.close()
        return self.proc.returncode

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the app holds the single-instance lock (it names itself in tray.owner);
        a knock from then on is answered as soon as its Tk loop runs."""
        owner = Path(self.env["XDG_RUNTIME_DIR"]) / "zgoda" / "tray.owner"
        deadline = time.monotonic() + timeout
        while not (owner.exists() and owner.read_text() == str(self.proc.pid)):
            if self.proc.poll() is not None:
                raise AssertionError(f"zgoda tray exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"zgoda tray did not start:\n{self.log()}")
            time.sleep(0.05)
