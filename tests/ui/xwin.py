"""Finding and clicking the tray app's windows the way a user would: xdotool and ImageMagick.

Tk gives every widget its own X window but names only top-level ones, so a
button is found structurally: `widgets(wid)` lists the mapped leaf windows of a
top-level in creation order (Tk creates a widget's window when the widget is
made, and these dialogs build their buttons last, left to right).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from Xlib import X
from Xlib import display as xdisplay_module
from Xlib.xobject.drawable import Window

WAIT = 15.0
POLL = 0.05


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


def xdotool(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["xdotool", *args], env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )
    return result.stdout


def find_window(env: dict[str, str], name: str, timeout: float = WAIT) -> int:
    """The id of a visible window whose title matches `name` (a regex); bounded wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = xdotool(env, "search", "--onlyvisible", "--name", name).split()
        if found:
            return int(found[-1])
        time.sleep(POLL)
    raise AssertionError(f"no visible window named {name!r}")


def window_gone(env: dict[str, str], name: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not xdotool(env, "search", "--onlyvisible", "--name", name).split():
            return
        time.sleep(POLL)
    raise AssertionError(f"window {name!r} is still visible")


def is_visible(env: dict[str, str], name: str) -> bool:
    return bool(xdotool(env, "search", "--onlyvisible", "--name", name).split())


def widgets(display_name: str, wid: int) -> list[Box]:
    """Mapped leaf windows under the top-level `wid`, depth first, with screen coordinates."""
    d = xdisplay_module.Display(display_name)
    try:
        root = d.screen().root
        top = d.create_resource_object("window", wid)
        boxes: list[Box] = []

        def walk(window: Window) -> None:
            children = window.query_tree().children
            attrs = window.get_attributes()
            if attrs.map_state != X.IsViewable:
                return
            if not children:
                geometry = window.get_geometry()
                origin = root.translate_coords(window, 0, 0)
                boxes.append(Box(origin.x, origin.y, geometry.width, geometry.height))
                return
            for child in children:
                walk(child)

        walk(top)
        return boxes
    finally:
        d.close()


def descendants(display_name: str, wid: int) -> list[Box]:
    """Every viewable window under `wid`, at any depth, with screen coordinates."""
    d = xdisplay_module.Display(display_name)
    try:
        root = d.screen().root
        boxes: list[Box] = []
        pending = list(d.create_resource_object("window", wid).query_tree().children)
        while pending and len(boxes) < 1000:
            window = pending.pop()
            if window.get_attributes().map_state != X.IsViewable:
                continue
            g = window.get_geometry()
            origin = root.translate_coords(window, 0, 0)
            boxes.append(Box(origin.x, origin.y, g.width, g.height))
            pending.extend(window.query_tree().children)
        return boxes
    finally:
        d.close()


def click_at(env: dict[str, str], x: int, y: int) -> None:
    # No --sync: xdotool waits forever for a move when the pointer is already there.
    xdotool(env, "mousemove", str(x), str(y), "click", "1")


def screenshot(env: dict[str, str], wid: int, path: Path) -> Path:
    """`import -window` the window into `path` (PNG)."""
    subprocess.run(["import", "-window", str(wid), str(path)], env=env, timeout=WAIT, check=True)
    return path


def visible_windows(env: dict[str, str]) -> set[int]:
    return {int(w) for w in xdotool(env, "search", "--onlyvisible", "--class", "").split()}


def geometry(display_name: str, wid: int) -> Box:
    d = xdisplay_module.Display(display_name)
    try:
        window = d.create_resource_object("window", wid)
        g = window.get_geometry()
        origin = d.screen().root.translate_coords(window, 0, 0)
        return Box(origin.x, origin.y, g.width, g.height)
    finally:
        d.close()


def wait_geometry(
    display_name: str, wid: int, ok: Callable[[Box], bool], timeout: float = WAIT
) -> Box:
    """The window's geometry once `ok` accepts it (the app handles X events on its own
    time, after xdotool has returned); the last one seen if it never does."""
    deadline = time.monotonic() + timeout
    box = geometry(display_name, wid)
    while not ok(box) and time.monotonic() < deadline:
        time.sleep(POLL)
        box = geometry(display_name, wid)
    return box


def tray_icon(env: dict[str, str], display_name: str, timeout: float = WAIT) -> Box:
    """The biggest window docked in trayer's panel: the app's status icon (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for panel in xdotool(env, "search", "--onlyvisible", "--name", "^panel$").split():
            whole = geometry(display_name, int(panel))
            boxes = [
                b
                for b in descendants(display_name, int(panel))
                if 8 < b.width < whole.width and b.height > 8
            ]
            if boxes:
                return max(boxes, key=lambda b: b.width * b.height)
        time.sleep(POLL)
    raise AssertionError("no icon in the tray")


def popup_menu(
    env: dict[str, str], display_name: str, before: set[int], timeout: float = WAIT
) -> Box:
    """The menu window that appeared since `before` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for wid in visible_windows(env) - before:
            box = geometry(display_name, wid)
            if box.height > 40:
                return box
        time.sleep(POLL)
    raise AssertionError("no menu opened")
