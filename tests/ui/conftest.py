"""Fixtures of the tray app's tests: X display with a tray host, a real relay, a consultant,
`zgoda tray` as a process, and the app in this process on a Tk thread of its own."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.config import AgentConfig
from tests.agent.conftest import TEST_LIMITS
from tests.agent.consultant import Consultant
from tests.support.relay import RelayProcess, start_relay
from tests.support.xdisplay import XDisplay
from tests.support.xdisplay import xdisplay as xdisplay
from tests.ui.driver import TrayProcess, write_config

T = TypeVar("T")
WAIT = 15.0


GI_DIR = Path("/usr/lib/python3/dist-packages/gi")
"""Debian's PyGObject (python3-gi). Only `gi` is put on the path, not the whole
dist-packages, which would shadow the venv's newer packages."""


@dataclass
class Desktop:
    """The X display plus what a Linux desktop gives a tray app: a session bus, a
    notification daemon (dunst) and a system tray (trayer), as PLATFORM.md describes."""

    name: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *command: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _session_bus(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().decode().strip()
    bus.stdout.close()
    if not address:
        bus.kill()
        bus.wait(5)
        raise RuntimeError("dbus-daemon did not print its address")
    return bus, address


@pytest.fixture(scope="session")
def tray_host(xdisplay: XDisplay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """A desktop for the tray: session bus, dunst, trayer, and pystray's gtk backend."""
    for tool in ("trayer", "dunst", "dbus-daemon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (.ci/system-packages)")
    if not GI_DIR.is_dir():
        pytest.fail("python3-gi is not installed (.ci/system-packages)")
    gi_path = tmp_path_factory.mktemp("gi")
    (gi_path / "gi").symlink_to(GI_DIR)
    env = {**xdisplay.env, "NO_AT_BRIDGE": "1", "PYSTRAY_BACKEND": "gtk"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(gi_path)) if p)
    desktop = Desktop(name=xdisplay.name, env=env)
    try:
        bus, env["DBUS_SESSION_BUS_ADDRESS"] = _session_bus(env)
        desktop.processes.append(bus)
        desktop.start("dunst")
        command = "trayer --edge top --align right --widthtype pixel --width 200"
        desktop.start(*(command + " --heighttype pixel --height 32").split())
        yield desktop
    finally:
        desktop.stop()


@pytest.fixture(scope="module")
def ui_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("relay") / "data", config=TEST_LIMITS)
    try:
        yield process
    finally:
        process.stop()


def config_for(relay: RelayProcess, **changes: str) -> AgentConfig:
    values = {"relay_url": relay.url, "relay_key": relay.pubkey, "org_name": relay.org}
    return AgentConfig(**{**values, **changes}, language="en")  # type: ignore[arg-type]


@pytest.fixture
async def consultant(ui_relay: RelayProcess) -> AsyncIterator[Consultant]:
    c = Consultant(ui_relay)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def start_tray(
    tray_host: Desktop, ui_relay: RelayProcess, tmp_path: Path
) -> Iterator[Callable[..., TrayProcess]]:
    """Start `zgoda tray ARGS` (English texts) on the display; stopped by PID at the end."""
    started: list[TrayProcess] = []

    def start(*args: str) -> TrayProcess:
        config = write_config(tmp_path / "agent.toml", ui_relay)
        tray = TrayProcess(tray_host.env, config, tmp_path / f"run{len(started)}", *args)
        started.append(tray)
        tray.wait_ready()
        return tray

    try:
        yield start
    finally:
        for tray in started:
            status = tray.stop()
            print(f"--- zgoda tray exit status {status}; its log:\n{tray.log()}")


class InProcessApp:
    """A `TrayApp` built and run on its own Tk thread here; `call()` runs code there."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self.app: Any = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="test-tk")
        self.thread.start()
        if not self._ready.wait(WAIT) or self.app is None:
            raise AssertionError(f"the app did not start: {self.error!r}")

    def _main(self) -> None:
        try:
            self.app = self._build()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise
        self._ready.set()
        self.app.run()

    def call(self, fn: Callable[[], T], timeout: float = WAIT) -> T:
        """Run `fn` on the Tk thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.app.post(run)
        return future.result(timeout)

    def quit(self) -> None:
        if self.thread.is_alive():
            self.app.post(self.app.quit)
            self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the Tk thread did not end"


__all__ = ["WAIT", "InProcessApp", "config_for", "write_config"]
