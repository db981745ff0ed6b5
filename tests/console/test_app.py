"""The desktop app, offscreen: real widgets, real relay, the protocol's agent end as the PC.

Widgets are driven with QTest (keys and clicks as a consultant would make
them) and checked with `grab()` pixel reads, on a qasync loop.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QColor, QKeyEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

import console
from console.app.pages import CodePanel, TicketForm
from console.app.window import MainWindow
from console.session import Phase
from protocol.codes import PhoneCode, parse_code
from protocol.connection import SessionEnded
from protocol.messages import (
    Cursor,
    CursorShape,
    DenyReason,
    Encoding,
    EndReason,
    Frame,
    KeyEvent,
    Monitor,
    MonitorLayout,
    MouseButton,
    Notice,
    NoticeCode,
    Party,
    PointerButton,
    Region,
    Rights,
    Scroll,
    SelectMonitor,
)
from tests.console.peer import ScriptedAgent
from tests.console.qt import QtLoop, until
from tests.support.relay import RelayProcess

QUADRANTS = {  # B, G, R of the four quarters of a 320×200 test screen
    "top_left": (30, 30, 220),
    "top_right": (60, 180, 30),
    "bottom_left": (210, 60, 40),
    "bottom_right": (40, 220, 240),
}


def quadrant_frame(frame_id: int = 1) -> Frame:
    regions = []
    for name, (b, g, r) in QUADRANTS.items():
        x = 0 if "left" in name else 160
        y = 0 if "top" in name else 100
        regions.append(
            Region(
                x=x, y=y, width=160, height=100, encoding=Encoding.SOLID, data=bytes((b, g, r, 255))
            )
        )
    return Frame(
        frame_id=frame_id,
        captured_at_ns=time.monotonic_ns(),
        width=320,
        height=200,
        regions=tuple(regions),
    )


def make_window(tmp_path: Path) -> MainWindow:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.show()
    return window


def close_window(qloop: QtLoop, window: MainWindow) -> None:
    window.close()
    qloop.run(window.shutdown())
    window.deleteLater()


def viewer_pixel(window: MainWindow, rx: int, ry: int) -> tuple[int, int, int]:
    """The colour the viewer shows for the PC's pixel (rx, ry)."""
    viewer = window.viewer
    rect = viewer.image_rect()
    fb = window.session.framebuffer if window.session else None
    assert fb is not None and not rect.isEmpty()
    x = int(rect.x() + (rx + 0.5) * rect.width() / fb.width)
    y = int(rect.y() + (ry + 0.5) * rect.height() / fb.height)
    color = viewer.grab().toImage().pixelColor(x, y)
    return color.red(), color.green(), color.blue()


async def log_in(window: MainWindow, relay: RelayProcess, password: str | None = None) -> None:
    page = window.login
    page.relay_url.clear()
    QTest.keyClicks(page.relay_url, relay.url)
    page.username.clear()
    QTest.keyClicks(page.username, relay.username)
    page.password.clear()
    QTest.keyClicks(page.password, password if password is not None else relay.password)
    QTest.mouseClick(page.button, Qt.MouseButton.LeftButton)
    await until(lambda: page.button.isEnabled() and not window.tasks, what="login to finish")


def send_key(widget: QWidget, key: int, text: str = "", press: bool = True) -> None:
    """A key event as the platform delivers it (QTest only types ASCII)."""
    kind = QEvent.Type.KeyPress if press else QEvent.Type.KeyRelease
    QApplication.sendEvent(widget, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, text))


def type_polish(widget: QWidget) -> None:
    send_key(widget, ord("Ż"), "ż")
    send_key(widget, ord("Ż"), "ż", press=False)
    send_key(widget, Qt.Key.Key_AltGr)
    send_key(widget, ord("Ą"), "ą")
    send_key(widget, ord("Ą"), "ą", press=False)
    send_key(widget, Qt.Key.Key_AltGr, press=False)


def fill_form(form: TicketForm, caller: str, phone: str, problem: str) -> None:
    """Type into the form (QTest types ASCII; other characters go in as a paste would)."""
    for edit, text in ((form.caller_name, caller), (form.phone, phone)):
        edit.clear()
        if text.isascii():
            QTest.keyClicks(edit, text)
        else:
            edit.insert(text)
    form.problem.clear()
    if problem.isascii():
        QTest.keyClicks(form.problem, problem)
    else:
        form.problem.insertPlainText(problem)


# --------------------------------------------------------------- no relay needed


def test_ticket_form_refuses_missing_or_malformed_fields(qapp: QApplication) -> None:
    form = TicketForm()
    sent: list[tuple[dict[str, str], bool]] = []
    form.submitted.connect(lambda fields, start: sent.append((fields, start)))
    QTest.mouseClick(form.register, Qt.MouseButton.LeftButton)
    assert sent == []
    assert all(not label.isHidden() for label in form.errors.values())
    fill_form(form, "Jan Kowalski", "call me maybe", "Outlook nie startuje")
    QTest.mouseClick(form.register, Qt.MouseButton.LeftButton)
    assert sent == [] and "phone number" in form.errors["phone"].text()
    assert form.errors["caller_name"].isHidden() and form.errors["problem"].isHidden()
    fill_form(form, "Jan Kowalski", "+48 (22) 600-100-200", "Outlook nie startuje")
    QTest.mouseClick(form.register_and_start, Qt.MouseButton.LeftButton)
    assert sent == [
        (
            {
                "caller_name": "Jan Kowalski",
                "company": "",
                "phone": "+48 (22) 600-100-200",
                "problem": "Outlook nie startuje",
            },
            True,
        )
    ]
    assert all(label.isHidden() for label in form.errors.values())
    form.deleteLater()


def test_code_is_shown_large_grouped_with_a_countdown_that_expires(qapp: QApplication) -> None:
    panel = CodePanel()
    panel.set_code(PhoneCode("482", "913775"), time.time() + 125)
    assert panel.code_label.text() == "482 913 775"
    assert panel.code_label.font().pointSize() >= 40
    assert panel.countdown.text() in ("expires in 2:05", "expires in 2:04")
    panel.set_code(PhoneCode("482", "913775"), time.time() - 1)
    assert "expired" in panel.countdown.text()
    assert not panel.timer.isActive()
    panel.deleteLater()


def test_window_layout_and_last_relay_are_remembered(qapp: QApplication, tmp_path: Path) -> None:
    window = make_window(tmp_path)
    window.resize(780, 520)
    window.scale_action.trigger()  # 1:1
    assert not window.viewer.scaled
    window.settings.setValue("relay_url", "http://127.0.0.1:1")
    window.close()
    window.deleteLater()
    again = make_window(tmp_path)
    try:
        assert not again.viewer.scaled and again.scale_action.isChecked()
        assert (again.width(), again.height()) == (780, 520)
        assert again.login.relay_url.text() == "http://127.0.0.1:1"
    finally:
        again.close()
        again.deleteLater()


def test_unreachable_relay_is_shown_on_the_login_page(qloop: QtLoop, tmp_path: Path) -> None:
    window = make_window(tmp_path)
    try:
        ok = qloop.run(window.log_in("http://127.0.0.1:9", "anna", "x"))
        assert not ok and window.pages.currentWidget() is window.login
        assert "does not answer" in window.login.message.text()
        assert not window.login.message.isHidden()
    finally:
        close_window(qloop, window)


# ------------------------------------------------------------------ with a relay


def test_whole_call_in_the_app(qloop: QtLoop, relay: RelayProcess, tmp_path: Path) -> None:
    window = make_window(tmp_path)

    async def scenario() -> None:
        await log_in(window, relay, password="not my password")
        assert window.pages.currentWidget() is window.login
        assert window.login.message.text()
        await log_in(window, relay)
        assert window.pages.currentWidget() is window.splitter
        assert relay.display_name in window.windowTitle()
        assert window.settings.value("relay_url") == relay.url

        form = window.tickets.form
        fill_form(form, "Jan Kowalski", "+48 600 100 200", "Drukarka nie drukuje")
        QTest.mouseClick(form.register_and_start, Qt.MouseButton.LeftButton)
        panel = window.code_panel
        await until(lambda: panel.code_label.text()[:1].isdigit(), what="the code")
        assert window.session_stack.currentWidget() is panel
        assert panel.countdown.text().startswith("expires in 9:") or panel.countdown.text() == (
            "expires in 10:00"
        )
        assert form.caller_name.text() == ""  # registered: the form is ready for the next call
        code = parse_code(panel.code_label.text())  # what the user types, as read aloud

        async with ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, code) as agent:
            prompt = await agent.consent_prompt()
            assert (
                prompt.attestation.ticket_title.startswith("Jan Kowalski")
                or prompt.attestation.ticket_title
            )
            await until(lambda: "closes in" in panel.status.text(), what="the consent prompt")
            assert window.viewer.overlay_text() == "Waiting for the user to allow the session"
            await agent.allow(Rights.CONTROL)
            await until(lambda: window.session_stack.currentWidget() is window.viewer_area)
            assert "Control" in window.rights_label.text()
            assert window.hand_back_action.isEnabled() and window.end_action.isEnabled()
            assert (
                not window.cad_action.isEnabled()
                and "secure desktop" in window.cad_action.toolTip()
            )

            await agent.send(quadrant_frame())
            await until(lambda: window.session is not None and window.session.stats.frames >= 1)
            assert window.viewer.overlay_text() is None
            for name, (b, g, r) in QUADRANTS.items():
                rx = 40 if "left" in name else 280
                ry = 25 if "top" in name else 175
                got = viewer_pixel(window, rx, ry)
                assert max(abs(a - e) for a, e in zip(got, (r, g, b), strict=True)) <= 2, name

            # the agent's cursor is drawn where it says, with its shape
            magenta = bytes((255, 0, 255, 255)) * 64
            shape = CursorShape(width=8, height=8, hot_x=0, hot_y=0, rgba=magenta)
            await agent.send(Cursor(x=60, y=40, visible=True, shape=shape))
            await until(lambda: viewer_pixel(window, 63, 43) == (255, 0, 255), what="the cursor")

            # the status line shows frame rate, throughput, round trip and codec
            window._update_stats()
            stats = window.stats_label.text()
            assert "fps" in stats and "kbit/s" in stats and "SOLID" in stats, stats
            await until(lambda: window.session is not None and window.session.stats.rtt_ms)
            window._update_stats()
            assert " ms" in window.stats_label.text()

            # two monitors: the switcher lists them and asks the PC for the other one
            await agent.send(
                MonitorLayout(
                    monitors=(
                        Monitor(
                            index=0,
                            x=0,
                            y=0,
                            width=320,
                            height=200,
                            scale_percent=100,
                            primary=True,
                            name="DP-1",
                        ),
                        Monitor(
                            index=1,
                            x=320,
                            y=0,
                            width=320,
                            height=200,
                            scale_percent=100,
                            name="HDMI-1",
                        ),
                    ),
                    selected=0,
                )
            )
            await until(lambda: window.monitors.count() == 2, what="the monitor list")
            assert window.monitors.isEnabled() and "HDMI-1" in window.monitors.itemText(1)
            window.monitors.setCurrentIndex(1)
            window.monitors.activated.emit(1)
            await agent.wait(lambda: agent.of(SelectMonitor) == [SelectMonitor(index=1)])

            viewer = window.viewer
            QTest.keyClick(viewer, Qt.Key.Key_A)
            QTest.keyClick(viewer, Qt.Key.Key_Return)
            type_polish(viewer)  # ż plain, then AltGr+a = ą as on a Polish keyboard
            QTest.keyClick(viewer, Qt.Key.Key_F5)
            center = viewer.image_rect().center().toPoint()
            QTest.mouseClick(
                viewer, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, center
            )
            # one notch down, then a touchpad's two half-notches up: two Scrolls of one notch
            for angle in (-120, 60, 60):
                wheel = QWheelEvent(
                    QPointF(center),
                    QPointF(center),
                    QPoint(0, 0),
                    QPoint(0, angle),
                    Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier,
                    Qt.ScrollPhase.NoScrollPhase,
                    False,
                )
                QApplication.sendEvent(viewer, wheel)
            await agent.wait(lambda: len(agent.of(Scroll)) == 2)
            assert [s.dy for s in agent.of(Scroll)] == [-1, 1]
            await agent.wait(lambda: len(agent.of(PointerButton)) == 2)
            keys = [(k.key, k.down) for k in agent.of(KeyEvent)]
            assert keys == [
                ("a", True),
                ("a", False),
                ("enter", True),
                ("enter", False),
                ("ż", True),
                ("ż", False),
                ("ą", True),
                ("ą", False),
                ("f5", True),
                ("f5", False),
            ]
            press, release = agent.of(PointerButton)
            assert (press.button, press.down, release.down) == (MouseButton.LEFT, True, False)
            assert abs(press.x - 160) <= 2 and abs(press.y - 100) <= 2
            assert viewer.capturing  # a click in the viewer captures the keyboard

            window.hand_back_action.trigger()
            await until(
                lambda: window.session is not None and window.session.phase is Phase.HAND_BACK
            )
            assert window.viewer.overlay_text() == "The user is typing a password: screen hidden"
            await asyncio.sleep(0.05)  # one paint
            hidden = viewer_pixel(window, 10, 10)  # a corner outside the message box
            assert hidden == (36, 40, 48)  # the curtain: not even the last picture shows
            assert not viewer.capturing and "keyboard" in window.rights_label.text()
            QTest.keyClick(viewer, Qt.Key.Key_X)  # nothing may reach the PC now
            await agent.end_hand_back()
            await until(
                lambda: window.session is not None and window.session.phase is Phase.CONTROLLING
            )
            assert not any(k.key == "x" for k in agent.of(KeyEvent))

            await agent.send(Notice(code=NoticeCode.SECURE_DESKTOP, text="UAC prompt"))
            await until(lambda: "must answer a prompt" in (window.viewer.overlay_text() or ""))
            centre = viewer.image_rect().center().toPoint()
            shown = viewer.grab().toImage().pixelColor(centre)
            assert shown != QColor(*QUADRANTS["top_left"][::-1])  # the overlay covers the picture

            window.end_action.trigger()
            ended: SessionEnded = await agent.ended()
            assert (ended.by, ended.reason) == (Party.CONSOLE, EndReason.CONSULTANT_ENDED)
            await until(lambda: (window.viewer.overlay_text() or "").startswith("Session ended"))
            assert not window.end_action.isEnabled()

        # the ticket's history shows the consent receipts
        window.tickets.list.select(window.session.ticket.id if window.session else "")
        QTest.mouseClick(window.tickets.list.history_button, Qt.MouseButton.LeftButton)
        history = window.tickets.history.table
        await until(lambda: history.rowCount() > 0, what="history")
        kinds = [history.item(r, 1).text() for r in range(history.rowCount())]
        assert any("GRANTED" in k.upper() for k in kinds), kinds

    try:
        qloop.run(scenario())
    finally:
        close_window(qloop, window)


def test_denied_session_shows_why(qloop: QtLoop, relay: RelayProcess, tmp_path: Path) -> None:
    window = make_window(tmp_path)

    async def scenario() -> None:
        await log_in(window, relay)
        fill_form(window.tickets.form, "Ewa Zielińska", "600 200 300", "VPN się nie łączy")
        QTest.mouseClick(window.tickets.form.register_and_start, Qt.MouseButton.LeftButton)
        await until(lambda: window.code_panel.code_label.text()[:1].isdigit())
        code = parse_code(window.code_panel.code_label.text())
        async with ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, code) as agent:
            await agent.consent_prompt()
            await agent.deny(DenyReason.USER_DENIED)
            await until(lambda: window.session is not None and window.session.phase is Phase.ENDED)
        overlay = window.viewer.overlay_text() or ""
        assert overlay.startswith("Denied: the user did not allow the session")
        assert "did not allow" in window.code_panel.status.text()

    try:
        qloop.run(scenario())
    finally:
        close_window(qloop, window)


def test_expired_login_keeps_the_half_filled_ticket_form(
    qloop: QtLoop, relay: RelayProcess, tmp_path: Path
) -> None:
    window = make_window(tmp_path)

    async def scenario() -> None:
        await log_in(window, relay)
        assert window.client is not None
        await window.client.logout()  # the relay forgets the token, as when it expires
        window.client.api.token = "expired-token"
        form = window.tickets.form
        fill_form(form, "Piotr Wiśniewski", "+48 501 501 501", "Nie działa Excel")
        QTest.mouseClick(form.register, Qt.MouseButton.LeftButton)
        await until(lambda: window.pages.currentWidget() is window.login, what="login page")
        assert window.login.message.text()
        assert form.caller_name.text() == "Piotr Wiśniewski"  # nothing typed is lost
        await log_in(window, relay)
        assert window.pages.currentWidget() is window.splitter
        assert form.problem.toPlainText() == "Nie działa Excel"
        QTest.mouseClick(form.register, Qt.MouseButton.LeftButton)
        await until(
            lambda: any(t.caller_name == "Piotr Wiśniewski" for t in window.tickets.list.tickets),
            what="the new ticket in the list",
        )
        assert form.caller_name.text() == ""

    try:
        qloop.run(scenario())
    finally:
        close_window(qloop, window)


def console_bytes() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, str(Path(console.__file__).parent / "*"))]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_long_view_paints_thousands_of_frames_without_growing(
    qloop: QtLoop, relay: RelayProcess, tmp_path: Path
) -> None:
    window = make_window(tmp_path)
    total, window_size, measure_from = 2000, 4, 400
    rng = np.random.default_rng(3)
    colours = [bytes((*rng.integers(0, 256, 3).tolist(), 255)) for _ in range(16)]

    async def scenario() -> tuple[int, int]:
        await log_in(window, relay)
        fill_form(window.tickets.form, "Anna Test", "600 000 000", "Długa sesja podglądu")
        QTest.mouseClick(window.tickets.form.register_and_start, Qt.MouseButton.LeftButton)
        await until(lambda: window.code_panel.code_label.text()[:1].isdigit())
        code = parse_code(window.code_panel.code_label.text())
        before = after = 0
        async with ScriptedAgent(relay.ws_agent_url, relay.pubkey, relay.org, code) as agent:
            await agent.consent_prompt()
            await agent.allow(Rights.VIEW)
            session = window.session
            assert session is not None
            await until(lambda: session.phase is Phase.VIEWING)
            for frame_id in range(1, total + 1):
                await agent.wait(lambda f=frame_id: agent.ack_count >= f - window_size)
                x = (frame_id * 32) % 288
                region = Region(
                    x=x,
                    y=(frame_id * 8) % 168,
                    width=32,
                    height=32,
                    encoding=Encoding.SOLID,
                    data=colours[frame_id % 16],
                )
                await agent.send(
                    Frame(
                        frame_id=frame_id,
                        captured_at_ns=0,
                        width=320,
                        height=200,
                        regions=(region,),
                    )
                )
                if frame_id == measure_from:
                    await until(lambda: session.stats.frames >= measure_from)
                    await asyncio.sleep(0.05)
                    gc.collect()
                    before = console_bytes()
            await until(lambda: session.stats.frames >= total, timeout=60)
            await asyncio.sleep(0.05)  # let the last paint happen
            gc.collect()
            after = console_bytes()
            last = colours[total % 16]
            x, y = (total * 32) % 288 + 16, (total * 8) % 168 + 16
            assert viewer_pixel(window, x, y) == (last[2], last[1], last[0])
            window.end_action.trigger()
            await agent.ended()
        return before, after

    tracemalloc.start()
    try:
        before, after = qloop.run(scenario(), timeout=120)
    finally:
        tracemalloc.stop()
        close_window(qloop, window)
    viewer = window.viewer
    assert viewer.images_built == 1  # the QImage wraps the one framebuffer, never rebuilt
    assert 0 < viewer.paints <= total + 50  # repaints coalesce; never more than one per frame
    assert after - before < 256 * 1024, (before, after)
