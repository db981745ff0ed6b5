"""A front end for tests: answers the engine's questions as the test sets them up.

Methods run on the engine thread; the test thread reads the records and sets the
answers. `consent=None` never answers (the prompt is left on screen), so the
engine's timeout decides. `done` is the user's *Done* click for a hand-back.
"""

from __future__ import annotations

import asyncio
import threading

from agent.frontend import ConsentAnswer, Phase, SessionOutcome
from protocol.attestation import Attestation
from protocol.messages import Party, Rights, SessionRequest

POLL = 0.01


class ScriptedUI:
    def __init__(
        self,
        consent: ConsentAnswer | None = ConsentAnswer.ALLOW_CONTROL,
        *,
        escalation: bool | None = True,
    ) -> None:
        self.consent = consent
        self.escalation = escalation
        self.release_consent = threading.Event()  # set: answer now (when consent is set)
        self.release_consent.set()
        self.done = threading.Event()
        self.consent_shown = threading.Event()
        self.consent_closed = threading.Event()
        self.hand_back_shown = threading.Event()
        self.hand_back_by: Party | None = None
        self.ended = threading.Event()
        self.outcome: SessionOutcome | None = None
        self.phases: list[Phase] = []
        self.attestation: Attestation | None = None

    async def ask_consent(
        self, request: SessionRequest, attestation: Attestation, rights: Rights
    ) -> ConsentAnswer:
        self.attestation = attestation
        self.consent_shown.set()
        try:
            while self.consent is None or not self.release_consent.is_set():
                await asyncio.sleep(POLL)
            return self.consent
        finally:
            self.consent_closed.set()

    async def ask_escalation(self, attestation: Attestation, rights: Rights) -> bool:
        while self.escalation is None:
            await asyncio.sleep(POLL)
        return self.escalation

    async def show_hand_back(self, by: Party) -> None:
        self.hand_back_by = by
        self.done.clear()
        self.hand_back_shown.set()
        while not self.done.is_set():
            await asyncio.sleep(POLL)
        self.hand_back_shown.clear()

    def status(self, phase: Phase, detail: str = "") -> None:
        self.phases.append(phase)

    def session_ended(self, outcome: SessionOutcome) -> None:
        self.outcome = outcome
        self.ended.set()
