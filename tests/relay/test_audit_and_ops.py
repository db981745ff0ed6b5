"""Audit chain, crash safety, TLS, shutdown and logs of a real relay process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sqlite3
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp

from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    AuditKind,
    AuditReport,
    ClaimNameplate,
    RelayErrorCode,
    Sealed,
)
from tests.relay.helpers import STEP_TIMEOUT, agent, close_code_for, paired
from tests.relay.test_limits import wait_until
from tests.support.relay import RelayProcess, relay_cli

MakeRelay = Callable[..., RelayProcess]


def tamper(relay: RelayProcess, sql: str) -> None:
    """What an attacker with the database file could do: drop the guards and edit."""
    db = sqlite3.connect(relay.data_dir / "relay.sqlite3")
    try:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute(sql)
        db.commit()
    finally:
        db.close()


async def test_audit_chain_verifies_and_detects_tampering(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay()
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await ag.send(AuditReport(kind=AuditKind.GRANTED, rights=1, detail="viewed"))
    await ag.ws.close()
    await con.closed()
    relay.stop()

    result = relay.cli("audit", "verify")
    assert result.returncode == 0, result.stdout
    assert "audit chain intact" in result.stdout

    shown = relay.cli("audit", "show", "--ticket", ticket["id"])
    assert shown.returncode == 0
    for kind in ("ticket.opened", "nameplate.allocated", "session.paired", "consent.granted"):
        assert kind in shown.stdout
    as_json = relay.cli("audit", "show", "--ticket", ticket["id"], "--json")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    granted = next(r for r in rows if r["kind"] == "consent.granted")
    assert granted["detail"]["rights"] == "view"
    assert granted["detail"]["consultant"] == "Anna Nowak"
    assert relay.cli("audit", "show", "--ticket", "HD-1").returncode == 1

    seq = granted["seq"]
    tamper(relay, f'UPDATE audit SET detail = \'{{"rights": "control"}}\' WHERE seq = {seq}')
    result = relay.cli("audit", "verify")
    assert result.returncode == 1
    assert f"audit row {seq}: contents do not match its hash" in result.stdout
    assert "BROKEN" in result.stdout


def test_a_removed_audit_row_is_detected(make_relay: MakeRelay) -> None:
    relay = make_relay()
    token = relay.token()
    relay.create_ticket(token)
    relay.stop()
    tamper(relay, "DELETE FROM audit WHERE seq = 2")
    result = relay.cli("audit", "verify")
    assert result.returncode == 1
    assert "row 2 is missing" in result.stdout


async def test_kill_9_mid_session_loses_no_committed_event_and_both_ends_notice(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay()
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, session_id = await paired(http, relay, token, ticket["id"])
    await ag.send(AuditReport(kind=AuditKind.GRANTED, rights=2, detail=""))
    await ag.send(AuditReport(kind=AuditKind.HAND_BACK_STARTED, rights=2, detail=""))
    await ag.send(Sealed(box=b"frame"))
    await con.expect(Sealed)  # the relay handled both receipts before this

    def history() -> list[str]:
        _, reply = relay.api("GET", f"/api/tickets/{ticket['id']}/history", token=token)
        return [e["kind"] for e in reply["events"]]

    before = wait_until(
        lambda: (h := history()) and "consent.hand_back_started" in h and h, "the receipts"
    )
    relay.kill()
    # both ends see the link drop (nothing could be said: the process is gone)
    for end in (con, ag):
        msg = await end.ws.receive(timeout=STEP_TIMEOUT)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )

    restarted = relay.restart()
    try:
        token = restarted.token()
        _, reply = restarted.api("GET", f"/api/tickets/{ticket['id']}/history", token=token)
        after = [e["kind"] for e in reply["events"]]
        assert after == before
        assert any(e["session_id"] == session_id for e in reply["events"])
        verify = restarted.cli("audit", "verify")
        assert verify.returncode == 0, verify.stdout
    finally:
        restarted.stop()


async def test_graceful_shutdown_tells_both_ends_why(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay()
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    stopping = asyncio.get_running_loop().run_in_executor(None, relay.stop)
    for end in (con, ag):
        error, code = await end.refused()
        assert error.code is RelayErrorCode.SHUTTING_DOWN
        assert "shutting down" in error.message
        assert code == close_code_for(RelayErrorCode.SHUTTING_DOWN)
    assert await stopping == 0
    rows = relay.cli("audit", "show").stdout
    assert "relay shutdown" in rows
    assert "relay.stopped" in rows


async def test_dev_tls_serves_a_certificate_whose_fingerprint_a_client_pins(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(args=("--dev-tls",))
    assert relay.url.startswith("https://127.0.0.1:")
    assert len(relay.fingerprint) == 64
    # a pinning client: no CA check, but the certificate's DER must hash to the pin
    pinning = ssl.create_default_context()
    pinning.check_hostname = False
    pinning.verify_mode = ssl.CERT_NONE
    port = int(relay.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as raw,
        pinning.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    assert hashlib.sha256(der).hexdigest() == relay.fingerprint
    # the API and both WebSockets work over TLS
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await ag.send(Sealed(box=b"over tls"))
    assert (await con.expect(Sealed)).box == b"over tls"
    await ag.ws.close()
    await con.closed()
    # a restart reuses the same certificate, so the pin stays valid
    again = relay.restart()
    try:
        assert again.fingerprint == relay.fingerprint
    finally:
        again.stop()


def test_a_non_loopback_bind_without_tls_is_refused(tmp_path: Path) -> None:
    result = relay_cli(tmp_path, "serve", "--bind", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "without TLS" in result.stderr
    assert "listening" not in result.stdout


async def test_json_logs_and_metrics_count_sessions_bytes_and_failures(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"log_format": "json"})
    token = relay.token()
    ticket = relay.create_ticket(token)
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await ag.send(Sealed(box=b"x" * 1000))
    await con.expect(Sealed)
    bad = await agent(http, relay)
    await bad.send(ClaimNameplate(nameplate="999", protocol_version=PROTOCOL_VERSION))
    await bad.refused()

    def metric(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def scraped() -> str:
        return str(relay.api("GET", "/metrics")[1])

    text = wait_until(
        lambda: (
            (t := scraped())
            and metric(t, 'zgoda_relay_forwarded_bytes_total{direction="to_console"}') > 1000
            and t
        ),
        "bytes to be counted",
    )
    assert metric(text, "zgoda_relay_sessions") == 1
    assert metric(text, "zgoda_relay_sessions_paired_total") == 1
    assert metric(text, 'zgoda_relay_claims_total{result="unknown"}') == 1
    assert metric(text, 'zgoda_relay_failures_total{reason="nameplate_unknown"}') == 1
    assert metric(text, 'zgoda_relay_connections{endpoint="console"}') == 1
    await ag.ws.close()
    await con.closed()
    relay.stop()
    lines = [json.loads(line) for line in relay.log().splitlines() if line.strip()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert any("refused: NAMEPLATE_UNKNOWN" in entry["message"] for entry in lines)


def test_admin_cli_errors_are_clear(tmp_path: Path) -> None:
    result = relay_cli(tmp_path, "consultant", "disable", "ghost")
    assert result.returncode == 2
    assert "no consultant 'ghost'" in result.stderr
    added = relay_cli(
        tmp_path, "consultant", "add", "x", "--name", "X", "--password-stdin", stdin="short\n"
    )
    assert added.returncode == 2
    assert "characters" in added.stderr
