"""Whole sessions the employee's way: `zgoda tray` as a real process on Xvfb (trayer as
the tray host), a real relay, a headless consultant; every click is xdotool's.

The code dialog is opened by a second start of `zgoda tray` (its knock runs the
same *Get help* action as the tray menu, which `test_tray_app.py` clicks). A
negative check waits QUIET after the consultant's messages went through the
relay: a bounded wait for something that must not happen, not a speed check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from agent.ui.strings import Strings
from protocol.messages import (
    ConsentDenied,
    ConsentGranted,
    ConsentPending,
    DenyReason,
    EndReason,
    Frame,
    HandBackEnded,
    HandBackStarted,
    MouseButton,
    Party,
    PointerButton,
    PointerMove,
    Rights,
)
from tests.agent.consultant import Consultant
from tests.agent.test_cli import inet_sockets
from tests.ui import xwin
from tests.ui.conftest import Desktop
from tests.ui.driver import TrayProcess

EN = Strings("en")
QUIET = 1.0
"""How long a negative check waits for something that must not happen."""


def title(key: str) -> str:
    """An anchored xdotool regex for a window title (its dash is not ASCII)."""
    return "^" + EN.get(key).replace("–", ".*") + "$"


async def find(display: Desktop, key: str) -> int:
    return await asyncio.to_thread(xwin.find_window, display.env, title(key))


async def gone(display: Desktop, key: str) -> None:
    await asyncio.to_thread(xwin.window_gone, display.env, title(key))


async def widgets(display: Desktop, wid: int) -> list[xwin.Box]:
    return await asyncio.to_thread(xwin.widgets, display.name, wid)


async def click(display: Desktop, box: xwin.Box) -> None:
    await asyncio.to_thread(xwin.click_at, display.env, *box.centre)


async def open_code_dialog(tray: TrayProcess, display: Desktop) -> int:
    knock = await asyncio.to_thread(tray.knock)
    assert knock.returncode == 0, knock.stderr
    return await find(display, "code.title")


async def type_code(display: Desktop, dialog: int, code: str) -> None:
    """Type into the dialog's field as a user does, then click Connect."""
    env = display.env
    await asyncio.to_thread(xwin.xdotool, env, "windowactivate", "--sync", str(dialog))
    await asyncio.to_thread(xwin.xdotool, env, "type", "--delay", "15", code)
    buttons = await widgets(display, dialog)
    await click(display, buttons[-2])  # Connect, Cancel


async def consent_buttons(display: Desktop) -> list[xwin.Box]:
    """Allow, View only, Deny (the prompt's last three widgets)."""
    prompt = await find(display, "consent.title")
    return (await widgets(display, prompt))[-3:]


async def frames_after(consultant: Consultant, count: int) -> None:
    await consultant.wait_until(lambda: len(consultant.frames) > count)


def mostly(path: Path, colour: tuple[int, int, int]) -> float:
    """The share of the screenshot's pixels that have `colour`."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return float(np.all(rgb == np.array(colour, np.uint8), axis=-1).mean())


async def test_a_full_session_the_employees_way(
    start_tray: Callable[..., TrayProcess],
    tray_host: Desktop,
    consultant: Consultant,
    tmp_path: Path,
) -> None:
    display = tray_host
    tray = start_tray("--no-help")
    code = await consultant.open()
    dialog = await open_code_dialog(tray, display)
    assert inet_sockets(tray.proc.pid) == []  # tray, menu, dialog: no port before Connect
    await type_code(display, dialog, str(code))

    allow, _view_only, _deny = await consent_buttons(display)
    await gone(display, "code.title")  # the code was right: its dialog is done
    await click(display, allow)
    granted = await consultant.wait_for(ConsentGranted)
    assert granted.rights is Rights.CONTROL
    await consultant.wait_for(Frame)

    bar = await find(display, "bar.title")
    shot = await asyncio.to_thread(xwin.screenshot, display.env, bar, tmp_path / "bar.png")
    assert mostly(shot, (0xB3, 0x26, 0x1E)) > 0.5  # the red of "controls mouse and keyboard"
    grip, _label, give_keyboard, end_session = await widgets(display, bar)

    # It can be moved (drag its grip) ...
    env = display.env
    x, y = grip.centre
    drag = ["mousemove", str(x), str(y), "mousedown", "1", "mousemove", str(x), str(y + 120)]
    await asyncio.to_thread(xwin.xdotool, env, *drag, "mouseup", "1")
    target = grip.y + 100
    moved = await asyncio.to_thread(
        xwin.wait_geometry, display.name, bar, lambda box: box.y >= target
    )
    assert moved.y >= target
    # ... but not hidden: unmapped, it is back at once.
    await asyncio.to_thread(xwin.xdotool, env, "windowunmap", str(bar))
    assert await find(display, "bar.title") == bar
    grip, _label, give_keyboard, end_session = await widgets(display, bar)

    await click(display, give_keyboard)
    started = await consultant.wait_for(HandBackStarted)
    assert started.by is Party.AGENT
    banner = await find(display, "banner.title")
    done = (await widgets(display, banner))[-1]
    frames = len(consultant.frames)
    await click(display, done)
    await consultant.wait_for(HandBackEnded)
    await gone(display, "banner.title")
    await frames_after(consultant, frames)  # the stream resumed

    await click(display, end_session)
    ended = await consultant.ended()
    assert (ended.by, ended.reason) == (Party.AGENT, EndReason.USER_ENDED)
    await gone(display, "bar.title")
    assert tray.stop() == 0


async def test_an_unanswered_consent_prompt_denies(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop, consultant: Consultant
) -> None:
    display = tray_host
    tray = start_tray("--no-help", "--consent-timeout", "5")
    code = await consultant.open()
    await type_code(display, await open_code_dialog(tray, display), str(code))
    await find(display, "consent.title")
    pending = await consultant.wait_for(ConsentPending)
    assert pending.timeout_seconds == 5
    denied = await consultant.wait_for(ConsentDenied, timeout=pending.timeout_seconds + 10)
    assert denied.reason is DenyReason.TIMEOUT
    assert consultant.count(ConsentGranted) == 0 and consultant.count(Frame) == 0
    await gone(display, "consent.title")
    assert tray.stop() == 0


async def test_enter_on_the_consent_prompt_denies(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop, consultant: Consultant
) -> None:
    """The focus starts on Deny: a user typing elsewhere who hits Enter refuses."""
    display = tray_host
    tray = start_tray("--no-help")
    code = await consultant.open()
    await type_code(display, await open_code_dialog(tray, display), str(code))
    prompt = await find(display, "consent.title")
    await asyncio.to_thread(xwin.xdotool, display.env, "windowactivate", "--sync", str(prompt))
    await asyncio.to_thread(xwin.xdotool, display.env, "key", "Return")
    denied = await consultant.wait_for(ConsentDenied)
    assert denied.reason is DenyReason.USER_DENIED
    assert tray.stop() == 0


async def inject_click(consultant: Consultant, box: xwin.Box) -> None:
    """The consultant clicks at a screen point, whatever its own table allows."""
    x, y = box.centre  # Xvfb has one monitor at (0, 0): screen = monitor coordinates
    await consultant.send_raw(PointerMove(x=x, y=y))
    for down in (True, False):
        await consultant.send_raw(PointerButton(button=MouseButton.LEFT, down=down, x=x, y=y))


async def test_a_click_injected_at_allow_before_consent_grants_nothing(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop, consultant: Consultant
) -> None:
    """Input before consent is a protocol violation: the session ends, nothing granted."""
    display = tray_host
    tray = start_tray("--no-help")
    code = await consultant.open()
    await type_code(display, await open_code_dialog(tray, display), str(code))
    allow, _view_only, _deny = await consent_buttons(display)
    await inject_click(consultant, allow)
    ended = await consultant.ended()
    assert ended.reason is EndReason.PROTOCOL_ERROR
    assert consultant.count(ConsentGranted) == 0 and consultant.count(Frame) == 0
    await gone(display, "consent.title")
    assert tray.stop() == 0


async def test_the_consultants_clicks_on_allow_and_done_do_nothing(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop, consultant: Consultant
) -> None:
    display = tray_host
    tray = start_tray("--no-help")
    code = await consultant.open()
    await type_code(display, await open_code_dialog(tray, display), str(code))
    _allow, view_only, _deny = await consent_buttons(display)
    await click(display, view_only)
    assert (await consultant.wait_for(ConsentGranted)).rights is Rights.VIEW
    await consultant.wait_for(Frame)

    # Viewing, the consultant asks for control and clicks Allow on the prompt itself.
    assert consultant.conn is not None
    consultant.conn.request_rights(Rights.CONTROL)
    await consultant.flush()
    prompt = await find(display, "escalation.title")
    allow_control, _keep = (await widgets(display, prompt))[-2:]
    await inject_click(consultant, allow_control)
    await asyncio.sleep(QUIET)
    assert xwin.is_visible(display.env, title("escalation.title"))
    assert consultant.count(ConsentGranted) == 1

    await click(display, allow_control)  # the user's own click
    await consultant.wait_until(lambda: consultant.count(ConsentGranted) == 2)
    # With control, the consultant's clicks do reach the agent's own windows: a click
    # on the bar's "Give me the keyboard" works (and only takes rights away) ...
    bar = await find(display, "bar.title")
    _grip, _label, give_keyboard, _end = await widgets(display, bar)
    await inject_click(consultant, give_keyboard)
    started = await consultant.wait_for(HandBackStarted)
    assert started.by is Party.AGENT

    # ... but the banner's Done does nothing for them.
    banner = await find(display, "banner.title")
    done = (await widgets(display, banner))[-1]
    await inject_click(consultant, done)
    await asyncio.sleep(QUIET)
    assert xwin.is_visible(display.env, title("banner.title"))
    assert consultant.count(HandBackEnded) == 0

    await click(display, done)
    await consultant.wait_for(HandBackEnded)
    assert tray.stop() == 0  # SIGTERM: Quit, which ends the session first
    ended = await consultant.ended()
    assert (ended.by, ended.reason) == (Party.AGENT, EndReason.AGENT_SHUTDOWN)


async def test_without_a_configured_language_the_dialogs_follow_the_system_locale(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop
) -> None:
    pl = Strings("pl")
    tray = start_tray(language=None, LANG="pl_PL.UTF-8", LC_ALL="")  # opens Get help itself
    # The title ends in ASCII; xdotool matches bytes, so anchor on that part only.
    wid = await asyncio.to_thread(xwin.find_window, tray_host.env, "o pomoc$")
    name = await asyncio.to_thread(xwin.xdotool, tray_host.env, "getwindowname", str(wid))
    assert name.strip() == pl.get("code.title")
    assert tray.stop() == 0


MENU_FIRST_ITEM = 16
"""Pixels from the top of the GTK menu to the middle of its first item (Get help…) and
from its bottom to the middle of the last (Quit), with Debian's default GTK theme."""


MENU_ATTEMPTS = 3
MENU_WAIT = 5.0


async def open_tray_menu(display: Desktop) -> xwin.Box:
    """Right-click the docked icon until GTK's menu shows (bounded).

    Right after a start, trayer's panel can still hold the embedding window of the
    previous test's icon, or the new icon is docked but not yet realised; a click
    there is lost (seen about once in ten runs), so the icon is looked up again.
    """
    for _ in range(MENU_ATTEMPTS - 1):
        before = await right_click_icon(display)
        try:
            return await asyncio.to_thread(
                xwin.popup_menu, display.env, display.name, before, MENU_WAIT
            )
        except AssertionError:
            continue
    before = await right_click_icon(display)
    return await asyncio.to_thread(xwin.popup_menu, display.env, display.name, before, MENU_WAIT)


async def right_click_icon(display: Desktop) -> set[int]:
    """Right-click the tray icon; the windows visible before, to spot the menu by."""
    icon = await asyncio.to_thread(xwin.tray_icon, display.env, display.name)
    before = await asyncio.to_thread(xwin.visible_windows, display.env)
    x, y = icon.centre
    click = ["mousemove", str(x), str(y), "click", "3"]
    await asyncio.to_thread(xwin.xdotool, display.env, *click)
    return before


async def test_the_real_tray_menu_opens_get_help_and_quits(
    start_tray: Callable[..., TrayProcess], tray_host: Desktop
) -> None:
    """pystray's gtk icon docked in trayer: a right click opens GTK's menu."""
    display = tray_host
    tray = start_tray("--no-help")
    menu = await open_tray_menu(display)
    await asyncio.to_thread(
        xwin.click_at, display.env, menu.x + menu.width // 2, menu.y + MENU_FIRST_ITEM
    )
    await find(display, "code.title")

    menu = await open_tray_menu(display)
    bottom = menu.y + menu.height
    await asyncio.to_thread(
        xwin.click_at, display.env, menu.x + menu.width // 2, bottom - MENU_FIRST_ITEM - 1
    )
    assert await asyncio.to_thread(tray.proc.wait, 30) == 0  # Quit: the process ends itself
