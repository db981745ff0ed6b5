"""The console's pages: login, tickets (form, list, history) and the code display.

Pages only show and collect; they emit signals and the main window does the
asynchronous work with the client library, so a page never blocks the loop.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.api import Ticket, format_fingerprint
from protocol.codes import PhoneCode

ERROR_STYLE = "color: #c0392b;"
MIN_PROBLEM_LENGTH = 5
"""A problem description shorter than this cannot tell the next consultant anything."""
_PHONE = re.compile(r"^\+?[0-9 ()/.\-]{6,32}$")


def _error_label() -> QLabel:
    label = QLabel()
    label.setStyleSheet(ERROR_STYLE)
    label.setWordWrap(True)
    label.hide()
    return label


def _show(label: QLabel, text: str | None) -> None:
    label.setText(text or "")
    label.setVisible(bool(text))


# --------------------------------------------------------------------- login


class LoginPage(QWidget):
    """Relay URL, user, password, TOTP; the relay's TLS identity shown and pinned."""

    login_requested = Signal(str, str, str, str, bool)  # url, user, password, totp, pin it
    url_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.relay_url = QLineEdit(placeholderText="https://relay.example.com:8443")
        self.username = QLineEdit(placeholderText="user name")
        self.password = QLineEdit(echoMode=QLineEdit.EchoMode.Password)
        self.totp = QLineEdit(placeholderText="6 digits, if your account has TOTP", maxLength=8)
        self.fingerprint = QLabel("—")
        self.fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint.setWordWrap(True)
        self.pin = QCheckBox("Trust and pin this certificate (compare it with your admin's)")
        self.message = _error_label()
        self.button = QPushButton("Log in")
        self.button.setDefault(True)
        self.button.clicked.connect(self._submit)
        for edit in (self.relay_url, self.username, self.password, self.totp):
            edit.returnPressed.connect(self._submit)
        self.relay_url.editingFinished.connect(lambda: self.url_changed.emit(self.url()))

        form = QFormLayout()
        form.addRow("Relay", self.relay_url)
        form.addRow("User", self.username)
        form.addRow("Password", self.password)
        form.addRow("TOTP code", self.totp)
        form.addRow("TLS certificate", self.fingerprint)
        form.addRow("", self.pin)
        box = QWidget()
        box.setMaximumWidth(560)
        inner = QVBoxLayout(box)
        title = QLabel("zgoda — consultant console")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        title.setFont(font)
        inner.addWidget(title)
        inner.addLayout(form)
        inner.addWidget(self.message)
        inner.addWidget(self.button, alignment=Qt.AlignmentFlag.AlignRight)
        outer = QHBoxLayout(self)
        outer.addStretch()
        outer.addWidget(box)
        outer.addStretch()

    def url(self) -> str:
        return self.relay_url.text().strip()

    def set_busy(self, busy: bool) -> None:
        self.button.setEnabled(not busy)
        self.button.setText("Logging in…" if busy else "Log in")

    def show_error(self, text: str | None) -> None:
        _show(self.message, text)

    def show_fingerprint(self, sha256_hex: str | None, pinned: str | None) -> None:
        """Show the relay's certificate and whether it matches the pinned one."""
        self.fingerprint.setStyleSheet("")
        if sha256_hex is None:
            self.fingerprint.setText("plain http: no TLS (development only)")
            self.pin.setEnabled(False)
            return
        text = format_fingerprint(bytes.fromhex(sha256_hex))
        if pinned is None:
            self.fingerprint.setText(f"sha256 {text}\nnot pinned yet")
            self.pin.setEnabled(True)
        elif pinned == sha256_hex:
            self.fingerprint.setText(f"sha256 {text}\npinned ✓")
            self.pin.setChecked(True)
            self.pin.setEnabled(False)
        else:
            self.fingerprint.setText(f"sha256 {text}\nDIFFERS from the pinned certificate!")
            self.fingerprint.setStyleSheet(ERROR_STYLE)
            self.pin.setEnabled(False)

    def _submit(self) -> None:
        if not self.url() or not self.username.text().strip() or not self.password.text():
            self.show_error("Fill in the relay, your user name and your password.")
            return
        self.show_error(None)
        self.login_requested.emit(
            self.url(),
            self.username.text().strip(),
            self.password.text(),
            self.totp.text().strip(),
            self.pin.isChecked() and self.pin.isEnabled(),
        )


# -------------------------------------------------------------------- tickets


def validate_ticket(caller_name: str, phone: str, problem: str) -> dict[str, str]:
    """Field → message for what is missing or malformed (empty when the form is fine)."""
    errors: dict[str, str] = {}
    if len(caller_name.strip()) < 2:
        errors["caller_name"] = "Who is calling? Type the caller's name."
    digits = sum(ch.isdigit() for ch in phone)
    if not phone.strip():
        errors["phone"] = "A phone number to call back is required."
    elif not _PHONE.match(phone.strip()) or digits < 6:
        errors["phone"] = "A phone number has digits, spaces, + - ( ) only, at least 6 digits."
    if len(problem.strip()) < MIN_PROBLEM_LENGTH:
        errors["problem"] = "Describe the problem in a few words."
    return errors


class TicketForm(QWidget):
    """A new ticket: the caller's details and the problem."""

    submitted = Signal(dict, bool)  # fields, start a session right away

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caller_name = QLineEdit(placeholderText="Jan Kowalski")
        self.company = QLineEdit(placeholderText="company or department")
        self.phone = QLineEdit(placeholderText="+48 600 100 200")
        self.problem = QPlainTextEdit(placeholderText="What does not work?")
        self.problem.setTabChangesFocus(True)
        self.errors = {name: _error_label() for name in ("caller_name", "phone", "problem")}
        self.message = _error_label()
        self.register = QPushButton("Register ticket")
        self.register_and_start = QPushButton("Register and start session")
        self.register.clicked.connect(lambda: self._submit(False))
        self.register_and_start.clicked.connect(lambda: self._submit(True))
        form = QFormLayout(self)
        form.addRow("Caller", self.caller_name)
        form.addRow("", self.errors["caller_name"])
        form.addRow("Company", self.company)
        form.addRow("Phone", self.phone)
        form.addRow("", self.errors["phone"])
        form.addRow("Problem", self.problem)
        form.addRow("", self.errors["problem"])
        form.addRow("", self.message)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.register)
        buttons.addWidget(self.register_and_start)
        form.addRow(buttons)

    def fields(self) -> dict[str, str]:
        return {
            "caller_name": self.caller_name.text().strip(),
            "company": self.company.text().strip(),
            "phone": self.phone.text().strip(),
            "problem": self.problem.toPlainText().strip(),
        }

    def validate(self) -> bool:
        f = self.fields()
        errors = validate_ticket(f["caller_name"], f["phone"], f["problem"])
        for name, label in self.errors.items():
            _show(label, errors.get(name))
        return not errors

    def show_error(self, text: str | None) -> None:
        _show(self.message, text)

    def clear(self) -> None:
        for edit in (self.caller_name, self.company, self.phone):
            edit.clear()
        self.problem.clear()
        self.show_error(None)

    def _submit(self, start: bool) -> None:
        if self.validate():
            self.show_error(None)
            self.submitted.emit(self.fields(), start)


def _when(value: Any) -> str:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")
    return str(value or "")


class TicketList(QWidget):
    """The consultant's tickets; start a session, close one, show its history."""

    refresh_requested = Signal(str)  # status
    start_requested = Signal(object)  # Ticket
    close_requested = Signal(object, str)  # Ticket, resolution
    history_requested = Signal(object)  # Ticket

    COLUMNS = ("Ticket", "Caller", "Company", "Problem", "Status", "Opened")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tickets: list[Ticket] = []
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.doubleClicked.connect(lambda _: self._emit_selected(self.start_requested))
        self.show_closed = QCheckBox("Show closed")
        self.show_closed.toggled.connect(lambda _: self.refresh())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.start_button = QPushButton("Start session")
        self.start_button.clicked.connect(lambda: self._emit_selected(self.start_requested))
        self.history_button = QPushButton("History")
        self.history_button.clicked.connect(lambda: self._emit_selected(self.history_requested))
        self.resolution = QLineEdit(placeholderText="resolution, to close the selected ticket")
        self.close_button = QPushButton("Close ticket")
        self.close_button.clicked.connect(self._close)
        self.message = _error_label()
        top = QHBoxLayout()
        for w in (self.refresh_button, self.show_closed):
            top.addWidget(w)
        top.addStretch()
        top.addWidget(self.history_button)
        top.addWidget(self.start_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.resolution)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(bottom)
        layout.addWidget(self.message)

    def refresh(self) -> None:
        self.refresh_requested.emit("all" if self.show_closed.isChecked() else "open")

    def set_tickets(self, tickets: list[Ticket]) -> None:
        selected = self.selected()
        self.tickets = list(tickets)
        self.table.setRowCount(len(self.tickets))
        for row, t in enumerate(self.tickets):
            values = (t.id, t.caller_name, t.company, t.problem, t.status, _when(t.created_at))
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(t.title)
                self.table.setItem(row, col, item)
            if selected is not None and t.id == selected.id:
                self.table.selectRow(row)

    def selected(self) -> Ticket | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if rows and rows[0].row() < len(self.tickets):
            return self.tickets[rows[0].row()]
        return None

    def select(self, ticket_id: str) -> None:
        for row, t in enumerate(self.tickets):
            if t.id == ticket_id:
                self.table.selectRow(row)

    def show_error(self, text: str | None) -> None:
        _show(self.message, text)

    def _emit_selected(self, signal: Any) -> None:
        ticket = self.selected()
        if ticket is None:
            self.show_error("Select a ticket first.")
            return
        self.show_error(None)
        signal.emit(ticket)

    def _close(self) -> None:
        ticket = self.selected()
        if ticket is None:
            self.show_error("Select the ticket to close.")
        elif not self.resolution.text().strip():
            self.show_error("Write the resolution before closing the ticket.")
        else:
            self.show_error(None)
            self.close_requested.emit(ticket, self.resolution.text().strip())
            self.resolution.clear()


class HistoryView(QWidget):
    """A ticket's audit: sessions and the user's consent receipts, oldest first."""

    COLUMNS = ("Time", "Event", "Detail")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a ticket and press History.")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.table)

    def set_history(self, ticket: Ticket, events: list[dict[str, Any]]) -> None:
        self.title.setText(f"{ticket.id} — {ticket.title}")
        self.table.setRowCount(len(events))
        for row, event in enumerate(events):
            when = next((event[k] for k in ("at", "time", "ts", "created_at") if k in event), "")
            kind = next((event[k] for k in ("kind", "event", "type") if k in event), "")
            skip = {"at", "time", "ts", "created_at", "kind", "event", "type"}
            detail = ", ".join(f"{k}: {v}" for k, v in event.items() if k not in skip and v)
            for col, value in enumerate((_when(when), str(kind), detail)):
                self.table.setItem(row, col, QTableWidgetItem(value))


class TicketsPanel(QTabWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = TicketForm()
        self.list = TicketList()
        self.history = HistoryView()
        self.addTab(self.form, "New ticket")
        self.addTab(self.list, "My tickets")
        self.addTab(self.history, "History")


# ----------------------------------------------------------------- the code


def spoken(code: PhoneCode) -> str:
    """The code grouped in threes for reading aloud: `482 913 775`."""
    return str(code).replace("-", " ")


class CodePanel(QWidget):
    """The phone code, large, with its expiry countdown and what happens now."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.expires_at: float | None = None
        self.ticket_label = QLabel()
        self.ticket_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ticket_label.setWordWrap(True)
        self.code_label = QLabel("…")
        self.code_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSize(48)
        font.setBold(True)
        self.code_label.setFont(font)
        self.countdown = QLabel()
        self.countdown.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status = QLabel("Connecting to the relay…")
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status.setWordWrap(True)
        self.copy_button = QPushButton("Copy code")
        self.copy_button.clicked.connect(self._copy)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self._code: PhoneCode | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.tick)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.addStretch()
        layout.addWidget(self.ticket_label)
        layout.addWidget(
            QLabel("Read this code to the caller:", alignment=Qt.AlignmentFlag.AlignCenter)
        )
        layout.addWidget(self.code_label)
        layout.addWidget(self.countdown)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        layout.addStretch()

    def start(self, ticket: Ticket) -> None:
        self._code, self.expires_at = None, None
        self.ticket_label.setText(f"Ticket {ticket.id}: {ticket.title}")
        self.code_label.setText("…")
        self.countdown.clear()
        self.status.setText("Connecting to the relay…")
        self.cancel_button.setText("Cancel")

    def set_code(self, code: PhoneCode, expires_at: float | None) -> None:
        self._code, self.expires_at = code, expires_at
        self.code_label.setText(spoken(code))
        self.status.setText("Waiting for the user to type the code…")
        self.timer.start()
        self.tick()  # stops the timer at once if the code has already expired

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def finish(self, text: str) -> None:
        self.timer.stop()
        self.countdown.clear()
        self.status.setText(text)
        self.cancel_button.setText("Close")

    def tick(self) -> None:
        if self.expires_at is None:
            return
        left = int(self.expires_at - time.time())
        if left <= 0:
            self.countdown.setText("This code has expired: start a new session.")
            self.timer.stop()
            return
        self.countdown.setText(f"expires in {left // 60}:{left % 60:02d}")

    def _copy(self) -> None:
        if self._code is not None:
            QGuiApplication.clipboard().setText(str(self._code))
