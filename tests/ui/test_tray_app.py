"""The tray app in this process: Tk on the test's main thread, the test's steps on a
driver thread (`run_in_process`), a display of its own (`bare_display`), pystray's
menu and icon logic with a stand-in loop (`stand_in_tray`), sessions through the
real relay.

The tray menu is clicked with pystray's own testable items (`icon.menu.items[i](icon)`);
the app's state is read on its Tk thread (`InProcessApp.call`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.frontend import Phase
from agent.ui.app import EngineFront, TrayApp, stray_threads
from agent.ui.desktop import PosixDesktop
from agent.ui.strings import Strings
from agent.ui.tray import TrayState
from protocol.attestation import Attestation
from protocol.codes import PhoneCode, parse_code
from protocol.errors import CodeError
from protocol.messages import (
    ConsentGranted,
    EndReason,
    Frame,
    HandBackEnded,
    HandBackStarted,
    Notice,
    NoticeCode,
    Party,
    Rights,
)
from tests.agent.consultant import Consultant
from tests.support.relay import RelayProcess
from tests.support.xdisplay import XDisplay
from tests.ui import xwin
from tests.ui.conftest import WAIT, InProcessApp, config_for, run_in_process, stand_in_tray

EN = Strings("en")
GET_HELP, END_SESSION, ABOUT, QUIT = 0, 1, 2, 4  # 3 is the separator

Steps = Callable[[InProcessApp], Coroutine[Any, Any, None]]


class FakeSecureDesktop(PosixDesktop):
    """Stands in for Windows' input-desktop check (it cannot run here)."""

    def __init__(self) -> None:
        self.active = False

    def secure_desktop_active(self) -> bool:
        return self.active


def run(
    relay: RelayProcess, steps: Steps, *, config: AgentConfig | None = None, **options: Any
) -> None:
    cfg = config if config is not None else config_for(relay)
    run_in_process(lambda: TrayApp(cfg, EN, tray_backend=stand_in_tray(), **options), steps)


def item(harness: InProcessApp, index: int) -> Any:
    return harness.app.tray.icon.menu.items[index]


def click_menu(harness: InProcessApp, index: int) -> None:
    """A click on the tray menu's item, as pystray delivers it (from the tray's side)."""
    icon = harness.app.tray.icon
    icon.menu.items[index](icon)


async def until(check: Callable[[], object], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def title(key: str) -> str:
    return "^" + EN.get(key).replace("–", ".*") + "$"


async def visible(display: XDisplay, key: str) -> int:
    return await asyncio.to_thread(xwin.find_window, display.env, title(key))


def dialog_message(harness: InProcessApp) -> str:
    return str(harness.call(lambda: harness.app.code_dialog.message.cget("text")))


async def enter_code(harness: InProcessApp, text: str) -> None:
    """Type into the dialog's field and press Connect (xdotool does it for real in
    test_employee_session.py)."""

    def fill() -> None:
        dialog = harness.app.code_dialog
        dialog.code.set(text)
        dialog.connect_button.invoke()

    await asyncio.to_thread(harness.call, fill)


# ------------------------------------------------------------------ the menu


def test_the_menu_says_what_it_does_and_end_session_waits_for_a_session(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    async def steps(harness: InProcessApp) -> None:
        texts = [item(harness, i).text for i in (GET_HELP, END_SESSION, ABOUT, QUIT)]
        keys = ("menu.get_help", "menu.end_session", "menu.about", "menu.quit")
        assert texts == [EN.get(k) for k in keys]
        assert item(harness, GET_HELP).enabled
        assert not item(harness, END_SESSION).enabled
        assert harness.app.tray.state is TrayState.IDLE

    run(ui_relay, steps)


def test_get_help_opens_the_code_dialog_and_about_names_the_relay(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    async def steps(harness: InProcessApp) -> None:
        click_menu(harness, GET_HELP)
        await visible(bare_display, "code.title")
        click_menu(harness, ABOUT)
        await visible(bare_display, "about.title")

        def about_text() -> str:
            body = harness.app.about.win.winfo_children()[0]
            return str(body.winfo_children()[0].cget("text"))

        about = await asyncio.to_thread(harness.call, about_text)
        assert ui_relay.url in about and ui_relay.org in about

    run(ui_relay, steps)


def test_quit_from_the_menu_leaves_no_thread_behind(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    before = {t.ident for t in threading.enumerate()}

    async def steps(harness: InProcessApp) -> None:
        names = {t.name for t in threading.enumerate()}
        assert {"zgoda-tray", "zgoda-tray-calls"} <= names
        click_menu(harness, QUIT)

    run(ui_relay, steps)
    assert stray_threads() == []
    assert {t.ident for t in threading.enumerate()} <= before


def test_without_a_tray_icon_get_help_still_opens_the_code_dialog(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    class RefusingIcon:
        """As python-xlib refused a Polish title in pystray's xorg backend."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise UnicodeEncodeError("latin-1", "ł", 0, 1, "ordinal not in range(256)")

    backend = stand_in_tray()
    backend.Icon = RefusingIcon
    pl = Strings("pl")

    async def steps(harness: InProcessApp) -> None:
        assert harness.app.tray is None
        await asyncio.to_thread(harness.call, harness.app.get_help)
        wid = await asyncio.to_thread(xwin.find_window, bare_display.env, "o pomoc$")
        name = await asyncio.to_thread(xwin.xdotool, bare_display.env, "getwindowname", str(wid))
        assert name.strip() == pl.get("code.title")

    config = config_for(ui_relay)
    run_in_process(lambda: TrayApp(config, pl, tray_backend=backend), steps)
    assert stray_threads() == []


# ------------------------------------------------------------------ the code dialog


def test_a_mistyped_code_shows_the_protocols_sentence_and_connects_nothing(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    with pytest.raises(CodeError) as error:
        parse_code("482-91")

    async def steps(harness: InProcessApp) -> None:
        click_menu(harness, GET_HELP)
        await enter_code(harness, "482-91")
        assert await asyncio.to_thread(dialog_message, harness) == str(error.value)
        assert harness.app.runner is None  # nothing connects before a valid code

    run(ui_relay, steps)


def test_the_polish_dialog_translates_the_parse_error() -> None:
    with pytest.raises(CodeError) as error:
        parse_code("48x-913-775")
    assert Strings("pl").code_error(error.value) == Strings("pl").get("code.error.characters")
    assert Strings("en").code_error(error.value) == str(error.value)


async def failed_attempt(harness: InProcessApp, code: str) -> str:
    """Get help, type `code`, Connect; the message the dialog shows afterwards."""
    click_menu(harness, GET_HELP)
    await enter_code(harness, code)
    await until(lambda: harness.app.last_outcome is not None)
    await until(lambda: harness.app.tray.state is TrayState.ERROR)
    assert await asyncio.to_thread(harness.call, lambda: harness.app.code_dialog is not None)
    return await asyncio.to_thread(dialog_message, harness)


def test_a_code_nobody_allocated_says_ask_for_a_new_code(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    async def steps(harness: InProcessApp) -> None:
        assert await failed_attempt(harness, "999-123-456") == EN.get("end.expired_code")

    run(ui_relay, steps)


def test_a_wrong_secret_says_the_code_did_not_match(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    async def steps(harness: InProcessApp) -> None:
        consultant = Consultant(ui_relay)
        try:
            code = await consultant.open()
            wrong = PhoneCode(code.nameplate, f"{(int(code.secret) + 1) % 10**6:06d}")
            assert await failed_attempt(harness, str(wrong)) == EN.get("end.wrong_code")
        finally:
            await consultant.close()

    run(ui_relay, steps)


def test_an_unreachable_relay_says_check_the_network(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def steps(harness: InProcessApp) -> None:
        assert await failed_attempt(harness, "123-456-789") == EN.get("end.unreachable")

    run(ui_relay, steps, config=config_for(ui_relay, relay_url=f"http://127.0.0.1:{port}"))


# ------------------------------------------------------------------ a session


def prompt_state(harness: InProcessApp) -> tuple[list[str], str]:
    """The consent prompt's label texts and the text of the focused button."""

    def read() -> tuple[list[str], str]:
        win = harness.app.consent.win
        body = win.winfo_children()[0]
        labels = [w.cget("text") for w in body.winfo_children() if w.winfo_class() == "TLabel"]
        focused = win.focus_get()
        return labels, str(focused.cget("text")) if focused is not None else ""

    return harness.call(read)


def notice(consultant: Consultant, code: NoticeCode) -> Notice | None:
    return next((e for e in consultant.events if isinstance(e, Notice) and e.code is code), None)


def test_a_session_names_who_asks_reports_a_secure_desktop_and_ends_from_the_menu(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    desktop = FakeSecureDesktop()

    async def steps(harness: InProcessApp) -> None:
        consultant = Consultant(ui_relay)
        try:
            await session(harness, consultant)
        finally:
            await consultant.close()

    async def session(harness: InProcessApp, consultant: Consultant) -> None:
        code = await consultant.open()
        click_menu(harness, GET_HELP)
        await enter_code(harness, str(code))
        await until(lambda: harness.app.consent is not None)

        labels, focused = await asyncio.to_thread(prompt_state, harness)
        org, who, ticket = ui_relay.org, ui_relay.display_name, consultant.ticket
        assert labels[:3] == [
            EN.get("consent.who", who=who, org=org),
            EN.get("consent.ticket", id=ticket["id"], title=ticket["title"]),
            EN.get("consent.rights.control"),
        ]
        assert focused == EN.get("consent.deny")
        assert harness.app.tray.state is TrayState.ASKING

        allow = EN.get("consent.allow")
        await asyncio.to_thread(harness.call, lambda: harness.app.consent.buttons[allow].invoke())
        assert (await consultant.wait_for(ConsentGranted)).rights is Rights.CONTROL
        await consultant.wait_for(Frame)
        await until(lambda: harness.app.tray.state is TrayState.CONTROLLING)
        assert item(harness, END_SESSION).enabled and not item(harness, GET_HELP).enabled
        started = EN.get("notify.started", who=who, org=org)
        assert started in harness.app.tray.notifications
        await until(lambda: started in harness.app.tray.icon.shown)  # through pystray

        desktop.active = True  # UAC: the next grab fails, with a sentence for the consultant
        secure = await consultant.wait_until(lambda: notice(consultant, NoticeCode.SECURE_DESKTOP))
        assert EN.get("secure_desktop") in secure.text
        frames = len(consultant.frames)
        desktop.active = False  # answered: the picture comes back
        await consultant.wait_until(lambda: len(consultant.frames) > frames)

        # About during a session: the consultant's input waits while it is open.
        click_menu(harness, ABOUT)
        paused = await consultant.wait_until(lambda: notice(consultant, NoticeCode.INPUT_PAUSED))
        assert paused.code is NoticeCode.INPUT_PAUSED
        await asyncio.to_thread(harness.call, lambda: harness.app.about.close())
        await consultant.wait_until(lambda: notice(consultant, NoticeCode.INPUT_RESUMED))

        # The consultant hands the keyboard back (e.g. for a password): the banner says so.
        assert consultant.conn is not None
        consultant.conn.request_hand_back()
        await consultant.flush()
        await consultant.wait_for(HandBackStarted)
        await until(lambda: harness.app.banner is not None)
        assert harness.app.tray.state is TrayState.HAND_BACK
        done = EN.get("banner.done")

        def press_done() -> None:
            banner = harness.app.banner
            assert str(banner.done_button.cget("text")) == done
            banner.done_button.invoke()

        await asyncio.to_thread(harness.call, press_done)
        await consultant.wait_for(HandBackEnded)
        await until(lambda: harness.app.banner is None)

        click_menu(harness, END_SESSION)
        ended = await consultant.ended()
        assert (ended.by, ended.reason) == (Party.AGENT, EndReason.USER_ENDED)
        await until(lambda: harness.app.bar is None)
        assert harness.app.tray.state is TrayState.IDLE
        ended_note = EN.get("notify.ended", message=EN.get("end.user"))
        assert harness.app.tray.notifications[-1] == ended_note

    run(ui_relay, steps, desktop=desktop)


def test_a_dropped_link_shows_on_the_bar_and_in_the_tray_until_it_is_back(
    bare_display: XDisplay, ui_relay: RelayProcess
) -> None:
    """The engine's RECONNECTING phase (its resume, tested in tests/agent) as the user sees it."""

    async def steps(harness: InProcessApp) -> None:
        app = harness.app

        def enter(phase: Phase) -> tuple[str, str, TrayState]:
            app.on_phase(app.front, phase)
            bar = app.bar
            return (
                str(bar.label.cget("text")),
                str(bar.hand_back_button.cget("state")),
                (app.tray.state),
            )

        def begin() -> None:
            app.front = EngineFront(app)
            app.attestation = Attestation(
                nameplate="123",
                consultant="Anna Nowak",
                ticket_id="7",
                ticket_title="Printer",
                org="Acme",
                expires_at=0.0,
            )

        await asyncio.to_thread(harness.call, begin)
        who = {"who": "Anna Nowak", "org": "Acme"}
        controlling = await asyncio.to_thread(harness.call, lambda: enter(Phase.CONTROLLING))
        assert controlling == (EN.get("bar.controlling", **who), "normal", TrayState.CONTROLLING)
        lost = await asyncio.to_thread(harness.call, lambda: enter(Phase.RECONNECTING))
        assert lost == (EN.get("bar.reconnecting", **who), "disabled", TrayState.CONNECTING)
        assert app.tray.tooltip == EN.get("tray.reconnecting")
        assert app.in_session  # End session stays available
        back = await asyncio.to_thread(harness.call, lambda: enter(Phase.CONTROLLING))
        assert back == controlling

    run(ui_relay, steps)
