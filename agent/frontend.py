"""The engine's interface to whatever shows it to the PC's user.

A front end (the terminal of `zgoda agent connect`, the tray and dialogs of
`agent.ui`) implements `SessionUI`; the engine (`agent.runner.SessionRunner`)
calls it **on the engine's own asyncio thread**:

* questions are coroutines: `ask_consent`, `ask_escalation`, `show_hand_back`.
  The engine cancels them (CancelledError inside the coroutine) when the answer
  is no longer wanted: the prompt timed out (consent is then *denied*), the
  session ended, or a hand-back replaced an escalation prompt. A GUI front end
  shows its dialog on its own thread and awaits the answer, e.g. with
  `asyncio.wrap_future(concurrent.futures.Future)` or `loop.call_soon_threadsafe`;
  on cancellation it must close the dialog;
* notifications are plain calls that must return at once: `status`,
  `session_ended`.

The front end drives the engine through the runner's thread-safe methods:
`end()`, `hand_back()`, `withdraw_control()`, `set_own_window(name, visible)`.
Any window of the front end that is on screen while a consultant may have
control (an *End session?* confirmation, a settings window) must be announced
with `set_own_window(name, True)`: the engine stops injecting until it is closed
again, so the consultant can never click it for the user. The engine does this
itself for the three questions above.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from protocol.attestation import Attestation
from protocol.messages import EndReason, Party, RelayErrorCode, Rights, SessionRequest


class ConsentAnswer(Enum):
    """The user's answer to the first prompt."""

    ALLOW_CONTROL = "allow control"  # see the screen and use mouse and keyboard
    VIEW_ONLY = "view only"  # see the screen only
    DENY = "deny"


class Phase(Enum):
    """What the engine is doing, for a status line or the tray icon."""

    CONNECTING = "connecting to the relay"
    WAITING_FOR_CONSULTANT = "waiting for the consultant"
    VERIFYING = "checking the code"
    ASKING = "waiting for your answer"
    VIEWING = "the consultant sees your screen"
    CONTROLLING = "the consultant sees your screen and controls mouse and keyboard"
    ESCALATING = "the consultant asks for control"
    HAND_BACK = "your turn: the consultant sees nothing"
    RECONNECTING = "the link dropped: reconnecting; nothing is shared meanwhile"
    ENDING = "ending"


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """How a session ended, in words a user can read (`message`) and for the log.

    `relay_code` lets a front end word a refusal itself (unknown code, outside hours,
    rate limited...) instead of showing the relay's English sentence from `detail`.
    """

    by: Party
    reason: EndReason
    message: str
    detail: str = ""
    session_id: str | None = None
    relay_code: RelayErrorCode | None = None  # set when the relay refused (RelayError)

    @property
    def was_error(self) -> bool:
        return self.reason in (
            EndReason.PROTOCOL_ERROR,
            EndReason.WRONG_CODE,
            EndReason.RELAY_REFUSED,
            EndReason.PEER_LOST,
        )


class SessionUI(Protocol):
    async def ask_consent(
        self, request: SessionRequest, attestation: Attestation, rights: Rights
    ) -> ConsentAnswer:
        """Show who asks (the attestation checked) and for what; return the user's choice.

        `rights` is what the consultant asked for: offer *Allow control* only when
        it is CONTROL. Cancelled on timeout or end (close the prompt then).
        """
        ...

    async def ask_escalation(self, attestation: Attestation, rights: Rights) -> bool:
        """The consultant, now viewing, asks for control: True = allow. Cancellable."""
        ...

    async def show_hand_back(self, by: Party) -> None:
        """Show "your turn: type your password, then click Done"; return on *Done*.

        `by` says who started it (the consultant's request or the user's own choice).
        Cancelled only when the session ends.
        """
        ...

    def status(self, phase: Phase, detail: str = "") -> None:
        """The engine moved to `phase`; must return at once."""
        ...

    def session_ended(self, outcome: SessionOutcome) -> None:
        """The last call: capture and injection have already stopped."""
        ...
