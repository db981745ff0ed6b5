"""Fixtures of the tray app's tests: X display with a tray host, a real relay, a consultant,
`zgoda tray` as a process, and the app in this process on a Tk thread of its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from agent.config import AgentConfig
from tests.agent.conftest import TEST_LIMITS
from tests.agent.consultant import Consultant
from tests.support.relay import RelayProcess, module_relay
from tests.support.xdisplay import XDisplay, current_display
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


ui_relay = module_relay("One real relay per test module.", TEST_LIMITS)


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

    def start(*args: str, language: str | None = "en", **env: str) -> TrayProcess:
        config = write_config(tmp_path / "agent.toml", ui_relay, language)
        run = tmp_path / f"run{len(started)}"
        tray = TrayProcess({**tray_host.env, **env}, config, run, *args)
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
    """A `TrayApp` whose Tk loop runs on this test's main thread; `call()` runs code there.

    Tk must stay on one thread for good: Tcl aborts the process when an
    interpreter is freed by a thread other than its creator, and the garbage
    collector frees on whichever thread it happens to run. So the app runs on the
    main thread, the test's steps run on a "test-driver" thread
    (`run_in_process`), and the app is collected on the main thread at the end.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def call(self, fn: Callable[[], T], timeout: float = WAIT) -> T:
        """Run `fn` on the Tk thread and return its result (from the driver thread)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.app.post(run)
        return future.result(timeout)


DRIVER_TIMEOUT = 120.0
"""Bound on a test's steps; the Tk loop then ends whatever they did."""


def run_in_process(
    build: Callable[[], Any], steps: Callable[[InProcessApp], Coroutine[Any, Any, None]]
) -> None:
    """Build the app here, run `steps` on a driver thread (with its own event loop)
    while Tk runs here, then quit the app; re-raises what the steps raised."""
    harness = InProcessApp(build())
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            asyncio.run(asyncio.wait_for(steps(harness), DRIVER_TIMEOUT))
        except BaseException as exc:
            errors.append(exc)
        finally:
            harness.app.post(harness.app.quit)  # no-op when the steps quit already

    driver = threading.Thread(target=drive, name="test-driver")
    harness.app.post(driver.start)  # once Tk's loop runs, so the tray is up
    try:
        harness.app.run()
    finally:
        driver.join(DRIVER_TIMEOUT + WAIT)
        harness.app = None
        gc.collect()  # here, on the thread that made every Tcl object
    assert not driver.is_alive(), "the test's steps did not end"
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def bare_display() -> Iterator[XDisplay]:
    """A display of its own (no window manager, no tray host) for the app in this process.

    No window manager: nothing here types into a window, and Tk's focus_force works
    without one.
    """
    with current_display(window_manager=False) as display:
        yield display


def stand_in_tray() -> Any:
    """A pystray "backend" for the app in this process: pystray's own Icon, Menu and
    MenuItem logic with a loop that only waits for `stop()`.

    A stand-in, named as such, for the one thing that cannot run reliably in a
    test process here: a real tray loop. pystray's xorg backend shares one Xlib
    connection between threads and breaks (agent/ui/tray.py); its gtk backend
    needs Debian's PyGObject, built for Debian's Python, which corrupted this
    interpreter's state when loaded into it. The real gtk icon, docked in trayer,
    runs in the `zgoda tray` processes of test_employee_session.py.
    """
    from pystray import _base

    class StandInIcon(_base.Icon):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._stop_event = threading.Event()
            self.shown: list[str] = []  # notifications, in order

        def _show(self) -> None:
            pass

        def _hide(self) -> None:
            pass

        def _update_icon(self) -> None:
            pass

        def _update_title(self) -> None:
            pass

        def _update_menu(self) -> None:
            pass

        def _run(self) -> None:
            self._mark_ready()
            self._stop_event.wait()

        def _run_detached(self) -> None:
            raise NotImplementedError("run() only")

        def _stop(self) -> None:
            self._stop_event.set()

        def _notify(self, message: str, title: str | None = None) -> None:
            self.shown.append(message)

        def _remove_notification(self) -> None:
            pass

    return SimpleNamespace(Icon=StandInIcon, Menu=_base.Menu, MenuItem=_base.MenuItem)


__all__ = [
    "WAIT",
    "InProcessApp",
    "config_for",
    "run_in_process",
    "stand_in_tray",
    "write_config",
]
