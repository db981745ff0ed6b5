"""The console's main window: login, the ticket desk and the session (code, then viewer).

It owns the `ConsoleClient` and runs every call to the relay as an asyncio task
on the qasync loop. A refused token sends the consultant back to the login page
without clearing the ticket form; they log in again and carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from console.api import Ticket, fetch_tls_fingerprint, normalise_relay_url
from console.app.keys import RELEASE_HINT
from console.app.pages import CodePanel, LoginPage, TicketsPanel
from console.app.viewer import ViewerArea
from console.client import ConsoleClient
from console.errors import ConsoleError, NotLoggedIn, TlsPinMismatch
from console.session import (
    ConsentAsked,
    ConsoleSession,
    ControlDenied,
    LayoutChanged,
    NoticeReceived,
    Phase,
    PhaseChanged,
    SessionFinished,
    Update,
    describe_end,
)
from protocol.messages import Rights

log = logging.getLogger(__name__)

SECURE_DESKTOP_REASON = (
    "Ctrl+Alt+Del cannot be sent: Windows keeps it (and UAC prompts, the lock screen) on the "
    "secure desktop, which no user-mode program can drive. Ask the user to press it."
)


class MainWindow(QMainWindow):
    """Login → ticket desk; a session shows its code, then the live viewer."""

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings("zgoda", "console")
        self.client: ConsoleClient | None = None
        self.session: ConsoleSession | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.setWindowTitle("zgoda console")

        self.login = LoginPage()
        self.login.relay_url.setText(str(self.settings.value("relay_url", "") or ""))
        self.login.username.setText(str(self.settings.value("username", "") or ""))
        self.login.login_requested.connect(self._on_login)
        self.login.url_changed.connect(lambda url: self.spawn(self._show_fingerprint(url)))

        self.tickets = TicketsPanel()
        self.tickets.form.submitted.connect(self._on_ticket_submitted)
        self.tickets.list.refresh_requested.connect(
            lambda status: self.spawn(self._refresh_tickets(status))
        )
        self.tickets.list.start_requested.connect(self.start_session)
        self.tickets.list.close_requested.connect(lambda t, r: self.spawn(self._close_ticket(t, r)))
        self.tickets.list.history_requested.connect(lambda t: self.spawn(self._history(t)))

        self.code_panel = CodePanel()
        self.code_panel.cancel_requested.connect(self.end_session)
        self.viewer_area = ViewerArea()
        self.viewer = self.viewer_area.viewer
        self.idle = QLabel("Register a ticket or pick one from your list to start a session.")
        self.idle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.session_stack = QStackedWidget()
        for page in (self.idle, self.code_panel, self.viewer_area):
            self.session_stack.addWidget(page)

        self.splitter = QSplitter()
        self.splitter.addWidget(self.tickets)
        self.splitter.addWidget(self.session_stack)
        self.splitter.setStretchFactor(1, 3)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.login)
        self.pages.addWidget(self.splitter)
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)
        self.setCentralWidget(container)

        self._build_toolbar()
        self._build_status()
        self._restore_layout()
        self._update_actions()

    # ---------------------------------------------------------------- chrome

    def _build_toolbar(self) -> None:
        bar = QToolBar("Session")
        bar.setObjectName("session-toolbar")
        self.addToolBar(bar)
        self.rights_label = QLabel("  no session  ")
        bar.addWidget(self.rights_label)
        bar.addSeparator()

        def action(text: str, shortcut: str, slot: Callable[[], None], tip: str) -> QAction:
            act = QAction(text, self)
            act.setShortcut(QKeySequence(shortcut))
            act.setToolTip(f"{tip} ({shortcut})")
            act.triggered.connect(slot)
            bar.addAction(act)
            return act

        self.request_control_action = action(
            "Request control", "Ctrl+Shift+R", self.request_control, "ask the user for control"
        )
        self.view_only_action = action(
            "View only",
            "Ctrl+Shift+V",
            self.view_only,
            "give mouse and keyboard back, keep watching",
        )
        self.hand_back_action = action(
            "Hand keyboard to user",
            "Ctrl+Shift+K",
            self.hand_back,
            "the user types a password; the screen is hidden from you meanwhile",
        )
        self.cad_action = QAction("Ctrl+Alt+Del", self)
        self.cad_action.setEnabled(False)
        self.cad_action.setToolTip(SECURE_DESKTOP_REASON)
        bar.addAction(self.cad_action)
        bar.addSeparator()
        self.scale_action = action("1:1", "Ctrl+Shift+F", self.toggle_scale, "fit or 1:1")
        self.scale_action.setCheckable(True)
        self.monitors = QComboBox()
        self.monitors.setToolTip("the PC's monitor to show")
        self.monitors.activated.connect(self._select_monitor)
        bar.addWidget(self.monitors)
        bar.addSeparator()
        self.end_action = action("End session", "Ctrl+Shift+E", self.end_session, "end now")
        self.new_ticket_action = QAction("New ticket", self)
        self.new_ticket_action.setShortcut(QKeySequence("Ctrl+N"))
        self.new_ticket_action.triggered.connect(self._focus_form)
        self.addAction(self.new_ticket_action)

    def _build_status(self) -> None:
        self.phase_label = QLabel()
        self.stats_label = QLabel()
        self.hint_label = QLabel()
        status = self.statusBar()
        status.addWidget(self.phase_label, 1)
        status.addPermanentWidget(self.hint_label)
        status.addPermanentWidget(self.stats_label)
        self.stats_timer = QTimer(self)
        self.stats_timer.setInterval(500)
        self.stats_timer.timeout.connect(self._update_stats)
        self.stats_timer.start()

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        scaled = str(self.settings.value("scaled", "true")).lower() != "false"
        self.scale_action.setChecked(not scaled)
        self.viewer_area.set_scaled(scaled)

    def save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("scaled", "true" if self.viewer.scaled else "false")
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        if self.session is not None and self.session.live:
            self.session.end_soon("the consultant closed the console")
        super().closeEvent(event)

    async def shutdown(self) -> None:
        """End a live session and close the relay connections (the window is closing)."""
        session = self.session
        if session is not None:
            if session.live:
                session.end_soon("the consultant closed the console")
            await session.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.close()

    # ---------------------------------------------------------------- tasks

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a coroutine on the loop; its failure is shown, never lost."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, NotLoggedIn):
            self.show_login(str(exc) or "Your login expired: log in again.")
        elif isinstance(exc, ConsoleError):
            self.statusBar().showMessage(str(exc), 10000)
            self.tickets.list.show_error(str(exc))
        elif exc is not None:
            log.error("console task failed", exc_info=exc)
            self.statusBar().showMessage(f"Unexpected error: {exc}", 10000)

    # ---------------------------------------------------------------- login

    def show_login(self, message: str | None = None) -> None:
        self.login.set_busy(False)
        self.login.show_error(message)
        self.pages.setCurrentWidget(self.login)
        self.login.password.setFocus()

    def _pins(self) -> dict[str, str]:
        pins = self.settings.value("tls_pins")
        return dict(pins) if isinstance(pins, dict) else {}

    async def _show_fingerprint(self, url: str) -> str | None:
        if not url.strip():
            return None  # nothing typed yet: nothing to show
        try:
            relay = normalise_relay_url(url)
            fingerprint = await fetch_tls_fingerprint(relay)
        except ConsoleError as exc:
            self.login.fingerprint.setText(str(exc))
            return None
        self.login.show_fingerprint(fingerprint, self._pins().get(relay))
        return fingerprint

    def _on_login(self, url: str, user: str, password: str, totp: str, pin: bool) -> None:
        self.spawn(self.log_in(url, user, password, totp or None, pin))

    async def log_in(
        self, url: str, user: str, password: str, totp: str | None = None, pin: bool = False
    ) -> bool:
        """Log in; on success show the desk (keeping any half-filled ticket form)."""
        self.login.set_busy(True)
        try:
            relay = normalise_relay_url(url)
            fingerprint = await fetch_tls_fingerprint(relay)
            pinned = self._pins().get(relay)
            self.login.show_fingerprint(fingerprint, pinned)
            if fingerprint and pinned and fingerprint != pinned:
                raise TlsPinMismatch(pinned, fingerprint)
            tls_pin = pinned or (fingerprint if pin else None)
            client = ConsoleClient(relay, tls_pin=tls_pin)
            try:
                login = await client.login(user, password, totp)
            except BaseException:
                await client.close()
                raise
        except ConsoleError as exc:
            self.show_login(str(exc))
            return False
        if self.client is not None and self.client is not self._session_client():
            await self.client.close()
        self.client = client
        if tls_pin and fingerprint and not pinned:
            self.settings.setValue("tls_pins", {**self._pins(), relay: fingerprint})
        self.login.show_fingerprint(fingerprint, self._pins().get(relay))
        self.settings.setValue("relay_url", relay)
        self.settings.setValue("username", user)
        self.login.password.clear()
        self.login.totp.clear()
        self.login.set_busy(False)
        self.setWindowTitle(f"zgoda console — {login.display_name} @ {relay}")
        self.pages.setCurrentWidget(self.splitter)
        self.spawn(self._refresh_tickets("open"))
        return True

    def _session_client(self) -> ConsoleClient | None:
        return self.client if self.session is not None and self.session.live else None

    # ---------------------------------------------------------------- tickets

    def _client(self) -> ConsoleClient:
        if self.client is None:
            raise NotLoggedIn(401, "unauthorized", "Log in first.")
        return self.client

    def _focus_form(self) -> None:
        self.tickets.setCurrentWidget(self.tickets.form)
        self.tickets.form.caller_name.setFocus()

    def _on_ticket_submitted(self, fields: dict[str, str], start: bool) -> None:
        self.spawn(self.register_ticket(fields, start))

    async def register_ticket(self, fields: dict[str, str], start: bool) -> Ticket | None:
        form = self.tickets.form
        form.register.setEnabled(False)
        form.register_and_start.setEnabled(False)
        try:
            ticket = await self._client().create_ticket(**fields)
        except NotLoggedIn:
            raise  # back to login; the form keeps what was typed
        except ConsoleError as exc:
            form.show_error(str(exc))
            return None
        finally:
            form.register.setEnabled(True)
            form.register_and_start.setEnabled(True)
        form.clear()
        self.statusBar().showMessage(f"Ticket {ticket.id} registered", 5000)
        await self._refresh_tickets("open")
        self.tickets.list.select(ticket.id)
        if start:
            self.start_session(ticket)
        else:
            self.tickets.setCurrentWidget(self.tickets.list)
        return ticket

    async def _refresh_tickets(self, status: str = "open") -> None:
        tickets = await self._client().tickets("all" if status == "all" else "open")
        self.tickets.list.set_tickets(tickets)
        self.tickets.list.show_error(None)

    async def _close_ticket(self, ticket: Ticket, resolution: str) -> None:
        await self._client().close_ticket(ticket.id, resolution)
        self.statusBar().showMessage(f"Ticket {ticket.id} closed", 5000)
        await self._refresh_tickets("open")

    async def _history(self, ticket: Ticket) -> None:
        events = await self._client().history(ticket.id)
        self.tickets.history.set_history(ticket, events)
        self.tickets.setCurrentWidget(self.tickets.history)

    # ---------------------------------------------------------------- session

    def start_session(self, ticket: Ticket) -> None:
        if self.session is not None and self.session.live:
            self.statusBar().showMessage("End the current session first.", 5000)
            return
        self.spawn(self.open_session(ticket))

    async def open_session(self, ticket: Ticket, rights: Rights = Rights.CONTROL) -> None:
        client = self._client()
        session = client.new_session(ticket, rights)
        self.session = session
        self.viewer.attach(session)
        session.add_listener(self._on_update)
        self.code_panel.start(ticket)
        self.session_stack.setCurrentWidget(self.code_panel)
        self._update_actions()
        try:
            code = await session.open()
        except ConsoleError as exc:
            self.code_panel.finish(str(exc))
            self._update_actions()
            if isinstance(exc, NotLoggedIn):
                raise
            return
        except TimeoutError:
            self.code_panel.finish("The relay did not give a code in time: try again.")
            return
        self.code_panel.set_code(code, session.expires_at)

    def _on_update(self, update: Update) -> None:
        session = self.session
        if session is None:
            return
        if isinstance(update, PhaseChanged):
            phase = update.phase
            if phase in (Phase.PAIRING, Phase.WAITING_FOR_CONSENT):
                self.code_panel.set_status(phase.value[0].upper() + phase.value[1:] + "…")
            elif phase in (Phase.VIEWING, Phase.CONTROLLING, Phase.ESCALATING, Phase.HAND_BACK):
                self.code_panel.timer.stop()
                self.session_stack.setCurrentWidget(self.viewer_area)
                self.viewer.setFocus()
        elif isinstance(update, SessionFinished):
            text = describe_end(update.ended)
            self.code_panel.finish(text)
            self.statusBar().showMessage(text, 15000)
        elif isinstance(update, ConsentAsked):
            self.code_panel.set_status(
                "The user sees the prompt: waiting for them to allow "
                f"(unanswered, it closes in {update.timeout_seconds:.0f} s and denies)."
            )
        elif isinstance(update, ControlDenied):
            self.statusBar().showMessage("The user did not give control: view only.", 10000)
        elif isinstance(update, LayoutChanged):
            self.monitors.clear()
            for monitor in update.layout.monitors:
                name = monitor.name or f"Monitor {monitor.index + 1}"
                self.monitors.addItem(f"{name} ({monitor.width}×{monitor.height})", monitor.index)
            self.monitors.setCurrentIndex(max(0, self.monitors.findData(update.layout.selected)))
        elif isinstance(update, NoticeReceived):
            self.statusBar().showMessage(update.notice.text, 10000)
        self._update_actions()

    def _update_actions(self) -> None:
        session = self.session
        live = session is not None and session.live
        phase = session.phase if session is not None else None
        self.request_control_action.setEnabled(live and phase is Phase.VIEWING)
        self.view_only_action.setEnabled(live and phase is Phase.CONTROLLING)
        self.hand_back_action.setEnabled(
            live and phase in (Phase.VIEWING, Phase.CONTROLLING, Phase.ESCALATING)
        )
        self.end_action.setEnabled(live)
        self.monitors.setEnabled(
            live and phase in (Phase.VIEWING, Phase.CONTROLLING) and self.monitors.count() > 1
        )
        if session is None:
            self.rights_label.setText("  no session  ")
        elif not live:
            self.rights_label.setText("  ended  ")
        elif phase is Phase.CONTROLLING:
            self.rights_label.setText("  ● Control  ")
        elif phase in (Phase.VIEWING, Phase.ESCALATING):
            self.rights_label.setText("  ◐ View only  ")
        elif phase is Phase.HAND_BACK:
            self.rights_label.setText("  ⌨ User has the keyboard  ")
        elif phase is Phase.RECONNECTING:
            self.rights_label.setText("  ⟳ reconnecting…  ")
        else:
            self.rights_label.setText("  waiting  ")
        self.phase_label.setText(phase.value if phase is not None else "")
        self.hint_label.setText(RELEASE_HINT if self.viewer.capturing else "")

    def _update_stats(self) -> None:
        session = self.session
        if (
            session is None
            or not session.live
            or session.phase
            in (
                Phase.CONNECTING,
                Phase.WAITING_FOR_USER,
            )
        ):
            self.stats_label.setText("")
            return
        snap = session.stats.snapshot()
        rtt = f"{snap.rtt_ms:.1f} ms" if snap.rtt_ms is not None else "—"
        self.stats_label.setText(
            f"{snap.fps:.1f} fps · {snap.kbit_per_second:,.0f} kbit/s · RTT {rtt} · "
            f"{snap.codec or '—'}"
        )
        self.hint_label.setText(RELEASE_HINT if self.viewer.capturing else "")

    def _guard(self, action: Callable[[ConsoleSession], None]) -> None:
        if self.session is None:
            return
        try:
            action(self.session)
        except ConsoleError as exc:
            self.statusBar().showMessage(str(exc), 8000)
        self._update_actions()

    def request_control(self) -> None:
        self._guard(lambda s: s.request_control())

    def view_only(self) -> None:
        self._guard(lambda s: s.request_view_only())

    def hand_back(self) -> None:
        self.viewer.set_capturing(False)
        self._guard(lambda s: s.hand_back())

    def end_session(self) -> None:
        session = self.session
        if session is not None and session.live:
            session.end_soon("ended by the consultant")
            self.spawn(session.close())
        elif self.session_stack.currentWidget() is self.code_panel:
            self.session_stack.setCurrentWidget(self.idle)
        self._update_actions()

    def toggle_scale(self) -> None:
        self.viewer_area.set_scaled(not self.scale_action.isChecked())

    def _select_monitor(self, row: int) -> None:
        index = self.monitors.itemData(row)
        if isinstance(index, int):
            self._guard(lambda s: s.select_monitor(index))
