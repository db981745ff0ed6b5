"""A real Tk window to inject into: an Entry, a Button and colour blocks, in its own process.

    with TargetWindow.start(xdisplay.env) as target:
        target.geometry["button"]      # (x, y, width, height) on the root window
        target.focus_entry()
        target.entry_text()            # what arrived in the Entry
        target.clicks()                # how many times the Button was pressed

The window sits at the top-left corner; the blocks have known colours
(`BLOCK_COLOURS`) so a test can compare captured frames with the screen.
Protocol with the child: the child prints one JSON object per line on stdout
and reads one command per line on stdin (`entry`, `clicks`, `focus`, `animate`, `quit`);
`animate` makes the red block blink every 30 ms, so the screen keeps changing.

Run as a script (`python -m tests.support.targets`) it is the child.
"""

from __future__ import annotations

import json
import queue
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TITLE = "zgoda test target"
REPLY_TIMEOUT = 10.0
BLOCK_COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 210),
    "yellow": (240, 220, 40),
}


class TargetWindow:
    """The parent side: starts the child and asks it questions (bounded in time)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.geometry: dict[str, tuple[int, int, int, int]] = {}
        ready = self._read()
        assert ready.get("event") == "ready", ready
        self.geometry = {k: tuple(v) for k, v in ready["geometry"].items()}

    @classmethod
    def start(cls, env: dict[str, str]) -> TargetWindow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.targets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=env,
        )
        try:
            return cls(proc)
        except BaseException:
            cls._stop(proc)
            raise

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + REPLY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.1):
                    line = self.proc.stdout.readline()
                    if not line:
                        break
                    return dict(json.loads(line))
        raise RuntimeError(f"the target window did not answer (exit status {self.proc.poll()})")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def entry_text(self) -> str:
        return str(self.ask("entry")["entry"])

    def clicks(self) -> int:
        return int(self.ask("clicks")["clicks"])

    def focus_entry(self) -> None:
        self.ask("focus")

    def animate(self) -> None:
        self.ask("animate")

    def centre(self, name: str) -> tuple[int, int]:
        x, y, w, h = self.geometry[name]
        return x + w // 2, y + h // 2

    @staticmethod
    def _stop(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        self._stop(self.proc)

    def __enter__(self) -> TargetWindow:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------- the child


def _child() -> None:
    import tkinter as tk

    root = tk.Tk()
    root.title(TITLE)
    root.geometry("+0+0")
    clicks = 0

    def pressed() -> None:
        nonlocal clicks
        clicks += 1

    entry = tk.Entry(root, width=40, font=("DejaVu Sans", 14))
    entry.pack(padx=10, pady=10)
    button = tk.Button(root, text="Press me", command=pressed, width=20, height=2)
    button.pack(padx=10, pady=10)
    blocks = tk.Frame(root)
    blocks.pack(padx=10, pady=10)
    widgets: dict[str, tk.Widget] = {"entry": entry, "button": button}
    for name, (r, g, b) in BLOCK_COLOURS.items():
        block = tk.Frame(blocks, width=120, height=120, background=f"#{r:02x}{g:02x}{b:02x}")
        block.pack(side="left", padx=4)
        widgets[name] = block
    commands: queue.Queue[str] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")

    shades = ["#dc1e1e", "#1e1edc"]

    def blink() -> None:
        shades.reverse()
        widgets["red"].configure(background=shades[0])  # type: ignore[call-arg]
        root.after(30, blink)

    def say(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    def poll() -> None:
        while True:
            try:
                command = commands.get_nowait()
            except queue.Empty:
                break
            if command == "entry":
                say({"entry": entry.get()})
            elif command == "clicks":
                say({"clicks": clicks})
            elif command == "focus":
                root.focus_force()
                entry.focus_set()
                root.update()
                say({"focused": True})
            elif command == "animate":
                blink()
                say({"animating": True})
            elif command == "quit":
                root.destroy()
                return
        root.after(10, poll)

    def ready() -> None:
        root.update_idletasks()
        geometry = {
            name: [w.winfo_rootx(), w.winfo_rooty(), w.winfo_width(), w.winfo_height()]
            for name, w in widgets.items()
        }
        entry.focus_force()
        say({"event": "ready", "geometry": geometry})
        poll()

    threading.Thread(target=read_stdin, daemon=True).start()
    root.wait_visibility()
    root.after(50, ready)
    root.mainloop()


if __name__ == "__main__":
    _child()
