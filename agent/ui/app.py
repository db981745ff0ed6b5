"""The tray app: tray icon, Tk windows and the session engine, each on its own thread.

Threads and the one way between them:

* the **Tk thread** (the process's main thread) owns every window and all of the
  app's state. Anything another thread wants done is a callable put into
  `TrayApp.mailbox` (`post()`); Tk's `after` drains it every POLL_MS. Nothing
  else crosses into this thread.
* the **tray thread** ("zgoda-tray", pystray's loop) only posts menu clicks.
* the **engine thread** ("zgoda-session", one per session, `SessionRunner`)
  calls `EngineFront` (the `SessionUI`): status changes are posted; questions
  post a window and await a `concurrent.futures.Future` that the window's
  buttons complete. When the engine cancels a question (timeout, end) the
  future is cancelled, and its done-callback posts the window's closing.
* the Tk thread drives the engine only through the runner's thread-safe calls
  (`end`, `hand_back`, `set_own_window`) and the tray only through `Tray.show`
  and `Tray.notify`.

Shutdown (*Quit*, SIGTERM, Ctrl+C): end the session, wait (bounded) for the
engine's last call, stop the tray and join its thread, join the engine thread,
destroy Tk. No thread is left behind (a test checks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import tkinter as tk
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

from agent.config import AgentConfig
from agent.frontend import ConsentAnswer, Phase, SessionOutcome
from agent.platform import default_platform
from agent.platform.base import Platform
from agent.runner import SessionRunner
from agent.ui.desktop import (
    KNOCK_POLL_MS,
    Desktop,
    PosixDesktop,
    SecureDesktopGuard,
    SingleInstance,
)
from agent.ui.dialogs import (
    AboutDialog,
    CodeDialog,
    ConsentPrompt,
    EscalationPrompt,
    HandBackBanner,
    SessionBar,
)
from agent.ui.strings import Strings, describe_outcome
from agent.ui.tray import MenuAction, Tray, TrayState
from protocol.attestation import Attestation
from protocol.codes import PhoneCode
from protocol.limits import CONSENT_TIMEOUT_SECONDS
from protocol.messages import EndReason, Party, Rights, SessionRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_MS = 30
"""How often the Tk thread drains the mailbox: quick enough that a click feels
immediate, rare enough to cost nothing while idle."""

QUIT_GRACE = 5.0
"""Quit waits this long for the session's end to be sent before closing anyway."""

JOIN_TIMEOUT = 10.0
"""Bound on joining the engine thread at shutdown (its own close is bounded by 2 s)."""

MAILBOX_BATCH = 100
"""Callables run per poll at most, so a burst cannot freeze the windows."""

_CONNECTING_PHASES = {
    Phase.CONNECTING: "phase.connecting",
    Phase.WAITING_FOR_CONSULTANT: "phase.waiting",
    Phase.VERIFYING: "phase.verifying",
    Phase.ASKING: "phase.asking",
}
_SESSION_MODES = {
    Phase.VIEWING: ("view", TrayState.VIEWING, "tray.viewing"),
    Phase.ESCALATING: ("view", TrayState.ASKING, "tray.asking"),
    Phase.CONTROLLING: ("control", TrayState.CONTROLLING, "tray.controlling"),
    Phase.HAND_BACK: ("hand_back", TrayState.HAND_BACK, "tray.hand_back"),
    Phase.RECONNECTING: ("reconnecting", TrayState.CONNECTING, "tray.reconnecting"),
}


def _resolve(future: concurrent.futures.Future[T], value: T) -> None:
    # The engine may have cancelled the question a moment ago (timeout, end).
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


class EngineFront:
    """`agent.frontend.SessionUI` for one session; every method runs on the engine thread."""

    def __init__(self, app: TrayApp) -> None:
        self.app = app
        self.runner: SessionRunner | None = None

    async def _answer(self, show: Callable[[concurrent.futures.Future[T]], None]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.app.post(lambda: show(future))
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # no-op once answered; closes the window otherwise

    async def ask_consent(
        self, request: SessionRequest, attestation: Attestation, rights: Rights
    ) -> ConsentAnswer:
        timeout = self.runner.consent_timeout if self.runner is not None else 0.0
        return await self._answer(
            lambda f: self.app.show_consent(self, attestation, rights, timeout, f)
        )

    async def ask_escalation(self, attestation: Attestation, rights: Rights) -> bool:
        return await self._answer(lambda f: self.app.show_escalation(self, attestation, f))

    async def show_hand_back(self, by: Party) -> None:
        await self._answer(lambda f: self.app.show_hand_back(self, by, f))

    def status(self, phase: Phase, detail: str = "") -> None:
        self.app.post(lambda: self.app.on_phase(self, phase))

    def session_ended(self, outcome: SessionOutcome) -> None:
        self.app.post(lambda: self.app.on_ended(self, outcome))


class TrayApp:
    """The employee's agent: build it on the thread that will run Tk, then `run()`.

    `tray_backend` is the pystray module to use (None: pystray's default for this
    system; tests pass it explicitly). `make_tray=False` runs without an icon.
    """

    def __init__(
        self,
        config: AgentConfig,
        strings: Strings,
        *,
        desktop: Desktop | None = None,
        instance: SingleInstance | None = None,
        platform: Platform | None = None,
        consent_timeout: float = CONSENT_TIMEOUT_SECONDS,
        make_tray: bool = True,
        tray_backend: Any = None,
    ) -> None:
        self.config = config
        self.strings = strings
        self.desktop = desktop if desktop is not None else PosixDesktop()
        self.instance = instance
        self._platform = platform
        self.consent_timeout = consent_timeout
        self.mailbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.root = tk.Tk(className="zgoda")
        self.root.withdraw()
        self.root.title(strings.get("app.name"))
        self.tray: Tray | None = None
        if make_tray:
            try:
                self.tray = Tray(
                    strings,
                    on_menu=lambda action: self.post(lambda: self.on_menu(action)),
                    in_session=lambda: self.in_session,
                    backend=tray_backend,
                )
            except Exception:
                # No usable tray (no backend loads, or one refuses the icon, as
                # python-xlib did with a Polish title): the dialogs, the session bar
                # and a second start's knock still work, so the user can get help.
                log.exception("no tray icon; running with the windows only")
        # Tk-thread state; `in_session` is also read (only read) by the tray thread.
        self.in_session = False
        self.front: EngineFront | None = None
        self.runner: SessionRunner | None = None
        self._old_runners: list[SessionRunner] = []
        self.attestation: Attestation | None = None
        self.code_dialog: CodeDialog | None = None
        self.consent: ConsentPrompt | None = None
        self.escalation: EscalationPrompt | None = None
        self.bar: SessionBar | None = None
        self.banner: HandBackBanner | None = None
        self.about: AboutDialog | None = None
        self.last_outcome: SessionOutcome | None = None
        self.quitting = False
        self._closed = False

    # ------------------------------------------------------------ the mailbox

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the Tk thread soon. Safe from any thread."""
        self.mailbox.put(fn)

    def _pump(self) -> None:
        for _ in range(MAILBOX_BATCH):
            try:
                fn = self.mailbox.get_nowait()
            except queue.Empty:
                break
            try:
                fn()
            except Exception:
                log.exception("a UI action failed")
        if not self._closed:
            self.root.after(POLL_MS, self._pump)

    def _answer_knocks(self) -> None:
        if self._closed or self.instance is None:
            return
        if self.instance.poll():
            self.get_help()  # a second start asks the first to show itself
        self.root.after(KNOCK_POLL_MS, self._answer_knocks)

    def run(self, *, open_help: bool = False) -> None:
        """Show the tray and run Tk until *Quit*; everything is stopped on return."""
        try:
            if self.tray is not None:
                self.tray.start()
            self._show_idle()
            if open_help:
                self.get_help()
            self.root.after(0, self._pump)
            self.root.after(0, self._answer_knocks)
            self.root.mainloop()
        finally:
            self._close()

    # ------------------------------------------------------------ tray menu

    def on_menu(self, action: MenuAction) -> None:
        if action is MenuAction.GET_HELP:
            self.get_help()
        elif action is MenuAction.END_SESSION:
            self.end_session()
        elif action is MenuAction.ABOUT:
            self.show_about()
        elif action is MenuAction.QUIT:
            self.quit()

    def get_help(self) -> None:
        """Open the code dialog (or bring forward what is already open)."""
        if self.quitting:
            return
        if self.bar is not None:
            self.bar.show(self.bar.mode, *self._who())
            return
        if self.consent is not None:
            self.consent.win.lift()
            return
        if self.code_dialog is None:
            self.code_dialog = CodeDialog(
                self.root, self.strings, on_connect=self.connect, on_cancel=self.cancel_code
            )
        else:
            self.code_dialog.focus()

    def end_session(self) -> None:
        if self.runner is not None and not self.runner.finished:
            self.runner.end()

    def show_about(self) -> None:
        if self.about is not None:
            self.about.win.lift()
            return
        try:
            version = metadata.version("zgoda")
        except metadata.PackageNotFoundError:
            version = "?"
        text = self.strings.get(
            "about.text",
            version=version,
            relay=self.config.relay_url,
            org=self.config.org_name or self.strings.get("about.org_unset"),
        )
        runner = self.runner if self.in_session else None
        if runner is not None:  # the consultant must not click it for the user
            runner.set_own_window("about", True)

        def closed() -> None:
            self.about = None
            if runner is not None:
                runner.set_own_window("about", False)

        self.about = AboutDialog(self.root, self.strings, text, closed)

    def quit(self) -> None:
        """End any session first (bounded by QUIT_GRACE), then close everything."""
        if self.quitting:
            return
        self.quitting = True
        if self.runner is not None and not self.runner.finished:
            self.runner.end(EndReason.AGENT_SHUTDOWN)
            self.root.after(int(QUIT_GRACE * 1000), self._leave_mainloop)
        else:
            self._leave_mainloop()

    def _leave_mainloop(self) -> None:
        self.root.quit()

    # ------------------------------------------------------------ the code dialog

    def connect(self, code: PhoneCode) -> None:
        """The user's *Connect* click: the first moment the agent may open a connection."""
        if self.runner is not None and not self.runner.finished:
            return
        self.front = EngineFront(self)
        platform = self._platform if self._platform is not None else default_platform()
        guarded = SecureDesktopGuard(
            platform, self.desktop.secure_desktop_active, self.strings.get("secure_desktop")
        )
        self.runner = SessionRunner(
            self.config, code, self.front, platform=guarded, consent_timeout=self.consent_timeout
        )
        self.front.runner = self.runner
        self.attestation = None
        self._tray(TrayState.CONNECTING, self.strings.get("tray.connecting"))
        if self.code_dialog is not None:
            self.code_dialog.show_progress(self.strings.get("phase.connecting"))
        self.runner.start()

    def cancel_code(self) -> None:
        if self.runner is not None and not self.runner.finished and not self.in_session:
            self.runner.end()
        self._close_code_dialog()

    def _close_code_dialog(self) -> None:
        if self.code_dialog is not None:
            self.code_dialog.close()
            self.code_dialog = None

    # ------------------------------------------------------------ engine → Tk

    def _current(self, front: EngineFront) -> bool:
        return front is self.front and not self._closed

    def on_phase(self, front: EngineFront, phase: Phase) -> None:
        if not self._current(front):
            return
        if phase in _CONNECTING_PHASES:
            if self.code_dialog is not None:
                self.code_dialog.show_progress(self.strings.get(_CONNECTING_PHASES[phase]))
            state = TrayState.ASKING if phase is Phase.ASKING else TrayState.CONNECTING
            key = "tray.asking" if phase is Phase.ASKING else "tray.connecting"
            self._tray(state, self.strings.get(key))
            return
        if phase not in _SESSION_MODES:
            return  # ENDING: session_ended follows
        mode, state, tooltip = _SESSION_MODES[phase]
        who, org = self._who()
        if phase is Phase.RECONNECTING and self.bar is None:
            # Lost while the user was still being asked: no session to show yet.
            self._tray(state, self.strings.get(tooltip, who=who))
            return
        if self.bar is None:
            self.in_session = True
            self.bar = SessionBar(
                self.root, self.strings, on_hand_back=self._hand_back, on_end=self.end_session
            )
            if self.tray is not None:
                self.tray.notify(self.strings.get("notify.started", who=who, org=org))
        self.bar.show(mode, who, org)
        self._tray(state, self.strings.get(tooltip, who=who))

    def _who(self) -> tuple[str, str]:
        att = self.attestation
        return (att.consultant, att.org) if att is not None else ("", "")

    def _hand_back(self) -> None:
        if self.runner is not None:
            self.runner.hand_back()

    def show_consent(
        self,
        front: EngineFront,
        attestation: Attestation,
        rights: Rights,
        timeout: float,
        future: concurrent.futures.Future[ConsentAnswer],
    ) -> None:
        if not self._current(front) or future.done():
            return
        self.attestation = attestation
        self._close_code_dialog()  # its work is done: the code was right
        prompt = ConsentPrompt(
            self.root,
            self.strings,
            attestation,
            rights,
            timeout,
            on_answer=lambda answer: _resolve(future, answer),
        )
        self.consent = prompt

        def closed(_f: object) -> None:
            self.post(lambda: self._drop_consent(prompt))

        future.add_done_callback(closed)

    def _drop_consent(self, prompt: ConsentPrompt) -> None:
        prompt.close()
        if self.consent is prompt:
            self.consent = None

    def show_escalation(
        self,
        front: EngineFront,
        attestation: Attestation,
        future: concurrent.futures.Future[bool],
    ) -> None:
        if not self._current(front) or future.done():
            return
        prompt = EscalationPrompt(
            self.root, self.strings, attestation, on_answer=lambda ok: _resolve(future, ok)
        )
        self.escalation = prompt

        def closed(_f: object) -> None:
            self.post(lambda: self._drop_escalation(prompt))

        future.add_done_callback(closed)

    def _drop_escalation(self, prompt: EscalationPrompt) -> None:
        prompt.close()
        if self.escalation is prompt:
            self.escalation = None

    def show_hand_back(
        self, front: EngineFront, by: Party, future: concurrent.futures.Future[None]
    ) -> None:
        if not self._current(front) or future.done():
            return
        if self.banner is not None:
            self.banner.close()
        banner = HandBackBanner(self.root, self.strings, by, on_done=lambda: _resolve(future, None))
        self.banner = banner

        def closed(_f: object) -> None:
            self.post(lambda: self._drop_banner(banner))

        future.add_done_callback(closed)

    def _drop_banner(self, banner: HandBackBanner) -> None:
        banner.close()
        if self.banner is banner:
            self.banner = None

    def on_ended(self, front: EngineFront, outcome: SessionOutcome) -> None:
        if not self._current(front):
            return
        runner = self.runner
        # Ended runners are joined (at once: their thread is past its last call) and
        # dropped; this one's thread is finishing now and is joined later.
        self._old_runners = [r for r in self._old_runners if r.wait(0) is None]
        if runner is not None:
            self._old_runners.append(runner)
        self.runner = None
        self.front = None
        self.in_session = False
        self.last_outcome = outcome
        for window in (self.consent, self.escalation, self.banner, self.bar):
            if window is not None:
                window.close()
        self.consent = self.escalation = None
        self.banner = None
        self.bar = None
        message = describe_outcome(outcome, self.strings)
        if self.code_dialog is not None:
            self.code_dialog.show_error(message)  # a new code can be typed right there
        elif self.tray is not None:
            self.tray.notify(self.strings.get("notify.ended", message=message))
        if outcome.was_error:
            self._tray(TrayState.ERROR, self.strings.get("tray.error", message=message))
        else:
            self._show_idle()
        if self.quitting:
            self._leave_mainloop()

    # ------------------------------------------------------------ helpers

    def _show_idle(self) -> None:
        self._tray(TrayState.IDLE, self.strings.get("tray.idle"))

    def _tray(self, state: TrayState, tooltip: str) -> None:
        if self.tray is not None:
            self.tray.show(state, tooltip)

    def _close(self) -> None:
        """Stop everything this app started; safe after any failure in `run()`."""
        if self._closed:
            return
        self._closed = True
        runner = self.runner
        if runner is not None and not runner.finished:
            runner.end(EndReason.AGENT_SHUTDOWN)
        if self.tray is not None:
            self.tray.stop()
        for old in [*self._old_runners, *([runner] if runner is not None else [])]:
            if old.wait(JOIN_TIMEOUT) is None:
                log.warning("the session thread did not stop within %.0f s", JOIN_TIMEOUT)
        if self.instance is not None:
            self.instance.close()
        with contextlib.suppress(tk.TclError):
            self.root.destroy()


def stray_threads() -> list[str]:
    """Names of this app's threads still alive (for tests and the shutdown log)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("zgoda-") and t.is_alive() and t is not threading.current_thread()
    ]
