"""A real X display for tests: Xvfb (and optionally openbox), started and stopped by PID.

    from tests.support.xdisplay import xdisplay  # noqa: F401  (the fixture)

    def test_something(xdisplay):
        xdisplay.name    # ":7"
        xdisplay.env     # os.environ with DISPLAY set, for subprocesses

`xdisplay` is session-scoped: one Xvfb (1280×800×24, no TCP) with openbox, so
that focus follows new windows (pynput types printable characters with
XSendEvent to the *focused* window, PLATFORM.md). It sets `DISPLAY` in this
process too, because pynput reads it when first imported.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 30.0
"""Generous: on a loaded 2-core CI machine openbox has taken over 10 s to start."""
SCREEN = "1280x800x24"


@dataclass
class XDisplay:
    name: str
    xvfb: subprocess.Popen[bytes]
    wm: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for proc in (self.wm, self.xvfb):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


def _read_display_number(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                line = proc.stdout.readline().decode().strip()
                if line.isdigit():
                    return line
                break
            if proc.poll() is not None:
                break
    raise RuntimeError(f"Xvfb did not report a display (exit status {proc.poll()})")


def _wait_for_wm(env: dict[str, str], wm: subprocess.Popen[bytes]) -> None:
    """Until openbox has set _NET_SUPPORTING_WM_CHECK on the root window (bounded)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if wm.poll() is not None:
            raise RuntimeError(f"openbox exited with status {wm.returncode}")
        result = subprocess.run(
            ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
            env=env,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if "window id" in result.stdout:
            return
        time.sleep(0.05)
    raise RuntimeError("openbox did not start managing the display")


WM_ATTEMPTS = 3
"""openbox now and then exited with status 1 at start-up on a machine busy with
other test runs; it is tried again, and every failed try's stderr is reported."""


def _start_openbox(env: dict[str, str]) -> subprocess.Popen[bytes]:
    errors = []
    for _ in range(WM_ATTEMPTS):
        with tempfile.TemporaryFile() as log:
            wm = subprocess.Popen(
                ["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL, stderr=log
            )
            try:
                _wait_for_wm(env, wm)
            except RuntimeError as exc:
                if wm.poll() is None:
                    wm.kill()
                    wm.wait(5)
                log.seek(0)
                errors.append(f"{exc}: {log.read().decode(errors='replace').strip()}")
                continue
            return wm
    raise RuntimeError("openbox did not start: " + " | ".join(errors))


def start_display(*, window_manager: bool = True, screen: str = SCREEN) -> XDisplay:
    """Start Xvfb on a free display number (and openbox); raise RuntimeError if it fails."""
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed (apt-get install xvfb)")
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", screen, "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        name = ":" + _read_display_number(xvfb)
    except BaseException:
        xvfb.kill()
        xvfb.wait(5)
        assert xvfb.stdout is not None
        xvfb.stdout.close()
        raise
    display = XDisplay(name=name, xvfb=xvfb, env={**os.environ, "DISPLAY": name})
    if window_manager:
        try:
            display.wm = _start_openbox(display.env)
        except BaseException:
            display.stop()
            raise
    return display


@contextlib.contextmanager
def current_display(*, window_manager: bool = True) -> Iterator[XDisplay]:
    """A new display that is this process's `DISPLAY` for the block (Tk, the capture
    and pynput read it); then the previous `DISPLAY` is restored and the display stopped.

    Raises RuntimeError when the display cannot start (see `start_display`).
    """
    display = start_display(window_manager=window_manager)
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display.name
    try:
        yield display
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        display.stop()


@pytest.fixture(scope="session")
def xdisplay() -> Iterator[XDisplay]:
    with current_display() as display:
        yield display


def mark_x11_tests(items: list[pytest.Item], folder: Path) -> None:
    """Mark `x11` the tests below `folder` that use the `xdisplay` fixture (for a
    conftest's `pytest_collection_modifyitems`, which sees every collected test)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if folder in Path(str(item.fspath)).parents and "xdisplay" in names:
            item.add_marker(pytest.mark.x11)
