"""An https relay: its certificate is shown, pinned by sha256, and a different one is refused."""

from __future__ import annotations

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
from tests.support.relay import RelayProcess, start_relay


@pytest.fixture(scope="module")
def tls_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    data = tmp_path_factory.mktemp("tls-relay") / "data"
    process = start_relay(data, config=TEST_LIMITS, args=("--dev-tls",))
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
