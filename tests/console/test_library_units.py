"""Pure parts of the client library: URLs, pins, tickets, and no GUI in it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from console.api import Ticket, format_fingerprint, normalise_relay_url, tls_pin_fingerprint
from console.errors import ApiError, ConsoleError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://relay.example.com/", "https://relay.example.com"),
        ("wss://relay.example.com:8443", "https://relay.example.com:8443"),
        (" http://[::1]:9000 ", "http://[::1]:9000"),
    ],
)
def test_relay_url_is_normalised(given: str, expected: str) -> None:
    assert normalise_relay_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://relay", "http://", "://x"])
def test_relay_url_that_is_not_http_is_refused(bad: str) -> None:
    with pytest.raises(ConsoleError, match="Not a relay address"):
        normalise_relay_url(bad)


def test_tls_pin_accepts_hex_with_colons_and_refuses_the_rest() -> None:
    digest = bytes(range(32))
    assert tls_pin_fingerprint(digest.hex()) == digest
    assert tls_pin_fingerprint(format_fingerprint(digest)) == digest
    for bad in ("", "abcd", "zz" * 32, digest.hex() + "00"):
        with pytest.raises(ConsoleError, match="64 hex digits"):
            tls_pin_fingerprint(bad)


def test_ticket_from_json_keeps_unknown_fields_and_refuses_a_ticket_without_id() -> None:
    ticket = Ticket.from_json(
        {"id": "HD-7", "title": "Outlook", "caller_name": "Jan", "status": "open", "sla": 4}
    )
    assert (ticket.id, ticket.title, ticket.extra) == ("HD-7", "Outlook", {"sla": 4})
    with pytest.raises(ApiError):
        Ticket.from_json({"title": "no id"})
    with pytest.raises(ApiError):
        Ticket.from_json(["not", "a", "dict"])


def test_client_library_imports_no_gui_toolkit() -> None:
    code = (
        "import sys, console.client, console.cli, console.session, console.png;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'qasync')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
