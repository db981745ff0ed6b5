"""The Tk windows the employee sees. All of them are created and used on the Tk thread.

Each window takes its texts from `Strings` and reports clicks through plain
callbacks; it never talks to the engine or the tray itself (`agent.ui.app`
does). Window titles are fixed per language, so tests and screen readers find
them (`xdotool search --name`).

The prompts that grant rights put the keyboard focus on the harmless choice
(*Deny*, *Keep view only*): a user typing elsewhere when the prompt pops up, who
hits Space or Enter, refuses rather than accepts. Closing a prompt with the
window's X counts as the harmless choice too.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from agent.frontend import ConsentAnswer
from agent.ui.strings import Strings
from protocol.attestation import Attestation
from protocol.codes import PhoneCode, parse_code
from protocol.errors import CodeError
from protocol.messages import Party, Rights

PAD = 10
WRAP = 460
"""Text width in pixels: long Polish sentences wrap instead of widening the window."""

KEEP_ON_TOP_MS = 1000
"""How often the bar and banner raise themselves: an override-redirect window is not
kept above newer windows by every window manager, and they must stay visible."""

BAR_COLOURS = {
    "view": "#1e7b3a",
    "control": "#b3261e",
    "hand_back": "#2f4fb0",
    "reconnecting": "#5f5f5f",
}
_BAR_TEXTS = {
    "view": "bar.viewing",
    "control": "bar.controlling",
    "hand_back": "bar.hand_back",
    "reconnecting": "bar.reconnecting",
}


def _window(root: tk.Misc, title: str, *, topmost: bool) -> tk.Toplevel:
    win = tk.Toplevel(root)
    win.title(title)
    win.resizable(False, False)
    if topmost:
        win.attributes("-topmost", True)
    return win


def _centre(win: tk.Toplevel, *, top: int | None = None) -> None:
    win.update_idletasks()
    width, height = win.winfo_reqwidth(), win.winfo_reqheight()
    x = (win.winfo_screenwidth() - width) // 2
    y = (win.winfo_screenheight() - height) // 3 if top is None else top
    win.geometry(f"+{max(x, 0)}+{max(y, 0)}")


def _bring_forward(win: tk.Toplevel) -> None:
    win.deiconify()
    win.lift()
    # focus_force: without a window manager (or when another app holds the focus)
    # the user's typing must still reach this window.
    win.focus_force()


class CodeDialog:
    """*Get help*: one field for the code, *Connect*, progress, and why it failed.

    `on_connect(code)` is called on *Connect* with a parsed code: that click is
    the one after which the agent may open a connection. `on_cancel()` is called
    on *Cancel* or the window's X (the app ends a connection in progress).
    """

    def __init__(
        self,
        root: tk.Misc,
        strings: Strings,
        on_connect: Callable[[PhoneCode], None],
        on_cancel: Callable[[], None],
    ) -> None:
        self.strings = strings
        self._on_connect = on_connect
        self._on_cancel = on_cancel
        self.win = win = _window(root, strings.get("code.title"), topmost=True)
        win.protocol("WM_DELETE_WINDOW", self._cancel)
        body = ttk.Frame(win, padding=PAD)
        body.grid(sticky="nsew")
        ttk.Label(body, text=strings.get("code.prompt"), wraplength=WRAP).grid(
            row=0, column=0, columnspan=2, sticky="w"
        )
        self.code = tk.StringVar()
        self.entry = ttk.Entry(body, textvariable=self.code, width=16, font=("TkFixedFont", 18))
        self.entry.grid(row=1, column=0, columnspan=2, pady=PAD, sticky="w")
        self.entry.bind("<Return>", lambda _e: self._connect())
        self.code.trace_add("write", lambda *_: self._typed())
        self.message = ttk.Label(body, text="", wraplength=WRAP, foreground="#b3261e")
        self.message.grid(row=2, column=0, columnspan=2, sticky="w")
        self.progress = ttk.Progressbar(body, mode="indeterminate", length=WRAP // 2)
        self.progress.grid(row=3, column=0, columnspan=2, pady=(PAD, 0), sticky="w")
        self.progress.grid_remove()
        buttons = ttk.Frame(body)
        buttons.grid(row=4, column=0, columnspan=2, pady=(PAD, 0), sticky="e")
        self.connect_button = ttk.Button(
            buttons, text=strings.get("code.connect"), command=self._connect
        )
        self.connect_button.grid(row=0, column=0, padx=(0, PAD))
        self.cancel_button = ttk.Button(
            buttons, text=strings.get("code.cancel"), command=self._cancel
        )
        self.cancel_button.grid(row=0, column=1)
        self.connecting = False
        _centre(win)
        self.focus()

    def focus(self) -> None:
        _bring_forward(self.win)
        self.entry.focus_set()

    def _typed(self) -> None:
        if not self.connecting:
            self.message.configure(text="")

    def _connect(self) -> None:
        if self.connecting:
            return
        try:
            code = parse_code(self.code.get())
        except CodeError as exc:
            self.message.configure(text=self.strings.code_error(exc), foreground="#b3261e")
            self.entry.focus_set()
            return
        self.connecting = True
        self.entry.state(["disabled"])
        self.connect_button.state(["disabled"])
        self.progress.grid()
        self.progress.start(15)
        self._on_connect(code)

    def _cancel(self) -> None:
        self._on_cancel()

    def show_progress(self, text: str) -> None:
        self.message.configure(text=text, foreground="")

    def show_error(self, text: str) -> None:
        """The attempt failed: say why, and let the user type a new code."""
        self.connecting = False
        self.progress.stop()
        self.progress.grid_remove()
        self.entry.state(["!disabled"])
        self.connect_button.state(["!disabled"])
        self.message.configure(text=text, foreground="#b3261e")
        self.entry.select_range(0, "end")
        self.focus()

    def close(self) -> None:
        self.progress.stop()
        self.win.destroy()


def _invoker(button: ttk.Button) -> Callable[[tk.Event[tk.Misc]], None]:
    def invoke(_event: tk.Event[tk.Misc]) -> None:
        button.invoke()

    return invoke


class _Prompt:
    """A prompt with a question, some lines of detail and buttons; the last is the default."""

    def __init__(
        self,
        root: tk.Misc,
        title: str,
        lines: list[tuple[str, str]],
        buttons: list[tuple[str, Callable[[], None]]],
    ) -> None:
        self.win = win = _window(root, title, topmost=True)
        body = ttk.Frame(win, padding=PAD)
        body.grid(sticky="nsew")
        for row, (style, text) in enumerate(lines):
            size, weight = (12, "bold") if style == "big" else (10, "normal")
            label = ttk.Label(
                body, text=text, wraplength=WRAP, font=("TkDefaultFont", size, weight)
            )
            label.grid(row=row, column=0, sticky="w", pady=(0, PAD // 2))
            if style == "timeout":
                self.timeout_label = label
        frame = ttk.Frame(body)
        frame.grid(row=len(lines), column=0, pady=(PAD, 0), sticky="e")
        self.buttons: dict[str, ttk.Button] = {}
        for column, (text, command) in enumerate(buttons):
            button = ttk.Button(frame, text=text, command=command)
            button.grid(row=0, column=column, padx=(PAD if column else 0, 0))
            # Enter on a focused button presses it (Space already does in ttk).
            button.bind("<Return>", _invoker(button))
            self.buttons[text] = button
        default = self.buttons[buttons[-1][0]]
        win.protocol("WM_DELETE_WINDOW", default.invoke)
        _centre(win)
        _bring_forward(win)
        default.focus_set()

    def close(self) -> None:
        if self.win.winfo_exists():
            self.win.destroy()


class ConsentPrompt(_Prompt):
    """Who asks (from the verified attestation), for which ticket and which rights.

    *Allow* appears only when control was asked for; *Deny* has the focus.
    `on_answer` is called once.
    """

    def __init__(
        self,
        root: tk.Misc,
        strings: Strings,
        attestation: Attestation,
        rights: Rights,
        timeout_seconds: float,
        on_answer: Callable[[ConsentAnswer], None],
    ) -> None:
        self._on_answer = on_answer
        self._answered = False
        self._left = int(timeout_seconds)
        self.strings = strings
        control = rights is Rights.CONTROL
        lines = [
            ("big", strings.get("consent.who", who=attestation.consultant, org=attestation.org)),
            (
                "normal",
                strings.get(
                    "consent.ticket", id=attestation.ticket_id, title=attestation.ticket_title
                ),
            ),
            ("big", strings.get("consent.rights.control" if control else "consent.rights.view")),
            ("timeout", strings.get("consent.timeout", seconds=self._left)),
        ]
        buttons: list[tuple[str, Callable[[], None]]] = []
        if control:
            buttons.append(
                (strings.get("consent.allow"), lambda: self._answer(ConsentAnswer.ALLOW_CONTROL))
            )
        buttons.append(
            (strings.get("consent.view_only"), lambda: self._answer(ConsentAnswer.VIEW_ONLY))
        )
        buttons.append((strings.get("consent.deny"), lambda: self._answer(ConsentAnswer.DENY)))
        super().__init__(root, strings.get("consent.title"), lines, buttons)
        self.win.after(1000, self._tick)

    def _tick(self) -> None:
        # Only a countdown for the user: the engine's own timer denies on time.
        if not self.win.winfo_exists():
            return
        self._left = max(self._left - 1, 0)
        self.timeout_label.configure(text=self.strings.get("consent.timeout", seconds=self._left))
        if self._left:
            self.win.after(1000, self._tick)

    def _answer(self, answer: ConsentAnswer) -> None:
        if not self._answered:
            self._answered = True
            self._on_answer(answer)


class EscalationPrompt(_Prompt):
    """The consultant, viewing, asks for control: *Allow control* or *Keep view only*."""

    def __init__(
        self,
        root: tk.Misc,
        strings: Strings,
        attestation: Attestation,
        on_answer: Callable[[bool], None],
    ) -> None:
        self._on_answer = on_answer
        self._answered = False
        super().__init__(
            root,
            strings.get("escalation.title"),
            [
                ("big", strings.get("escalation.text", who=attestation.consultant)),
                ("normal", strings.get("consent.rights.control")),
            ],
            [
                (strings.get("escalation.allow"), lambda: self._answer(True)),
                (strings.get("escalation.keep"), lambda: self._answer(False)),
            ],
        )

    def _answer(self, allowed: bool) -> None:
        if not self._answered:
            self._answered = True
            self._on_answer(allowed)


class _Strip:
    """An undecorated, always-on-top window: no minimise or close button to hide it.

    It raises itself every KEEP_ON_TOP_MS and is mapped again if something
    unmapped it; dragging its grip moves it.
    """

    def __init__(self, root: tk.Misc, title: str) -> None:
        self.win = win = tk.Toplevel(root)
        win.title(title)
        win.overrideredirect(True)
        win.attributes("-topmost", True)
        win.bind("<Unmap>", lambda _e: win.after_idle(self._show_again))
        self._drag_from: tuple[int, int] | None = None
        self._closed = False
        win.after(KEEP_ON_TOP_MS, self._keep_on_top)

    def _show_again(self) -> None:
        if not self._closed and self.win.winfo_exists():
            self.win.deiconify()
            self.win.lift()

    def _keep_on_top(self) -> None:
        if self._closed or not self.win.winfo_exists():
            return
        self.win.lift()
        self.win.after(KEEP_ON_TOP_MS, self._keep_on_top)

    def make_grip(self, widget: tk.Widget) -> None:
        widget.bind("<ButtonPress-1>", self._press)
        widget.bind("<B1-Motion>", self._move)

    def _press(self, event: tk.Event[tk.Misc]) -> None:
        self._drag_from = (event.x_root - self.win.winfo_x(), event.y_root - self.win.winfo_y())

    def _move(self, event: tk.Event[tk.Misc]) -> None:
        if self._drag_from is not None:
            dx, dy = self._drag_from
            self.win.geometry(f"+{event.x_root - dx}+{event.y_root - dy}")

    def close(self) -> None:
        self._closed = True
        if self.win.winfo_exists():
            self.win.destroy()


class SessionBar(_Strip):
    """Shown while a session runs: who is connected and what they may do, and two buttons."""

    def __init__(
        self,
        root: tk.Misc,
        strings: Strings,
        on_hand_back: Callable[[], None],
        on_end: Callable[[], None],
    ) -> None:
        super().__init__(root, strings.get("bar.title"))
        self.strings = strings
        self.frame = tk.Frame(self.win, padx=PAD, pady=PAD // 2, bg=BAR_COLOURS["view"])
        self.frame.pack(fill="both")
        colour = BAR_COLOURS["view"]
        self.grip = tk.Label(self.frame, text="⠿", fg="white", bg=colour, cursor="fleur")
        self.grip.pack(side="left", padx=(0, PAD))
        self.label = tk.Label(
            self.frame, text="", fg="white", bg=colour, font=("TkDefaultFont", 10, "bold")
        )
        self.label.pack(side="left", padx=(0, PAD))
        self.make_grip(self.grip)
        self.make_grip(self.label)
        self.hand_back_button = tk.Button(
            self.frame, text=strings.get("bar.give_keyboard"), command=on_hand_back
        )
        self.hand_back_button.pack(side="left", padx=(0, PAD // 2))
        self.end_button = tk.Button(self.frame, text=strings.get("bar.end"), command=on_end)
        self.end_button.pack(side="left")
        self.mode = ""

    def show(self, mode: str, who: str, org: str) -> None:
        """`mode` is "view", "control", "hand_back" or "reconnecting" (a dropped link
        the engine is restoring: nothing is shared, so nothing to take back either)."""
        colour = BAR_COLOURS[mode]
        for widget in (self.frame, self.grip, self.label):
            widget.configure(bg=colour)
        self.label.configure(text=self.strings.get(_BAR_TEXTS[mode], who=who, org=org))
        idle = mode in ("hand_back", "reconnecting")
        self.hand_back_button.configure(state="disabled" if idle else "normal")
        first = not self.mode
        self.mode = mode
        if first:
            _centre(self.win, top=0)
        self.win.deiconify()
        self.win.lift()


class HandBackBanner(_Strip):
    """ "You have the keyboard …" with *Done*, on top of everything."""

    def __init__(
        self, root: tk.Misc, strings: Strings, by: Party, on_done: Callable[[], None]
    ) -> None:
        super().__init__(root, strings.get("banner.title"))
        colour = BAR_COLOURS["hand_back"]
        frame = tk.Frame(self.win, padx=2 * PAD, pady=2 * PAD, bg=colour)
        frame.pack(fill="both")
        title = tk.Label(
            frame,
            text=strings.get("banner.text"),
            fg="white",
            bg=colour,
            wraplength=WRAP + 200,
            font=("TkDefaultFont", 14, "bold"),
        )
        title.pack(pady=(0, PAD))
        hint = "banner.by_console" if by is Party.CONSOLE else "banner.by_user"
        tk.Label(frame, text=strings.get(hint), fg="white", bg=colour, wraplength=WRAP + 200).pack(
            pady=(0, PAD)
        )
        self.done_button = tk.Button(
            frame, text=strings.get("banner.done"), command=on_done, font=("TkDefaultFont", 12)
        )
        self.done_button.pack()
        self.make_grip(title)
        _centre(self.win)
        self.win.lift()


class AboutDialog:
    """Version, relay and organisation; `on_close` runs when it is closed."""

    def __init__(
        self, root: tk.Misc, strings: Strings, text: str, on_close: Callable[[], None]
    ) -> None:
        self._on_close = on_close
        self.win = win = _window(root, strings.get("about.title"), topmost=True)
        win.protocol("WM_DELETE_WINDOW", self.close)
        body = ttk.Frame(win, padding=PAD)
        body.grid()
        ttk.Label(body, text=text, wraplength=WRAP, justify="left").grid(row=0, column=0)
        ok = ttk.Button(body, text=strings.get("about.ok"), command=self.close)
        ok.grid(row=1, column=0, pady=(PAD, 0), sticky="e")
        _centre(win)
        _bring_forward(win)
        ok.focus_set()

    def close(self) -> None:
        if self.win.winfo_exists():
            self.win.destroy()
            self._on_close()
