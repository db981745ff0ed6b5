"""`zgoda demo --in-process`: a real protocol session between two in-process peers.

Everything but the sockets is real: SPAKE2 with the phone code, key
confirmation, AES-GCM sealing, the relay's Ed25519 attestation, the consent
table. The relay's routing is `protocol.loopback.Pair`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from protocol.codes import PhoneCode
from protocol.connection import SessionEnded
from protocol.errors import LocalProtocolError
from protocol.loopback import Pair
from protocol.messages import (
    Encoding,
    EndReason,
    Frame,
    KeyEvent,
    PointerMove,
    Region,
    Rights,
    Sealed,
)


def _say(step: str, detail: str = "") -> None:
    print(f"  {step:<44} {detail}")


def run(report_path: Path | None = None) -> dict[str, object]:
    report: dict[str, object] = {}
    print("zgoda in-process protocol session")
    pair = Pair()
    _say("console: ticket registered, code allocated", f"read over the phone: {pair.code}")

    pair.user_connects()
    agent = pair.agent
    assert agent is not None and agent.attestation is not None
    _say("agent: user typed the code, clicked Connect", f"state {agent.state.value}")
    _say("both: PAKE + key confirmation", f"console {pair.console.state.value}")
    _say(
        "agent: prompt shows (relay-attested)",
        f"{agent.attestation.consultant}, ticket {agent.attestation.ticket_id}, "
        f"asks for {pair.console.requested_rights.name}",
    )

    try:
        pair.console.send(PointerMove(x=10, y=10))
        refused = "sent?!"
    except LocalProtocolError as exc:
        refused = f"refused: {exc}"
    _say("console: mouse move before consent", refused)
    report["input_before_consent"] = refused

    pair.user_allows(Rights.CONTROL)
    _say("agent: user clicked Allow (control)", f"state {agent.state.value}")

    pixels = bytes(range(256)) * 64
    frame = Frame(
        frame_id=1,
        captured_at_ns=time.monotonic_ns(),
        width=1920,
        height=1080,
        regions=(Region(x=0, y=0, width=64, height=64, encoding=Encoding.ZLIB_BGRA, data=pixels),),
    )
    agent.send(frame)
    pair.pump()
    got = [e for e in pair.console_events if isinstance(e, Frame)]
    _say("agent → console: sealed frame", f"delivered intact: {bool(got and got[0] == frame)}")
    pair.console.ack(1)
    pair.console.send(KeyEvent(key="a", down=True))
    pair.console.send(KeyEvent(key="a", down=False))
    pair.pump()
    keys = [e for e in pair.agent_events if isinstance(e, KeyEvent)]
    _say("console → agent: key a down/up", f"agent received {len(keys)} key events")

    pair.console.request_hand_back()
    pair.pump()
    _say("console: hand the keyboard back", f"state {agent.state.value}")
    try:
        pair.console.send(KeyEvent(key="x", down=True))
        during = "sent?!"
    except LocalProtocolError:
        during = "refused by the console's own table"
    _say("console: key during hand-back", during)
    agent.end_hand_back()
    pair.pump()
    _say("agent: user clicked Done", f"state {agent.state.value}")

    pair.console.end(EndReason.CONSULTANT_ENDED, "solved")
    pair.pump()
    ended = [e for e in pair.agent_events if isinstance(e, SessionEnded)]
    _say("console: end session", f"agent: {ended[0].reason.name if ended else '?'}")

    sealed = sum(1 for _, m in pair.wire if isinstance(m, Sealed))
    seen = Counter(type(m).__name__ for _, m in pair.wire)
    _say("relay saw (envelope only)", ", ".join(f"{k}×{v}" for k, v in sorted(seen.items())))
    _say("audit receipts", ", ".join(r.kind.name for r in pair.audit))

    wrong = Pair()
    typed = PhoneCode(wrong.code.nameplate, f"{(int(wrong.code.secret) + 1) % 10**6:06d}")
    wrong.user_connects(typed)
    wrong_end = [e for e in wrong.agent_events if isinstance(e, SessionEnded)]
    _say(
        "second call, user mistypes the code",
        f"{wrong_end[0].reason.name if wrong_end else '?'}; nameplate burnt: {bool(wrong.aborts)}",
    )
    report.update(
        {
            "code": str(pair.code),
            "frame_delivered": bool(got and got[0] == frame),
            "keys_delivered": len(keys),
            "sealed_messages": sealed,
            "relay_saw": dict(seen),
            "audit": [r.kind.name for r in pair.audit],
            "wrong_code": wrong_end[0].reason.name if wrong_end else None,
        }
    )
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {report_path}")
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zgoda demo")
    parser.add_argument("--report", type=Path, default=Path("demo-output/protocol-session.json"))
    args = parser.parse_args(argv)
    run(args.report)
    return 0
