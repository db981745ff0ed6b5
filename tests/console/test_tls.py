"""An https relay: its certificate is shown, pinned by sha256, and a different one is refused."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from console.api import fetch_tls_fingerprint
from console.app.window import MainWindow
from console.client import ConsoleClient
from console.errors import RelayUnreachable, TlsPinMismatch
from console.session import Phase
from tests.console.conftest import TEST_LIMITS
from tests.console.qt import QtLoop
from tests.support.relay import (
    DEFAULT_NAME,
    DEFAULT_ORG,
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    REPO,
    RelayProcess,
    relay_cli,
)


def start_tls_relay(data: Path) -> RelayProcess:
    """`start_relay(..., args=("--dev-tls",))`, reading its two stdout lines robustly.

    Work-around: `tests.support.relay._read_line` waits on the pipe's file
    descriptor with a selector after `readline()`; when the relay's two lines
    ("listening on", "tls sha256 fingerprint") arrive in one read, the second
    sits in Python's buffer, the selector never fires and the start times out.
    """
    config = {"hours": "always", **TEST_LIMITS}
    data.mkdir(parents=True, exist_ok=True)
    (data / "relay.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items()))
    added = relay_cli(
        data,
        "consultant",
        "add",
        DEFAULT_USER,
        "--name",
        DEFAULT_NAME,
        "--password-stdin",
        stdin=DEFAULT_PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    log_path = data / "relay.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "protocol.cli",
                "relay",
                "serve",
                "--data-dir",
                str(data),
                "--port",
                "0",
                "--org",
                DEFAULT_ORG,
                "--dev-tls",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
        )
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert proc.stdout is not None
            first = pool.submit(proc.stdout.readline).result(timeout=30)
            second = pool.submit(proc.stdout.readline).result(timeout=30)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    url = first.removeprefix("zgoda relay listening on ").strip()
    fingerprint = second.removeprefix("zgoda relay tls sha256 fingerprint ").strip()
    assert url.startswith("https://") and len(fingerprint) >= 64, (first, second)
    pubkey = relay_cli(data, "pubkey").stdout.strip()
    return RelayProcess(
        data_dir=data,
        org=DEFAULT_ORG,
        url=url,
        proc=proc,
        log_path=log_path,
        pubkey=pubkey,
        fingerprint=fingerprint,
    )


@pytest.fixture(scope="module")
def tls_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_tls_relay(tmp_path_factory.mktemp("tls-relay") / "data")
    try:
        yield process
    finally:
        process.stop()


def normalise(pin: str) -> str:
    return pin.replace(":", "").lower()


async def test_fingerprint_shown_is_the_relays_and_pinning_it_works(
    tls_relay: RelayProcess,
) -> None:
    assert tls_relay.url.startswith("https://")
    shown = await fetch_tls_fingerprint(tls_relay.url)
    assert shown is not None and shown == normalise(tls_relay.fingerprint)
    async with ConsoleClient(tls_relay.url, tls_pin=shown) as client:
        await client.login(tls_relay.username, tls_relay.password)
        ticket = await client.create_ticket(
            caller_name="Jan Kowalski", company="", phone="600100200", problem="VPN przez TLS"
        )
        session = await client.start_session(ticket)  # the WebSocket is pinned too
        assert session.code is not None
        await session.close()
        assert session.phase is Phase.ENDED


async def test_another_certificate_is_refused_before_any_password_is_sent(
    tls_relay: RelayProcess,
) -> None:
    async with ConsoleClient(tls_relay.url, tls_pin="ab" * 32) as client:
        with pytest.raises(TlsPinMismatch, match="not the pinned one") as refused:
            await client.login(tls_relay.username, tls_relay.password)
        assert refused.value.got == normalise(tls_relay.fingerprint)


async def test_self_signed_relay_without_a_pin_is_not_trusted(tls_relay: RelayProcess) -> None:
    async with ConsoleClient(tls_relay.url) as client:
        with pytest.raises(RelayUnreachable):
            await client.login(tls_relay.username, tls_relay.password)


async def test_plain_http_has_no_fingerprint() -> None:
    assert await fetch_tls_fingerprint("http://127.0.0.1:1") is None


def test_app_shows_pins_on_first_use_and_refuses_a_changed_certificate(
    qloop: QtLoop, tls_relay: RelayProcess, tmp_path: Path
) -> None:
    settings = QSettings(str(tmp_path / "console.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.show()
    pin = normalise(tls_relay.fingerprint)
    try:
        assert qloop.run(
            window.log_in(tls_relay.url, tls_relay.username, tls_relay.password, pin=True)
        )
        assert window.settings.value("tls_pins") == {tls_relay.url: pin}
        assert "pinned" in window.login.fingerprint.text()
        assert window.client is not None and window.client.api.tls_pin == pin

        # the relay's certificate "changes": the stored pin no longer matches
        window.settings.setValue("tls_pins", {tls_relay.url: "cd" * 32})
        ok = qloop.run(window.log_in(tls_relay.url, tls_relay.username, tls_relay.password))
        assert not ok and window.pages.currentWidget() is window.login
        assert "not the pinned one" in window.login.message.text()
        assert "DIFFERS" in window.login.fingerprint.text()
    finally:
        window.close()
        qloop.run(window.shutdown())
        window.deleteLater()
