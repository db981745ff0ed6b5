"""`zgoda tray` on a bare X server: no tray host, no GTK, no window manager, pystray's
own choice of backend (xorg), Polish texts.

The icon cannot dock there ("Failed to dock icon"), and python-xlib refuses a
window title outside Latin-1; the app must start anyway, show its Polish code
dialog, answer a second start, and, until the user types a code, hold no network
socket and listen on nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ui.strings import Strings
from protocol.attestation import public_key_text
from tests.agent.test_cli import inet_sockets, socket_inodes
from tests.support.xdisplay import XDisplay, start_display
from tests.ui import xwin
from tests.ui.driver import TrayProcess

PL = Strings("pl")
UNIX_LISTENING = 0x00010000
"""__SO_ACCEPTCON in /proc/net/unix's Flags column: the socket listens."""
ASCII_END = "o pomoc$"
"""The Polish code dialog's title ends in these ASCII letters. xdotool matches WM_NAME,
which Tk writes as compound text when a title is not Latin-1, so the search anchors
on a plain part and the whole title is compared with `getwindowname`."""


@pytest.fixture(scope="module")
def bare_x() -> Iterator[XDisplay]:
    display = start_display(window_manager=False)
    try:
        yield display
    finally:
        display.stop()


def bare_env(display: XDisplay) -> dict[str, str]:
    """The display and nothing of a desktop: no session bus, no backend forced, no `gi`."""
    env = dict(display.env)
    for var in ("PYSTRAY_BACKEND", "DBUS_SESSION_BUS_ADDRESS", "PYTHONPATH", "LC_ALL"):
        env.pop(var, None)
    return env


def polish_config(path: Path) -> Path:
    """A config naming a relay nobody runs: nothing here may try to reach it."""
    key = public_key_text(Ed25519PrivateKey.generate().public_key())
    path.write_text(
        'relay_url = "http://127.0.0.1:9"\n'
        f'relay_key = "{key}"\norg_name = "Acme"\nlanguage = "pl"\n'
    )
    return path


def listening_unix_sockets(pid: int) -> list[str]:
    mine = socket_inodes(pid)
    found = []
    for row in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        cols = row.split()
        if cols[6] in mine and int(cols[3], 16) & UNIX_LISTENING:
            found.append(row)
    return found


def polish_code_dialog(env: dict[str, str]) -> int:
    wid = xwin.find_window(env, ASCII_END)
    assert xwin.xdotool(env, "getwindowname", str(wid)).strip() == PL.get("code.title")
    return wid


async def test_polish_without_a_tray_host_opens_the_dialog_and_listens_on_nothing(
    bare_x: XDisplay, tmp_path: Path
) -> None:
    env = bare_env(bare_x)
    tray = TrayProcess(env, polish_config(tmp_path / "agent.toml"), tmp_path / "run")
    try:
        tray.wait_ready()
        dialog = await asyncio.to_thread(polish_code_dialog, env)  # opened at start

        # No code typed yet: not one TCP or UDP socket, and nothing listening at all
        # (its only socket is the client end of the X connection).
        assert inet_sockets(tray.proc.pid) == []
        assert listening_unix_sockets(tray.proc.pid) == []

        cancel = (await asyncio.to_thread(xwin.widgets, bare_x.name, dialog))[-1]
        await asyncio.to_thread(xwin.click_at, env, *cancel.centre)
        await asyncio.to_thread(xwin.window_gone, env, ASCII_END)

        # A second start opens Get help in the first, and exits.
        knock = await asyncio.to_thread(tray.knock)
        assert knock.returncode == 0, knock.stderr
        await asyncio.to_thread(polish_code_dialog, env)
        assert inet_sockets(tray.proc.pid) == []
        assert tray.proc.poll() is None
    finally:
        status = tray.stop()
        print(f"--- zgoda tray exit status {status}; its log:\n{tray.log()}")
    assert status == 0
    assert "UnicodeEncodeError" not in tray.log()
