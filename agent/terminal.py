"""The terminal front end of `zgoda agent connect`: prompts on stdout, answers on stdin.

It implements `agent.frontend.SessionUI` with plain lines, so the engine is
usable (and tested as a real process) before the tray exists. Answers typed
before a question is asked are ignored, never taken as a *yes*: type-ahead must
not accept a session. Between questions a line is a command:

    end   end the session now            hand   take the keyboard back (password)
    view  take mouse and keyboard away   help   list the commands

Ctrl+C, SIGTERM and the end of stdin end the session too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import TextIO, TypeVar

from agent.config import AgentConfig
from agent.frontend import ConsentAnswer, Phase, SessionOutcome
from agent.runner import SessionRunner
from protocol.attestation import Attestation
from protocol.codes import PhoneCode
from protocol.messages import EndReason, Party, Rights, SessionRequest

T = TypeVar("T")

_COMMANDS = (
    "commands: 'end' ends the session, 'hand' takes the keyboard back (to type a password), "
    "'view' takes mouse and keyboard away from the consultant"
)


class TerminalUI:
    """`SessionUI` on a text stream; `feed_line()` is called by the stdin reader thread."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.runner: SessionRunner | None = None
        self._lock = threading.Lock()
        self._waiting: tuple[asyncio.AbstractEventLoop, asyncio.Future[str]] | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- from the stdin thread

    def feed_line(self, line: str) -> None:
        line = line.strip()
        with self._lock:
            waiting = self._waiting
        if waiting is not None:
            loop, future = waiting
            loop.call_soon_threadsafe(_resolve, future, line)
            return
        self._command(line.lower())

    def _command(self, line: str) -> None:
        runner = self.runner
        if not line or runner is None:
            return
        if line in ("end", "e", "quit", "q"):
            runner.end()
        elif line in ("hand", "h"):
            runner.hand_back()
        elif line in ("view", "v"):
            runner.withdraw_control()
        else:
            self.say(_COMMANDS)

    # -- SessionUI, on the engine thread

    async def _ask(self, prompt: str, choices: dict[str, T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.say(prompt)
                future: asyncio.Future[str] = loop.create_future()
                with self._lock:
                    self._waiting = (loop, future)
                answer = (await future).lower()
                if answer in choices:
                    return choices[answer]
        finally:
            with self._lock:
                self._waiting = None

    async def ask_consent(
        self, request: SessionRequest, attestation: Attestation, rights: Rights
    ) -> ConsentAnswer:
        what = (
            "see your screen and control your mouse and keyboard"
            if rights is Rights.CONTROL
            else "see your screen"
        )
        self.say(f"\n{attestation.consultant} ({attestation.org}) asks to {what}.")
        self.say(f"Ticket {attestation.ticket_id}: {attestation.ticket_title}")
        choices = {"v": ConsentAnswer.VIEW_ONLY, "view": ConsentAnswer.VIEW_ONLY}
        choices |= {"d": ConsentAnswer.DENY, "deny": ConsentAnswer.DENY}
        options = "[v] view only  [d] deny"
        if rights is Rights.CONTROL:
            choices |= {"a": ConsentAnswer.ALLOW_CONTROL, "allow": ConsentAnswer.ALLOW_CONTROL}
            options = "[a] allow control  " + options
        timeout = self.runner.consent_timeout if self.runner is not None else 0
        return await self._ask(f"{options}   (no answer in {timeout:.0f} s = deny) > ", choices)

    async def ask_escalation(self, attestation: Attestation, rights: Rights) -> bool:
        self.say(f"\n{attestation.consultant} now asks to control your mouse and keyboard.")
        yes_no = {"y": True, "yes": True, "n": False, "no": False}
        return await self._ask("[y] allow control  [n] keep view only > ", yes_no)

    async def show_hand_back(self, by: Party) -> None:
        who = "The consultant handed" if by is Party.CONSOLE else "You took"
        self.say(
            f"\n{who} the keyboard back: the consultant sees nothing now. "
            "Type your password, then type 'done'."
        )
        await self._ask("[done] give the screen back to the consultant > ", {"done": None})

    def status(self, phase: Phase, detail: str = "") -> None:
        self.say(f"* {phase.value}" + (f" ({detail})" if detail else ""))

    def session_ended(self, outcome: SessionOutcome) -> None:
        self.say(f"Session ended: {outcome.message}")


def _resolve(future: asyncio.Future[str], line: str) -> None:
    if not future.done():
        future.set_result(line)


def _read_stdin(ui: TerminalUI, runner: SessionRunner) -> None:
    for line in sys.stdin:
        ui.feed_line(line)
    runner.end()  # the terminal went away: nobody can answer or watch


def run_terminal_session(config: AgentConfig, code: PhoneCode) -> int:
    """Run one session with prompts on this terminal; 0 if it ended normally, else 1."""
    ui = TerminalUI()
    runner = SessionRunner(config, code, ui)
    ui.runner = runner
    previous = signal.signal(signal.SIGTERM, lambda *_: runner.end())
    try:
        runner.start()
        # A daemon thread: a blocked read on stdin must not keep the process alive.
        threading.Thread(target=_read_stdin, args=(ui, runner), daemon=True).start()
        try:
            while runner.wait(0.5) is None:
                pass
        except KeyboardInterrupt:
            runner.end()
            runner.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    outcome = runner.outcome
    normal = (EndReason.USER_ENDED, EndReason.CONSULTANT_ENDED)
    return 0 if outcome is not None and outcome.reason in normal else 1
