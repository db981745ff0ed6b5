"""The remote screen: paints the session's framebuffer, captures input when control is granted.

The QImage wraps the framebuffer's numpy memory (BGRA = Format_RGB32 on
little-endian machines), so a frame costs one paint and no copy; it is rebuilt
only when the framebuffer is reallocated (the PC's resolution or monitor changed).
"""

from __future__ import annotations

import logging
from enum import Enum

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QScrollArea, QWidget

from console.app.keys import RELEASE_HINT, KeyTranslator, is_release_combo
from console.errors import ConsoleError
from console.session import (
    ConsoleSession,
    Phase,
    PhaseChanged,
    SessionFinished,
    Update,
    describe_end,
)
from protocol.messages import (
    CursorShape,
    EndReason,
    Message,
    MouseButton,
    PointerButton,
    PointerMove,
    Scroll,
)

log = logging.getLogger(__name__)

BUTTONS: dict[Qt.MouseButton, MouseButton] = {
    Qt.MouseButton.LeftButton: MouseButton.LEFT,
    Qt.MouseButton.MiddleButton: MouseButton.MIDDLE,
    Qt.MouseButton.RightButton: MouseButton.RIGHT,
    Qt.MouseButton.BackButton: MouseButton.BACK,
    Qt.MouseButton.ForwardButton: MouseButton.FORWARD,
}

WHEEL_NOTCH = 120
"""Qt's angleDelta for one notch of a classic mouse wheel (15 degrees in eighths)."""

OVERLAY_BACKGROUND = QColor(20, 24, 32, 215)
BANNER_BACKGROUND = QColor(180, 110, 0, 230)
DIMMED = QColor(12, 14, 18, 150)
HIDDEN_BACKGROUND = QColor(36, 40, 48)  # opaque: not even the last picture shows


class Cover(Enum):
    """How an overlay covers the remote picture."""

    BANNER = "banner"  # a strip at the top: the picture stays usable
    DIM = "dim"  # the picture is dimmed under a message: nothing to do in it now
    HIDE = "hide"  # the picture is hidden: the user's screen is not the consultant's to see


def overlay_for(session: ConsoleSession | None) -> tuple[str, Cover] | None:
    """The text drawn over the screen for the session's state, and how it covers it."""
    if session is None:
        return ("No session", Cover.DIM)
    phase = session.phase
    if phase is Phase.ENDED and session.ended is not None:
        ended = session.ended
        title = (
            "Denied: the user did not allow the session"
            if ended.reason is EndReason.DENIED
            else "Session ended"
        )
        return (f"{title}\n{describe_end(ended)}", Cover.DIM)
    if phase in (Phase.CONNECTING, Phase.WAITING_FOR_USER, Phase.PAIRING):
        return ("Waiting for the user to type the code", Cover.DIM)
    if phase is Phase.WAITING_FOR_CONSENT:
        return ("Waiting for the user to allow the session", Cover.DIM)
    if phase is Phase.RECONNECTING:
        return ("The link to the relay dropped: reconnecting…", Cover.BANNER)
    if session.peer_away:
        return ("The user's PC lost its connection: waiting for it to come back…", Cover.BANNER)
    if phase is Phase.HAND_BACK:
        return ("The user is typing a password: screen hidden", Cover.HIDE)
    if session.secure_desktop:
        return (
            "The user must answer a prompt on their screen\n"
            "(UAC, Ctrl+Alt+Del or the lock screen cannot be seen or controlled remotely)",
            Cover.DIM,
        )
    if session.framebuffer.curtain:
        return ("The user's screen is hidden", Cover.HIDE)
    if phase is Phase.ESCALATING:
        return ("Asking the user for control…", Cover.BANNER)
    if session.input_paused:
        return ("A zgoda window is on the user's screen: input paused", Cover.BANNER)
    if session.framebuffer.empty:
        return ("Waiting for the first picture", Cover.DIM)
    return None


class Viewer(QWidget):
    """Paints the remote screen scaled to fit or 1:1 and sends input when allowed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: ConsoleSession | None = None
        self.scaled = True
        self.keys = KeyTranslator()
        self.capturing = False  # the keyboard goes to the PC (click to capture)
        self.paints = 0
        self.images_built = 0
        self._image: QImage | None = None
        self._image_generation = -1
        self._cursor_shape: CursorShape | None = None
        self._cursor_image: QImage | None = None
        self._wheel = [0, 0]  # angle not yet sent as whole notches (x, y)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 200)

    # -- session

    def attach(self, session: ConsoleSession | None) -> None:
        if self.session is not None:
            self.session.remove_listener(self._on_update)
        self.session = session
        self._image, self._image_generation = None, -1
        self.capturing = False
        if session is not None:
            session.add_listener(self._on_update)
        self.update()

    def _on_update(self, update: Update) -> None:
        if isinstance(update, PhaseChanged | SessionFinished):
            if self.session is None or not self.session.can_control:
                self._release_keys()
                self.set_capturing(False)
            self._fit_size()
        self.update()  # frames, cursor, notices, layout and phases all repaint

    # -- geometry

    def set_scaled(self, scaled: bool) -> None:
        self.scaled = scaled
        self._fit_size()
        self.update()

    def _fit_size(self) -> None:
        fb = self.session.framebuffer if self.session else None
        if not self.scaled and fb is not None and not fb.empty:
            self.setFixedSize(fb.width, fb.height)
        else:
            self.setMinimumSize(320, 200)
            self.setMaximumSize(16777215, 16777215)

    def image_rect(self) -> QRectF:
        """Where the remote screen is drawn, in widget coordinates."""
        fb = self.session.framebuffer if self.session else None
        if fb is None or fb.empty:
            return QRectF()
        if not self.scaled:
            return QRectF(0, 0, fb.width, fb.height)
        scale = min(self.width() / fb.width, self.height() / fb.height)
        w, h = fb.width * scale, fb.height * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def to_remote(self, pos: QPointF | QPoint) -> tuple[int, int] | None:
        """Widget position → the PC's pixel, or None outside the picture."""
        fb = self.session.framebuffer if self.session else None
        rect = self.image_rect()
        if fb is None or rect.isEmpty():
            return None
        x = (pos.x() - rect.x()) * fb.width / rect.width()
        y = (pos.y() - rect.y()) * fb.height / rect.height()
        if not (0 <= x < fb.width and 0 <= y < fb.height):
            return None
        return int(x), int(y)

    def sizeHint(self) -> QSize:
        return QSize(1024, 640)

    # -- painting

    def _current_image(self) -> QImage | None:
        fb = self.session.framebuffer if self.session else None
        if fb is None or fb.empty:
            return None
        if self._image is None or self._image_generation != fb.allocations:
            # wraps the numpy memory: no copy per frame; rebuilt only after a reallocation
            self._image = QImage(
                fb.pixels.data, fb.width, fb.height, fb.width * 4, QImage.Format.Format_RGB32
            )
            self._image_generation = fb.allocations
            self.images_built += 1
            self._fit_size()
        return self._image

    def paintEvent(self, event: QPaintEvent) -> None:
        self.paints += 1
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor(12, 14, 18))
            image = self._current_image()
            target = self.image_rect()
            if image is not None:
                if self.scaled:
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                painter.drawImage(target, image)
                self._paint_cursor(painter, target)
            overlay = overlay_for(self.session)
            if overlay is not None:
                self._paint_overlay(painter, *overlay)
            if self.capturing:
                painter.setPen(QPen(QColor(60, 160, 255), 3))
                painter.drawRect(self.rect().adjusted(1, 1, -2, -2))
        finally:
            painter.end()

    def _paint_cursor(self, painter: QPainter, target: QRectF) -> None:
        session = self.session
        if session is None or session.cursor is None or not session.cursor.visible:
            return
        fb = session.framebuffer
        scale = target.width() / fb.width
        shape = session.cursor_shape
        x = target.x() + session.cursor.x * scale
        y = target.y() + session.cursor.y * scale
        if shape is None:
            painter.setPen(QPen(QColor(255, 255, 255), 1))
            painter.drawLine(QPointF(x - 6, y), QPointF(x + 6, y))
            painter.drawLine(QPointF(x, y - 6), QPointF(x, y + 6))
            return
        if shape is not self._cursor_shape:
            self._cursor_shape = shape
            self._cursor_image = QImage(
                shape.rgba,
                shape.width,
                shape.height,
                shape.width * 4,
                QImage.Format.Format_RGBA8888,
            ).copy()  # own the pixels: the message may be dropped
        assert self._cursor_image is not None
        painter.drawImage(
            QRectF(
                x - shape.hot_x * scale,
                y - shape.hot_y * scale,
                shape.width * scale,
                shape.height * scale,
            ),
            self._cursor_image,
        )

    def _paint_overlay(self, painter: QPainter, text: str, cover: Cover) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(11.0, font.pointSizeF() * 1.4))
        painter.setFont(font)
        if cover is Cover.BANNER:
            box = QRect(0, 0, self.width(), 44)
            painter.fillRect(box, BANNER_BACKGROUND)
        else:
            painter.fillRect(self.rect(), HIDDEN_BACKGROUND if cover is Cover.HIDE else DIMMED)
            box = self.rect().adjusted(40, 0, -40, 0)
            box.setHeight(min(160, self.height()))
            box.moveCenter(self.rect().center())
            painter.fillRect(box, OVERLAY_BACKGROUND)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def overlay_text(self) -> str | None:
        overlay = overlay_for(self.session)
        return overlay[0] if overlay else None

    # -- input

    def set_capturing(self, capturing: bool) -> None:
        """Send every key (Alt+Tab, Ctrl+Esc...) to the PC until Ctrl+Alt+Home."""
        capturing = capturing and self.session is not None and self.session.can_control
        if capturing == self.capturing:
            return
        self.capturing = capturing
        if capturing:
            self.setFocus(Qt.FocusReason.OtherFocusReason)
            self.grabKeyboard()
            self.setToolTip(RELEASE_HINT)
        else:
            self.releaseKeyboard()
            self._release_keys()
        self.update()

    def _send(self, message: Message) -> bool:
        session = self.session
        if session is None or not session.can_control:
            return False
        try:
            session.send_input(message)
        except ConsoleError as exc:  # a race with the user taking control back: drop it
            log.debug("input dropped: %s", exc)
            return False
        return True

    def _release_keys(self) -> None:
        for event in self.keys.release_all():
            self._send(event)

    def event(self, event: QEvent) -> bool:
        # while capturing, application shortcuts must not eat Ctrl+... meant for the PC
        if self.capturing and event.type() == QEvent.Type.ShortcutOverride:
            event.accept()
            return True
        return super().event(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        if self.capturing:
            return False  # Tab belongs to the PC
        return super().focusNextPrevChild(next)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._release_keys()
        self.set_capturing(False)
        super().focusOutEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self.session is None or not self.session.can_control:
            super().keyPressEvent(event)
            return
        if is_release_combo(event.key(), event.modifiers()):
            self.set_capturing(False)
            return
        for key_event in self.keys.press(
            event.key(), event.text(), event.modifiers(), event.isAutoRepeat()
        ):
            self._send(key_event)
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if self.session is None or not self.session.can_control:
            super().keyReleaseEvent(event)
            return
        if event.isAutoRepeat():
            return  # the PC repeats a held key itself
        for key_event in self.keys.release(event.key(), event.modifiers()):
            self._send(key_event)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        where = self.to_remote(event.position())
        if where is not None:
            self._send(PointerMove(x=where[0], y=where[1]))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if self.session is not None and self.session.can_control:
            self.set_capturing(True)
        self._button(event, down=True)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._button(event, down=False)

    def _button(self, event: QMouseEvent, *, down: bool) -> None:
        where = self.to_remote(event.position())
        button = BUTTONS.get(event.button())
        if where is not None and button is not None:
            self._send(PointerButton(button=button, down=down, x=where[0], y=where[1]))

    def wheelEvent(self, event: QWheelEvent) -> None:
        where = self.to_remote(event.position())
        if where is None:
            return
        # Qt counts eighths of a degree (120 = one notch of a classic wheel); the PC
        # scrolls in notches. Touchpads send small steps: they add up to notches.
        delta = event.angleDelta()
        self._wheel[0] += delta.x()
        self._wheel[1] += delta.y()
        dx, dy = (int(v / WHEEL_NOTCH) for v in self._wheel)
        if dx or dy:
            self._wheel[0] -= dx * WHEEL_NOTCH
            self._wheel[1] -= dy * WHEEL_NOTCH
            dx, dy = max(-120, min(120, dx)), max(-120, min(120, dy))
            self._send(Scroll(dx=dx, dy=dy, x=where[0], y=where[1]))
        event.accept()


class ViewerArea(QScrollArea):
    """The viewer in a scroll area: scaled to fit (no scrolling) or 1:1 with scroll bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = Viewer()
        self.setWidget(self.viewer)
        self.setWidgetResizable(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("QScrollArea { background: #0c0e12; border: none; }")

    def set_scaled(self, scaled: bool) -> None:
        self.setWidgetResizable(scaled)
        self.viewer.set_scaled(scaled)
