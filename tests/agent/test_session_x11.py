"""Whole sessions on a real relay and a real X display, driven by a headless consultant.

The agent side is the real engine (`SessionRunner`) with a scripted front end;
input lands in a real Tk window in its own process (`tests.support.targets`).
Checks that something does *not* happen wait a short, fixed while (QUIET) after
the consultant's messages have been flushed through the relay: a bounded
negative check, not a speed assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import mss
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from Xlib import XK
from Xlib import display as xdisplay_module

from agent.frontend import ConsentAnswer, Phase
from agent.platform.base import (
    CursorInfo,
    InputBackend,
    MonitorInfo,
    PlatformError,
    ScreenCapture,
)
from agent.platform.x11 import X11Platform
from agent.runner import SessionRunner
from protocol.codes import PhoneCode
from protocol.connection import LinkRestored, PeerAwayEvent
from protocol.messages import (
    ConsentDenied,
    ConsentGranted,
    ConsentPending,
    Cursor,
    DenyReason,
    End,
    EndReason,
    Frame,
    HandBackEnded,
    HandBackStarted,
    KeyEvent,
    Modifiers,
    Monitor,
    MonitorLayout,
    MouseButton,
    Notice,
    NoticeCode,
    Party,
    PointerButton,
    PointerMove,
    RelayErrorCode,
    Rights,
    SelectMonitor,
    TypeText,
)
from tests.agent.conftest import AgentSide, until, wait_event
from tests.agent.consultant import WAIT, Consultant
from tests.agent.linkproxy import LinkProxy
from tests.agent.scripted_ui import ScriptedUI
from tests.support.relay import RelayProcess
from tests.support.targets import BLOCK_COLOURS, TargetWindow
from tests.support.xdisplay import XDisplay

QUIET = 0.6
"""How long a negative check waits for something that must not happen."""

POLISH = "Zażółć gęślą jaźń ĄĆĘŁŃÓŚŹŻ"


async def start(
    agent: AgentSide, consultant: Consultant, rights: Rights = Rights.CONTROL
) -> tuple[SessionRunner, Monitor]:
    consultant.rights = rights
    code = await consultant.open()
    runner = agent.connect(code)
    try:
        await consultant.wait_for(ConsentGranted)
        layout = await consultant.wait_for(MonitorLayout)
        await consultant.wait_for(Frame)
    except AssertionError as exc:  # say what the agent saw too
        raise AssertionError(f"{exc}; agent: {agent.ui.phases}, {agent.ui.outcome}") from None
    return runner, next(m for m in layout.monitors if m.index == layout.selected)


def on_monitor(target: TargetWindow, name: str, monitor: Monitor) -> tuple[int, int]:
    x, y = target.centre(name)
    return x - monitor.x, y - monitor.y


async def click(consultant: Consultant, x: int, y: int) -> None:
    await consultant.send(PointerMove(x=x, y=y))
    await consultant.send(PointerButton(button=MouseButton.LEFT, down=True, x=x, y=y))
    await consultant.send(PointerButton(button=MouseButton.LEFT, down=False, x=x, y=y))


async def text_arrives(target: TargetWindow, text: str) -> None:
    await until(lambda: target.entry_text() == text)


def agent_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("zgoda-injector", "zgoda-capture")) and t.is_alive()
    ]


def key_is_down(display_name: str, keysym_name: str) -> bool:
    d = xdisplay_module.Display(display_name)
    try:
        keycode = d.keysym_to_keycode(XK.string_to_keysym(keysym_name))
        keymap = d.query_keymap()
        return bool(keymap[keycode // 8] & (1 << (keycode % 8)))
    finally:
        d.close()


# ------------------------------------------------------------------ control


async def test_control_types_ascii_and_polish_text_and_clicks_a_button(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    _, monitor = await start(agent, consultant)
    target.focus_entry()
    await consultant.send(TypeText(text="Hello, zgoda! " + POLISH))
    await click(consultant, *on_monitor(target, "button", monitor))
    await until(lambda: target.clicks() == 1)
    assert target.entry_text() == "Hello, zgoda! " + POLISH
    await consultant.send(End(by=Party.CONSOLE, reason=EndReason.CONSULTANT_ENDED, detail=""))
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.CONSULTANT_ENDED
    assert agent.ui.outcome.message == "The consultant ended the session."


async def test_key_events_with_modifiers_and_altgr_letters_arrive(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    await start(agent, consultant)
    target.focus_entry()
    none, shift, ctrl, altgr = Modifiers.NONE, Modifiers.SHIFT, Modifiers.CTRL, Modifiers.ALTGR
    for key, mods in (("a", none), ("B", shift), ("ł", altgr), ("Ż", shift | altgr), ("1", none)):
        await consultant.send(KeyEvent(key=key, down=True, modifiers=mods))
        await consultant.send(KeyEvent(key=key, down=False, modifiers=mods))
    await text_arrives(target, "aBłŻ1")
    # Ctrl+A is "line start" in a Tk Entry; then a character, then the named key Delete
    for key, mods in (("a", ctrl), ("X", shift), ("delete", none)):
        await consultant.send(KeyEvent(key=key, down=True, modifiers=mods))
        await consultant.send(KeyEvent(key=key, down=False, modifiers=mods))
    await text_arrives(target, "XBłŻ1")


async def test_frames_decode_to_what_is_on_screen(
    agent: AgentSide, consultant: Consultant, target: TargetWindow, xdisplay: XDisplay
) -> None:
    _, monitor = await start(agent, consultant, Rights.VIEW)
    assert monitor.width == 1280 and monitor.height == 800

    def blocks_shown() -> bool:
        canvas = consultant.canvas
        if canvas is None:
            return False
        for name, (r, g, b) in BLOCK_COLOURS.items():
            x, y = on_monitor(target, name, monitor)
            pb, pg, pr = (int(v) for v in canvas[y, x, :3])
            if max(abs(pr - r), abs(pg - g), abs(pb - b)) > 12:
                return False
        return True

    await consultant.wait_until(blocks_shown)
    with mss.MSS(display=xdisplay.name) as sct:
        shot = sct.grab({"left": 0, "top": 0, "width": 1280, "height": 800})
    screen = np.frombuffer(shot.raw, np.uint8).reshape(800, 1280, 4)[:, :, :3].astype(int)
    assert consultant.canvas is not None
    painted = consultant.canvas[:, :, :3].astype(int)
    difference = np.abs(painted - screen)
    # JPEG q70 blurs edges a little; the picture as a whole must match closely
    assert difference.mean() < 2.0, difference.mean()
    assert np.percentile(difference, 99) < 40
    assert consultant.count(Cursor) >= 1


async def test_stuck_keys_are_released_when_the_user_withdraws_control(
    agent: AgentSide, consultant: Consultant, target: TargetWindow, xdisplay: XDisplay
) -> None:
    runner, _ = await start(agent, consultant)
    target.focus_entry()
    await consultant.send(KeyEvent(key="shift", down=True))
    await until(lambda: key_is_down(xdisplay.name, "Shift_L"))
    runner.withdraw_control()
    await consultant.wait_until(lambda: consultant.count(ConsentGranted) == 2)
    assert consultant.conn is not None and consultant.conn.session.rights is Rights.VIEW
    await until(lambda: not key_is_down(xdisplay.name, "Shift_L"))
    await until(lambda: not agent_threads() or agent_threads() == ["zgoda-capture_0"])
    assert "zgoda-injector" not in agent_threads()
    # input that was on the wire is dropped by the agent's table, not injected
    await consultant.send_raw(TypeText(text="late"))
    await until(lambda: runner.stats.input_refused >= 1)
    assert target.entry_text() == ""


# ------------------------------------------------------------------ view only, deny


async def test_view_only_sends_frames_and_refuses_injected_input(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    agent.ui.consent = ConsentAnswer.VIEW_ONLY
    runner, monitor = await start(agent, consultant, Rights.CONTROL)
    granted = consultant.events[[type(e) for e in consultant.events].index(ConsentGranted)]
    assert granted.rights is Rights.VIEW
    target.focus_entry()
    await consultant.send_raw(TypeText(text="not allowed"))
    x, y = on_monitor(target, "button", monitor)
    await consultant.send_raw(PointerButton(button=MouseButton.LEFT, down=True, x=x, y=y))
    await consultant.send_raw(PointerButton(button=MouseButton.LEFT, down=False, x=x, y=y))
    await until(lambda: runner.stats.input_refused >= 3)
    await asyncio.sleep(QUIET)
    assert target.entry_text() == ""
    assert target.clicks() == 0
    assert "zgoda-injector" not in agent_threads()
    assert runner.stats.frames_sent >= 1


async def test_deny_ends_the_session_and_nothing_is_captured(
    agent: AgentSide, consultant: Consultant
) -> None:
    agent.ui.consent = ConsentAnswer.DENY
    code = await consultant.open()
    agent.connect(code)
    denied = await consultant.wait_for(ConsentDenied)
    ended = await consultant.ended()
    await agent.ended()
    assert denied.reason is DenyReason.USER_DENIED
    assert ended.reason is EndReason.DENIED
    assert consultant.count(Frame) == consultant.count(MonitorLayout) == 0
    assert agent.ui.outcome is not None and agent.ui.outcome.reason is EndReason.DENIED
    assert agent.runner is not None and agent.runner.stats.frames_sent == 0


async def test_unanswered_prompt_is_denied_on_timeout(
    shared_relay: RelayProcess, xdisplay: XDisplay, consultant: Consultant
) -> None:
    side = AgentSide(shared_relay, ScriptedUI(consent=None), consent_timeout=0.5)
    try:
        code = await consultant.open()
        side.connect(code)
        pending = await consultant.wait_for(ConsentPending)
        denied = await consultant.wait_for(ConsentDenied)
        await side.ended()
    finally:
        side.stop()
    assert pending.timeout_seconds == 0.5
    assert denied.reason is DenyReason.TIMEOUT
    assert side.ui.consent_closed.is_set()  # the prompt was taken down
    assert side.ui.outcome is not None and side.ui.outcome.reason is EndReason.DENIED
    assert "Nobody answered" in side.ui.outcome.message
    assert consultant.count(Frame) == 0


async def test_consultant_input_while_consent_prompt_is_up_is_never_injected(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    agent.ui.release_consent.clear()
    code = await consultant.open()
    agent.connect(code)
    await consultant.wait_for(ConsentPending)
    await wait_event(agent.ui.consent_shown)
    target.focus_entry()
    # a console that ignores its rules tries to answer the prompt for the user
    await consultant.send_raw(TypeText(text="a"))
    ended = await consultant.ended()
    await agent.ended()
    assert ended.reason is EndReason.PROTOCOL_ERROR
    assert agent.ui.consent_closed.is_set()
    assert target.entry_text() == ""
    assert consultant.count(Frame) == 0


async def test_input_waits_while_an_agent_window_is_on_screen(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    runner, _ = await start(agent, consultant)
    target.focus_entry()
    runner.set_own_window("end-confirm", True)
    paused = await consultant.wait_for(Notice)
    assert paused.code is NoticeCode.INPUT_PAUSED
    await consultant.send(TypeText(text="hidden"))
    await until(lambda: runner.stats.input_refused >= 1)
    await asyncio.sleep(QUIET)
    assert target.entry_text() == ""
    runner.set_own_window("end-confirm", False)
    await consultant.wait_until(
        lambda: any(
            isinstance(e, Notice) and e.code is NoticeCode.INPUT_RESUMED for e in consultant.events
        )
    )
    await consultant.send(TypeText(text="shown"))
    await text_arrives(target, "shown")


# ------------------------------------------------------------------ hand-back, escalation


async def test_hand_back_withholds_screen_and_input_until_the_users_done(
    agent: AgentSide, consultant: Consultant, target: TargetWindow, xdisplay: XDisplay
) -> None:
    runner, _ = await start(agent, consultant)
    target.focus_entry()
    assert consultant.conn is not None
    consultant.conn.request_hand_back()
    await consultant.flush()
    started = await consultant.wait_for(HandBackStarted)
    assert started.by is Party.CONSOLE
    await wait_event(agent.ui.hand_back_shown)
    assert agent.ui.hand_back_by is Party.CONSOLE
    frames_before = consultant.count(Frame)
    # the user types a password: the screen changes, the consultant must not see it
    subprocess.run(
        ["xdotool", "type", "--delay", "5", "s3cret"], env=xdisplay.env, check=True, timeout=10
    )
    await until(lambda: target.entry_text() == "s3cret")
    await consultant.send_raw(TypeText(text="intruder"))
    await until(lambda: runner.stats.input_refused >= 1)
    await asyncio.sleep(QUIET)
    assert consultant.count(Frame) == frames_before
    assert target.entry_text() == "s3cret"
    assert not any(
        name.startswith("zgoda-injector") for name in agent_threads()
    )  # the injector does not exist during a hand-back
    assert agent.ui.phases[-1] is Phase.HAND_BACK
    # only the user's Done gives the screen and the keyboard back
    agent.ui.done.set()
    await consultant.wait_for(HandBackEnded)
    await consultant.wait_until(lambda: consultant.count(Frame) > frames_before)
    await consultant.send(TypeText(text="!"))
    await text_arrives(target, "s3cret!")


async def test_user_can_take_the_keyboard_back_on_their_own(
    agent: AgentSide, consultant: Consultant
) -> None:
    runner, _ = await start(agent, consultant)
    runner.hand_back()
    started = await consultant.wait_for(HandBackStarted)
    assert started.by is Party.AGENT
    await wait_event(agent.ui.hand_back_shown)
    agent.ui.done.set()
    await consultant.wait_for(HandBackEnded)


async def test_escalation_from_view_to_control_needs_the_users_click(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    runner, _ = await start(agent, consultant, Rights.VIEW)
    target.focus_entry()
    assert consultant.conn is not None
    consultant.conn.request_rights(Rights.CONTROL)
    await consultant.flush()
    await consultant.wait_until(lambda: consultant.count(ConsentGranted) == 2)
    assert consultant.conn.session.rights is Rights.CONTROL
    await consultant.send(TypeText(text="now"))
    await text_arrives(target, "now")
    assert runner.stats.input_refused == 0


# ------------------------------------------------------------------ ends


async def test_user_ends_and_capture_and_injection_stop_at_once(
    agent: AgentSide, consultant: Consultant, target: TargetWindow
) -> None:
    runner, _ = await start(agent, consultant)
    runner.end()
    ended = await consultant.ended()
    await agent.ended()
    assert (ended.by, ended.reason) == (Party.AGENT, EndReason.USER_ENDED)
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.message == "You ended the session."
    await until(lambda: not agent_threads())
    frames = runner.stats.frames_sent
    await asyncio.sleep(QUIET)
    assert runner.stats.frames_sent == frames


async def test_relay_killed_ends_the_agent_safely(
    relay: RelayProcess, xdisplay: XDisplay, target: TargetWindow
) -> None:
    consultant = Consultant(relay)
    side = AgentSide(relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL), resume_grace=1.0)
    try:
        await start(side, consultant)
        target.focus_entry()
        relay.kill()
        await side.ended()
        await consultant.wait_until(lambda: consultant.closed.is_set())
    finally:
        side.stop()
        await consultant.close()
    assert side.ui.outcome is not None
    assert side.ui.outcome.reason is EndReason.PEER_LOST
    await until(lambda: not agent_threads())
    assert target.entry_text() == ""


async def test_consultant_leaving_ends_the_agents_session(
    agent: AgentSide, consultant: Consultant
) -> None:
    await start(agent, consultant)
    await consultant.close()
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.PEER_LOST
    await until(lambda: not agent_threads())


# ------------------------------------------------------------------ refusals


async def test_wrong_code_is_a_clear_error_and_burns_the_nameplate(
    agent: AgentSide, consultant: Consultant, shared_relay: RelayProcess
) -> None:
    code = await consultant.open()
    wrong = PhoneCode(code.nameplate, f"{(int(code.secret) + 1) % 10**6:06d}")
    agent.connect(wrong)
    await agent.ended()
    ended = await consultant.ended()
    assert ended.reason is EndReason.WRONG_CODE
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason in (EndReason.WRONG_CODE, EndReason.PEER_LOST)
    assert agent.ui.consent_shown.is_set() is False
    # the right code no longer works: the nameplate is burnt
    second = AgentSide(shared_relay, ScriptedUI())
    try:
        second.connect(code)
        await second.ended()
    finally:
        second.stop()
    assert second.ui.outcome is not None
    assert second.ui.outcome.reason is EndReason.RELAY_REFUSED
    assert second.ui.outcome.relay_code is RelayErrorCode.NAMEPLATE_UNKNOWN
    assert second.ui.outcome.message.startswith("The helpdesk server refused the session:")


async def test_attestation_from_another_relay_key_is_refused(
    agent: AgentSide, consultant: Consultant
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.attestation import public_key_text

    code = await consultant.open()
    other = public_key_text(Ed25519PrivateKey.generate().public_key())
    agent.connect(code, relay_key=other)
    denied = await consultant.wait_for(ConsentDenied)
    await agent.ended()
    assert denied.reason is DenyReason.ATTESTATION_INVALID
    assert not agent.ui.consent_shown.is_set()  # the name was never shown
    assert agent.ui.outcome is not None and agent.ui.outcome.reason is EndReason.DENIED
    assert "could not be verified" in agent.ui.outcome.message


async def test_unreachable_relay_is_a_clear_error(agent: AgentSide) -> None:
    agent.connect(PhoneCode("123", "456789"), relay_url="http://127.0.0.1:9")
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.RELAY_REFUSED
    assert "cannot be reached" in agent.ui.outcome.message


# ------------------------------------------------------------------ pacing, receipts


async def test_a_consumer_that_stops_acking_stops_the_stream_at_the_window(
    shared_relay: RelayProcess, xdisplay: XDisplay, consultant: Consultant, target: TargetWindow
) -> None:
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.VIEW_ONLY), frame_window=2)
    try:
        consultant.ack_frames = False
        target.animate()  # the screen changes all the time: only acks limit the frames
        code = await consultant.open()
        runner = side.connect(code)

        def frame_ids() -> set[int]:
            return {f.frame_id for f in consultant.frames if f.final}

        await consultant.wait_until(lambda: len(frame_ids()) >= 2)
        await asyncio.sleep(QUIET)
        assert len(frame_ids()) == 2  # never more than the window without an ack
        assert consultant.conn is not None
        consultant.conn.ack(max(frame_ids()))
        await consultant.flush()
        await consultant.wait_until(lambda: len(frame_ids()) >= 4)
        await asyncio.sleep(QUIET)
        assert len(frame_ids()) == 4
        assert runner.stats.frames_sent == 4
    finally:
        side.stop()


async def test_consent_receipts_reach_the_relays_audit_log(
    agent: AgentSide, consultant: Consultant, shared_relay: RelayProcess
) -> None:
    runner, _ = await start(agent, consultant)
    runner.hand_back()
    await wait_event(agent.ui.hand_back_shown)
    agent.ui.done.set()
    await consultant.wait_for(HandBackEnded)
    runner.end()
    await agent.ended()
    await consultant.ended()
    ticket_id = consultant.ticket["id"]
    token = shared_relay.token()

    def kinds() -> list[str]:
        status, reply = shared_relay.api("GET", f"/api/tickets/{ticket_id}/history", token=token)
        assert status == 200, reply
        return [e["kind"] for e in reply["events"] if e["kind"].startswith("consent.")]

    expected = [
        "consent.requested",
        "consent.granted",
        "consent.hand_back_started",
        "consent.hand_back_ended",
        "consent.ended",
    ]
    await until(lambda: kinds() == expected)


# ------------------------------------------------------------------ TLS


@dataclass
class TlsFront:
    url: str
    fingerprint: str


def _self_signed(directory: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zgoda test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert_path, key_path, hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def tls_front(
    shared_relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsFront]:
    """A TLS terminator (socat) with a self-signed certificate in front of the relay,
    as a reverse proxy would stand in production."""
    cert, key, fingerprint = _self_signed(tmp_path_factory.mktemp("tls"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay_port = shared_relay.url.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [
            "socat",
            f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},verify=0",
            f"TCP:127.0.0.1:{relay_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
                break
            assert time.monotonic() < deadline and proc.poll() is None, "socat did not start"
            time.sleep(0.02)
        yield TlsFront(f"https://127.0.0.1:{port}", fingerprint)
    finally:
        proc.terminate()
        proc.wait(5)


async def test_tls_relay_with_the_pinned_certificate_is_accepted(
    tls_front: TlsFront, agent: AgentSide, consultant: Consultant
) -> None:
    consultant.rights = Rights.VIEW
    agent.ui.consent = ConsentAnswer.VIEW_ONLY
    code = await consultant.open()
    agent.connect(code, relay_url=tls_front.url, tls_pin=tls_front.fingerprint)
    await consultant.wait_for(Frame)


@pytest.mark.parametrize("pin", ["0" * 64, None])
async def test_tls_relay_with_another_certificate_is_refused_before_anything_is_sent(
    tls_front: TlsFront, agent: AgentSide, consultant: Consultant, pin: str | None
) -> None:
    code = await consultant.open()
    agent.connect(code, relay_url=tls_front.url, **({"tls_pin": pin} if pin else {}))
    await agent.ended()
    await asyncio.sleep(QUIET)
    assert consultant.summary() == ["CodeReady"]  # the claim never reached the relay
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.RELAY_REFUSED
    expected = "is not the pinned one" if pin else "certificate is not trusted"
    assert expected in agent.ui.outcome.message


async def test_user_ends_with_the_hotkey(
    agent: AgentSide, consultant: Consultant, xdisplay: XDisplay
) -> None:
    await start(agent, consultant, Rights.VIEW)
    subprocess.run(["xdotool", "key", "ctrl+alt+End"], env=xdisplay.env, check=True, timeout=10)
    ended = await consultant.ended()
    await agent.ended()
    assert (ended.by, ended.reason) == (Party.AGENT, EndReason.USER_ENDED)


async def test_consultant_selects_all_monitors_or_is_told_a_monitor_does_not_exist(
    agent: AgentSide, consultant: Consultant
) -> None:
    await start(agent, consultant, Rights.VIEW)
    first = consultant.layout
    assert first is not None and [m.index for m in first.monitors] == [0, 1]
    assert first.selected == 1 and first.monitors[1].primary
    assert first.monitors[1].scale_percent == 100
    await consultant.send(SelectMonitor(index=0))
    await consultant.wait_until(lambda: consultant.layout and consultant.layout.selected == 0)
    await consultant.wait_until(lambda: consultant.canvas is not None)
    await consultant.send(SelectMonitor(index=7))
    notice = await consultant.wait_for(Notice)
    assert (notice.code, notice.text) == (NoticeCode.INFO, "There is no monitor 7.")
    await consultant.wait_until(lambda: consultant.layout and consultant.layout.selected == 1)


# ------------------------------------------------------------------ resume


@pytest.fixture
async def link(shared_relay: RelayProcess) -> AsyncIterator[tuple[LinkProxy, str]]:
    proxy = LinkProxy(int(shared_relay.url.rsplit(":", 1)[1]))
    port = await proxy.start()
    try:
        yield proxy, f"http://127.0.0.1:{port}"
    finally:
        await proxy.close()


async def test_link_dropped_and_restored_within_grace_resumes_the_session(
    agent: AgentSide,
    consultant: Consultant,
    target: TargetWindow,
    link: tuple[LinkProxy, str],
    xdisplay: XDisplay,
) -> None:
    proxy, url = link
    consultant.rights = Rights.CONTROL
    code = await consultant.open()
    runner = agent.connect(code, relay_url=url)
    await consultant.wait_for(Frame)
    target.focus_entry()
    await consultant.send(TypeText(text="before "))
    await text_arrives(target, "before ")
    await consultant.send(KeyEvent(key="shift", down=True))  # held when the link drops
    await until(lambda: key_is_down(xdisplay.name, "Shift_L"))
    proxy.cut()
    await consultant.wait_for(PeerAwayEvent)
    await until(lambda: Phase.RECONNECTING in agent.ui.phases)
    await until(lambda: not key_is_down(xdisplay.name, "Shift_L"))  # released meanwhile
    await consultant.wait_for(LinkRestored)
    assert proxy.connections == 2  # the agent came back by itself: no new code, no click
    assert agent.ui.consent_shown.is_set() and consultant.count(ConsentGranted) == 1
    frames = consultant.count(Frame)
    await consultant.send(KeyEvent(key="shift", down=False))
    await consultant.send(TypeText(text="after"))
    await text_arrives(target, "before after")
    await consultant.wait_until(lambda: consultant.count(Frame) > frames)
    assert runner.outcome is None


async def test_consent_receipts_made_while_the_link_is_down_reach_the_audit_log(
    agent: AgentSide,
    consultant: Consultant,
    link: tuple[LinkProxy, str],
    shared_relay: RelayProcess,
) -> None:
    proxy, url = link
    code = await consultant.open()
    runner = agent.connect(code, relay_url=url)
    await consultant.wait_for(Frame)
    proxy.refuse = True  # the link stays down until the user has acted
    proxy.cut()
    await until(lambda: Phase.RECONNECTING in agent.ui.phases)
    runner.hand_back()  # the user takes the keyboard back during the outage
    await wait_event(agent.ui.hand_back_shown)
    await asyncio.sleep(0.1)  # the engine tried to send the receipt on the dead link
    proxy.refuse = False
    started = await consultant.wait_for(HandBackStarted)  # resent after the resume
    assert started.by is Party.AGENT
    agent.ui.done.set()
    await consultant.wait_for(HandBackEnded)
    runner.end()
    await agent.ended()
    token = await asyncio.to_thread(shared_relay.token)
    ticket_id = consultant.ticket["id"]

    def kinds() -> list[str]:
        status, reply = shared_relay.api("GET", f"/api/tickets/{ticket_id}/history", token=token)
        assert status == 200, reply
        return [e["kind"] for e in reply["events"] if e["kind"].startswith("consent.")]

    await until(lambda: "consent.ended" in kinds())
    assert kinds() == [
        "consent.requested",
        "consent.granted",
        "consent.hand_back_started",
        "consent.hand_back_ended",
        "consent.ended",
    ]


async def test_link_not_restored_within_grace_ends_the_session(
    shared_relay: RelayProcess,
    xdisplay: XDisplay,
    consultant: Consultant,
    link: tuple[LinkProxy, str],
) -> None:
    proxy, url = link
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.VIEW_ONLY), resume_grace=1.0)
    try:
        consultant.rights = Rights.VIEW
        code = await consultant.open()
        side.connect(code, relay_url=url)
        await consultant.wait_for(Frame)
        proxy.refuse = True
        proxy.cut()
        await side.ended()
        ended = await consultant.ended()
    finally:
        side.stop()
    assert side.ui.outcome is not None
    assert side.ui.outcome.reason is EndReason.PEER_LOST
    assert ended.reason is EndReason.PEER_LOST
    await until(lambda: not agent_threads())


# ------------------------------------------------------------------ screen faults


class FlakyCapture:
    def __init__(self, inner: ScreenCapture, failing: threading.Event) -> None:
        self.inner, self.failing = inner, failing

    def monitors(self) -> list[MonitorInfo]:
        return self.inner.monitors()

    def changed(self) -> bool | None:
        # a failing screen must be grabbed (that is where the failure shows)
        return True if self.failing.is_set() else self.inner.changed()

    def wake_fd(self) -> int | None:
        return None if self.failing.is_set() else self.inner.wake_fd()

    def damaged_area(self) -> tuple[int, int, int, int] | None:
        return None if self.failing.is_set() else self.inner.damaged_area()

    def grab_area(
        self, monitor: MonitorInfo, area: tuple[int, int, int, int]
    ) -> bytes | bytearray | memoryview:
        if self.failing.is_set():
            raise PlatformError("the secure desktop is showing")
        return self.inner.grab_area(monitor, area)

    def grab(self, monitor: MonitorInfo) -> bytes | bytearray | memoryview:
        if self.failing.is_set():
            raise PlatformError("the secure desktop is showing")
        return self.inner.grab(monitor)

    def cursor(self, *, known_serial: int | None) -> CursorInfo:
        return self.inner.cursor(known_serial=known_serial)

    def close(self) -> None:
        self.inner.close()


class FlakyScreenPlatform:
    """The real X11 platform whose grabs fail while `failing` is set: a stand-in for the
    Windows secure desktop (UAC, lock screen), which cannot exist here."""

    name = "x11, flaky screen"

    def __init__(self) -> None:
        self.inner = X11Platform()
        self.failing = threading.Event()

    def open_capture(self) -> ScreenCapture:
        return FlakyCapture(self.inner.open_capture(), self.failing)

    def open_input(self) -> InputBackend:
        return self.inner.open_input()


async def test_unreadable_screen_sends_one_notice_and_the_stream_comes_back(
    shared_relay: RelayProcess, xdisplay: XDisplay, consultant: Consultant
) -> None:
    platform = FlakyScreenPlatform()
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.VIEW_ONLY), platform=platform)
    try:
        consultant.rights = Rights.VIEW
        platform.failing.set()
        code = await consultant.open()
        runner = side.connect(code)
        notice = await consultant.wait_for(Notice)
        assert notice.code is NoticeCode.SECURE_DESKTOP
        assert "the secure desktop is showing" in notice.text
        await until(lambda: runner.stats.screen_errors >= 2)
        assert consultant.count(Frame) == 0 and consultant.count(Notice) == 1
        platform.failing.clear()
        await consultant.wait_for(Frame)
    finally:
        side.stop()


async def test_front_end_shutdown_ends_the_session_as_agent_shutdown(
    agent: AgentSide, consultant: Consultant
) -> None:
    runner, _ = await start(agent, consultant, Rights.VIEW)
    runner.end(EndReason.AGENT_SHUTDOWN)
    ended = await consultant.ended()
    await agent.ended()
    assert (ended.by, ended.reason) == (Party.AGENT, EndReason.AGENT_SHUTDOWN)
    assert agent.ui.outcome is not None
    assert "shutting down" in agent.ui.outcome.message


async def test_user_can_cancel_while_the_relay_does_not_answer(agent: AgentSide) -> None:
    with socket.socket() as silent:  # accepts TCP, never answers the WebSocket upgrade
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        runner = agent.connect(PhoneCode("123", "456789"), relay_url=f"http://127.0.0.1:{port}")
        await until(lambda: Phase.CONNECTING in agent.ui.phases)
        runner.end()
        await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.USER_ENDED


class ElevatedInput:
    """Real X11 input that reports the focused window as elevated while `elevated` is
    set: a stand-in for Windows UIPI, which does not exist on X11."""

    def __init__(self, inner: InputBackend, elevated: threading.Event) -> None:
        self.inner, self.elevated = inner, elevated

    def blocked_reason(self) -> str | None:
        return "The focused window runs as administrator." if self.elevated.is_set() else None

    def move(self, x: int, y: int) -> None:
        self.inner.move(x, y)

    def button(self, button: MouseButton, down: bool) -> None:
        self.inner.button(button, down)

    def scroll(self, dx: int, dy: int) -> None:
        self.inner.scroll(dx, dy)

    def key(self, key: str, down: bool) -> None:
        self.inner.key(key, down)

    def type_character(self, char: str) -> None:
        self.inner.type_character(char)

    def close(self) -> None:
        self.inner.close()


class ElevatedWindowPlatform:
    name = "x11, elevated window"

    def __init__(self) -> None:
        self.inner = X11Platform()
        self.elevated = threading.Event()

    def open_capture(self) -> ScreenCapture:
        return self.inner.open_capture()

    def open_input(self) -> InputBackend:
        return ElevatedInput(self.inner.open_input(), self.elevated)


async def test_input_into_an_elevated_window_is_reported_to_the_consultant(
    shared_relay: RelayProcess, xdisplay: XDisplay, consultant: Consultant, target: TargetWindow
) -> None:
    platform = ElevatedWindowPlatform()
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL), platform=platform)
    try:
        await start(side, consultant)
        target.focus_entry()
        platform.elevated.set()
        await consultant.send(TypeText(text="lost"))
        notice = await consultant.wait_for(Notice)
        assert (notice.code, notice.text) == (
            NoticeCode.ELEVATED_WINDOW,
            "The focused window runs as administrator.",
        )
        platform.elevated.clear()
        await consultant.send(TypeText(text="ok"))
        await text_arrives(target, "ok")
        await consultant.wait_until(lambda: consultant.count(Notice) == 2)
        notices = [e.code for e in consultant.events if isinstance(e, Notice)]
        assert notices == [NoticeCode.ELEVATED_WINDOW, NoticeCode.INPUT_RESUMED]
    finally:
        side.stop()


async def test_user_ends_while_the_agent_is_reconnecting(
    agent: AgentSide, consultant: Consultant, link: tuple[LinkProxy, str]
) -> None:
    proxy, url = link
    code = await consultant.open()
    agent.connect(code, relay_url=url)
    await consultant.wait_for(Frame)
    proxy.refuse = True
    proxy.cut()
    await until(lambda: Phase.RECONNECTING in agent.ui.phases)
    assert agent.runner is not None
    agent.runner.end()
    await agent.ended()
    assert agent.ui.outcome is not None
    assert agent.ui.outcome.reason is EndReason.USER_ENDED
    await until(lambda: not agent_threads())
