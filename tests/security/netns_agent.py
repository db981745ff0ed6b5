"""The agent engine as a process of its own, for a test that runs it in a network
namespace (`ip netns exec NAME python -m tests.security.netns_agent ...`).

    python -m tests.security.netns_agent RELAY_URL RELAY_KEY ORG CODE

It answers consent with "allow control" (tests.agent.scripted_ui) and reports on
stdout, one JSON object a line: {"phase": ...} for each status, {"ended": reason,
"message": ...} when the session ends, and {"finished": frames_sent} last. A line
"end" on stdin is the user's *End* click; EOF too. The display is $DISPLAY.

The agent's dead-link timers are shortened so that a pulled cable is noticed in ~3 s
and a test of the resume grace stays short: WebSocket keepalive ping every 1 s,
answered within 1 s, then 1 s for the closing handshake that cannot complete. In
production (`agent.transport`) these are 10 s + 10 s + websockets' default
close_timeout of 10 s: a silent drop is noticed after 20-30 s. Nothing else differs
from the shipped engine.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading

from websockets.asyncio.client import connect

import agent.transport
from agent.config import AgentConfig
from agent.frontend import ConsentAnswer, Phase, SessionOutcome
from agent.runner import SessionRunner
from protocol.codes import PhoneCode
from tests.agent.scripted_ui import ScriptedUI

KEEPALIVE = 1.0
LIFETIME = 300.0
"""Bounded: a session still running after this long is ended by the driver itself."""


def say(**record: object) -> None:
    print(json.dumps(record), flush=True)


class ReportingUI(ScriptedUI):
    """ScriptedUI that also tells the test what the user would see."""

    def status(self, phase: Phase, detail: str = "") -> None:
        super().status(phase, detail)
        say(phase=phase.name)

    def session_ended(self, outcome: SessionOutcome) -> None:
        say(ended=outcome.reason.name, message=outcome.message, by=outcome.by.name)
        super().session_ended(outcome)


def main(argv: list[str]) -> int:
    url, key, org, code = argv
    # the engine's own log on stderr (the test's output): what a failing run did
    logging.basicConfig(level=logging.INFO, format="agent %(asctime)s %(levelname)s %(message)s")
    agent.transport.KEEPALIVE_INTERVAL = KEEPALIVE  # read at each connect
    agent.transport.KEEPALIVE_TIMEOUT = KEEPALIVE
    # websockets' connect, as agent.transport imported it, with a short close_timeout
    agent.transport.connect = functools.partial(  # type: ignore[attr-defined,assignment]
        connect, close_timeout=KEEPALIVE
    )
    digits = code.replace("-", "")
    ui = ReportingUI(ConsentAnswer.ALLOW_CONTROL)
    runner = SessionRunner(
        AgentConfig(relay_url=url, relay_key=key, org_name=org),
        PhoneCode(nameplate=digits[:3], secret=digits[3:]),
        ui,
    )
    runner.start()

    def user() -> None:
        for line in sys.stdin:
            if line.strip() == "end":
                break
        runner.end()  # the user's End click, or the test went away

    threading.Thread(target=user, name="netns-agent-user", daemon=True).start()
    if runner.wait(LIFETIME) is None:
        runner.end()
        runner.wait(30.0)
    say(finished=runner.stats.frames_sent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
