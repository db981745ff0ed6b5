"""The tray icon (pystray): one picture and tooltip per state, the menu, notifications.

pystray runs its own loop on the thread `Tray.start()` creates ("zgoda-tray").
Menu clicks arrive on that thread; the tray hands each one to the app's
mailbox (`on_menu`) and does nothing else there, so the Tk thread stays the one
place where the app's state changes. Setting the picture or tooltip from the Tk
thread is safe: every pystray backend serialises those calls itself (gtk
through its main loop, win32 through its window messages, xorg under a lock).
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import os
import queue
import sys
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw

from agent.ui.strings import Strings

log = logging.getLogger(__name__)

ICON_SIZE = 64
"""pystray scales the picture down to the tray's size; 64 px stays sharp at 200 % DPI."""

STOP_TIMEOUT = 5.0
"""pystray's documented bound for `stop()` to end `run()`."""

STOP_GRACE = 1.0
"""How long `stop()` lets pystray's loop end by itself before cutting its connection."""


class TrayState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    ASKING = "asking"
    VIEWING = "viewing"
    CONTROLLING = "controlling"
    HAND_BACK = "hand_back"
    ERROR = "error"


class MenuAction(enum.Enum):
    GET_HELP = "get_help"
    END_SESSION = "end_session"
    ABOUT = "about"
    QUIT = "quit"


# Colour of the disc and the mark drawn on it. Shapes differ as well as colours,
# so the states stay apart for colour-blind users and on monochrome taskbars.
_LOOKS: dict[TrayState, tuple[tuple[int, int, int], str]] = {
    TrayState.IDLE: ((46, 110, 180), "ring"),
    TrayState.CONNECTING: ((214, 160, 30), "dots"),
    TrayState.ASKING: ((230, 120, 20), "question"),
    TrayState.VIEWING: ((40, 150, 70), "eye"),
    TrayState.CONTROLLING: ((200, 40, 40), "eye_dot"),
    TrayState.HAND_BACK: ((60, 90, 200), "key"),
    TrayState.ERROR: ((120, 120, 120), "cross"),
}


def draw_icon(state: TrayState) -> Image.Image:
    """The tray picture of `state` (RGBA, ICON_SIZE square)."""
    colour, mark = _LOOKS[state]
    size = ICON_SIZE
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    d.ellipse((2, 2, size - 3, size - 3), fill=(*colour, 255))
    white = (255, 255, 255, 255)
    c = size // 2
    if mark == "ring":
        d.ellipse((c - 14, c - 14, c + 14, c + 14), outline=white, width=6)
    elif mark == "dots":
        for dx in (-16, 0, 16):
            d.ellipse((c + dx - 5, c - 5, c + dx + 5, c + 5), fill=white)
    elif mark == "question":
        d.arc((c - 12, c - 20, c + 12, c + 4), 180, 90, fill=white, width=6)
        d.line((c, c + 2, c, c + 8), fill=white, width=6)
        d.ellipse((c - 4, c + 14, c + 4, c + 22), fill=white)
    elif mark in ("eye", "eye_dot"):
        d.ellipse((c - 22, c - 12, c + 22, c + 12), outline=white, width=5)
        d.ellipse((c - 7, c - 7, c + 7, c + 7), fill=white)
        if mark == "eye_dot":  # control: a pointer triangle in the corner
            d.polygon(((c + 8, c + 8), (c + 26, c + 16), (c + 14, c + 26)), fill=white)
    elif mark == "key":
        d.ellipse((c - 22, c - 10, c - 2, c + 10), outline=white, width=5)
        d.line((c - 2, c, c + 22, c), fill=white, width=6)
        d.line((c + 16, c, c + 16, c + 10), fill=white, width=5)
    else:  # cross
        d.line((c - 14, c - 14, c + 14, c + 14), fill=white, width=7)
        d.line((c - 14, c + 14, c + 14, c - 14), fill=white, width=7)
    return image


_ASCII_FOR = str.maketrans({"ł": "l", "Ł": "L", "…": "...", "–": "-", "—": "-"})


def latin1(text: str) -> str:
    """`text` without what Latin-1 lacks: Polish diacritics dropped (ą → a, ł → l)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOR))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.encode("latin-1", "replace").decode("latin-1")


def load_pystray() -> Any:
    """pystray with the best backend here: on Linux gtk when PyGObject and GTK 3 exist
    (a real menu, notifications), else xorg (icon only). pystray's own choice tries
    appindicator first and fails with ValueError when `gi` exists without it.

    Raises:
        ImportError: no display, or pystray cannot load any backend.
    """
    if sys.platform.startswith("linux") and "PYSTRAY_BACKEND" not in os.environ:
        os.environ["PYSTRAY_BACKEND"] = "gtk" if _gtk_available() else "xorg"
    import pystray

    return pystray


def _gtk_available() -> bool:
    try:
        gi = importlib.import_module("gi")  # PyGObject: optional, often the distro's
        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        return False
    return True


class Tray:
    """The pystray icon of the app.

    Threads: pystray's loop runs on "zgoda-tray"; every call into the icon (picture,
    tooltip, notification, stop) runs on "zgoda-tray-calls", fed by a queue. The
    Tk thread therefore never waits on pystray: its xorg backend hands each call to
    its loop over the same Xlib connection the loop reads, and python-xlib can
    deadlock there (seen here: the loop waiting for a reply in get_geometry while
    the caller waits for the loop). Both threads are daemons so a stuck tray
    backend cannot keep the process from exiting; a clean stop joins them.

    `on_menu(action)` is called on the tray thread for each menu click; it must
    only hand the action over (the app posts it to its mailbox).
    `in_session()` decides whether *End session* is enabled; it only reads a flag.
    """

    def __init__(
        self,
        strings: Strings,
        on_menu: Callable[[MenuAction], None],
        in_session: Callable[[], bool],
        *,
        backend: Any = None,
    ) -> None:
        self.strings = strings
        self._on_menu = on_menu
        self._in_session = in_session
        self._images = {state: draw_icon(state) for state in TrayState}
        self.state = TrayState.IDLE
        self.tooltip = strings.get("tray.idle")
        self.notifications: list[str] = []  # what was shown, newest last
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._started = threading.Event()
        # The setup callback runs on a thread of pystray's; it and the worker must
        # not call into the icon at the same time.
        self._lock = threading.Lock()
        if backend is None:
            backend = load_pystray()  # needs a display: imported only when a tray is made
        # pystray's xorg backend (Linux without GTK) reads and writes one Xlib
        # connection from its loop and from every caller, and python-xlib corrupts
        # its reads or deadlocks under that (seen here: "NoneType has no len()" in
        # the loop, a caller stuck waiting). There the icon keeps its idle picture;
        # the windows carry the session's state. gtk and win32 are thread-safe.
        self.live_updates = getattr(backend.Icon, "__module__", "") != "pystray._xorg"
        # xorg writes the tooltip as WM_NAME in Latin-1: Polish letters would raise.
        title = self.tooltip if self.live_updates else latin1(self.tooltip)
        item, menu = backend.MenuItem, backend.Menu
        self.icon = backend.Icon(
            "zgoda",
            self._images[TrayState.IDLE],
            title,
            menu=menu(
                item(
                    strings.get("menu.get_help"),
                    self._action(MenuAction.GET_HELP),
                    default=True,  # a left click on the icon
                    enabled=lambda _item: not self._in_session(),
                ),
                item(
                    strings.get("menu.end_session"),
                    self._action(MenuAction.END_SESSION),
                    enabled=lambda _item: self._in_session(),
                ),
                item(strings.get("menu.about"), self._action(MenuAction.ABOUT)),
                menu.SEPARATOR,
                item(strings.get("menu.quit"), self._action(MenuAction.QUIT)),
            ),
        )

    def _action(self, action: MenuAction) -> Callable[[], None]:
        def clicked() -> None:
            self._on_menu(action)

        return clicked

    def start(self) -> None:
        """Run the icon on "zgoda-tray" and its calls on "zgoda-tray-calls"."""
        self._thread = threading.Thread(target=self._run, name="zgoda-tray", daemon=True)
        self._thread.start()
        self._started.wait(STOP_TIMEOUT)
        self._worker = threading.Thread(target=self._work, name="zgoda-tray-calls", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        def setup(icon: Any) -> None:
            try:
                with self._lock:
                    icon.visible = True
            finally:
                self._started.set()

        try:
            self.icon.run(setup=setup)
        except Exception:
            # No tray host (a bare X server, a broken shell): the dialogs still work,
            # and the second-instance knock still opens Get help.
            log.exception("the tray icon could not be shown")
        finally:
            self._started.set()

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                with self._lock:
                    call()
            except Exception:
                # No tray host: nothing to update; the windows carry the same news.
                log.info("tray update failed", exc_info=True)

    def show(self, state: TrayState, tooltip: str) -> None:
        """Change picture and tooltip and refresh the menu's state; returns at once."""
        if (state, tooltip) == (self.state, self.tooltip):
            return
        self.state, self.tooltip = state, tooltip
        image = self._images[state]

        def apply() -> None:
            self.icon.icon = image
            self.icon.title = tooltip[:127]  # Windows limits tooltips to 127 characters
            self.icon.update_menu()

        if self.live_updates:
            self._calls.put(apply)

    def notify(self, message: str) -> None:
        """A desktop notification where the backend has them; returns at once."""
        self.notifications.append(message)
        if self.live_updates and getattr(self.icon, "HAS_NOTIFICATION", False):
            self._calls.put(lambda: self.icon.notify(message, self.strings.get("app.name")))

    def stop(self) -> None:
        """End pystray's loop and join both threads (bounded)."""
        if self._worker is not None:
            self._calls.put(self.icon.stop)
            self._calls.put(None)
            self._worker.join(STOP_TIMEOUT)
            if self._worker.is_alive():
                log.warning("the tray's calls did not finish within %.0f s", STOP_TIMEOUT)
        if self._thread is not None:
            self._thread.join(STOP_GRACE)
            if self._thread.is_alive():
                # Seen with the xorg backend docked in a tray host: the window is
                # destroyed but its loop never sees the DestroyNotify and blocks in
                # next_event(). Closing its display connection ends that read, and
                # pystray's loop returns (it logs the error).
                display = getattr(self.icon, "_display", None)
                if display is not None:
                    with contextlib.suppress(Exception):
                        display.close()
                    # Or pystray's __del__ would try to stop it again over the closed
                    # connection, raising in the garbage collector.
                    self.icon._running = False
                self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                log.warning("the tray thread did not stop within %.0f s", STOP_TIMEOUT)
