"""The relay's HTTP JSON API as seen by a consultant: login, relay identity, tickets.

One `aiohttp.ClientSession` per `RelayApi`; the same session (and so the same
TLS pin) opens the `/ws/console` WebSocket of a remote session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from console.errors import (
    ApiError,
    ConsoleError,
    LoginFailed,
    NotLoggedIn,
    RelayUnreachable,
    TlsPinMismatch,
)

API_TIMEOUT_SECONDS = 15.0
"""One HTTP call: the relay answers in milliseconds on a LAN; 15 s tolerates a
slow VPN, yet a dead relay is reported before the consultant gives up."""

SSL_SHUTDOWN_GRACE_SECONDS = 0.25
"""What aiohttp's documentation advises waiting after closing a session with TLS
connections, so their close_notify exchange finishes while the loop runs."""

MAX_API_RESPONSE_BYTES = 4 * 1024 * 1024
"""A ticket list is a few KiB per ticket; 4 MiB is far more than a day's work."""

TicketStatus = Literal["open", "closed", "all"]


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    expires_at: float
    display_name: str
    username: str


@dataclass(frozen=True, slots=True)
class RelayInfo:
    public_key: str
    org: str
    version: str
    hours: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """A ticket as the relay keeps it; `title` is what the relay attests to the user."""

    id: str
    title: str
    caller_name: str
    company: str
    phone: str
    problem: str
    status: str
    consultant: str = ""
    created_at: float | str | None = None
    closed_at: float | str | None = None
    resolution: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Ticket:
        """Build from the relay's JSON. Raises ApiError for a malformed ticket."""
        if not isinstance(data, dict):
            raise ApiError(0, "bad_response", "The relay sent a malformed ticket.")
        try:
            known: dict[str, Any] = {
                "id": str(data["id"]),
                "title": str(data.get("title") or ""),
                "caller_name": str(data.get("caller_name") or ""),
                "company": str(data.get("company") or ""),
                "phone": str(data.get("phone") or ""),
                "problem": str(data.get("problem") or ""),
                "status": str(data.get("status") or ""),
                "consultant": str(data.get("consultant") or ""),
                "created_at": data.get("created_at"),
                "closed_at": data.get("closed_at"),
                "resolution": data.get("resolution"),
            }
        except KeyError:
            raise ApiError(0, "bad_response", "The relay sent a ticket without an id.") from None
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**known, extra=extra)


def tls_pin_fingerprint(pin: str) -> bytes:
    """Parse a pin: sha256 hex of the certificate DER, colons and case ignored.

    Raises:
        ConsoleError: not 64 hex digits.
    """
    cleaned = pin.replace(":", "").replace(" ", "").strip().lower()
    try:
        digest = bytes.fromhex(cleaned)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConsoleError("A TLS pin is the certificate's sha256 fingerprint: 64 hex digits.")
    return digest


def format_fingerprint(digest: bytes) -> str:
    """`AB:CD:...` as browsers show certificate fingerprints."""
    return ":".join(f"{b:02X}" for b in digest)


async def fetch_tls_fingerprint(relay_url: str, timeout: float = API_TIMEOUT_SECONDS) -> str | None:
    """The sha256 hex fingerprint of the certificate an https relay presents; None for http.

    The certificate is read without trusting it, so the consultant can compare
    it with what the relay's admin published before pinning it.

    Raises:
        RelayUnreachable: no TLS connection could be made.
    """
    parts = urlsplit(relay_url)
    if parts.scheme not in ("https", "wss"):
        return None
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate to show it, not trusting it
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host or None),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise RelayUnreachable(f"Cannot reach {host}:{port} over TLS: {exc}") from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        # the fingerprint is already read; a rude close changes nothing
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return hashlib.sha256(der).hexdigest() if der else None


def normalise_relay_url(relay_url: str) -> str:
    """`host:port` or a URL → `http(s)://host:port` without a trailing slash.

    Raises:
        ConsoleError: not an http(s) URL.
    """
    url = relay_url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConsoleError(f"Not a relay address: {relay_url!r} (expected https://host:port).")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class RelayApi:
    """The relay's HTTP API with a bearer token; use as `async with RelayApi(url) as api:`.

    `tls_pin` (sha256 hex of the certificate DER) pins an https relay's
    certificate instead of trusting the system's CAs: a self-signed dev relay
    works, and a different certificate is refused.
    """

    def __init__(
        self,
        relay_url: str,
        *,
        tls_pin: str | None = None,
        token: str | None = None,
        timeout: float = API_TIMEOUT_SECONDS,
    ) -> None:
        self.url = normalise_relay_url(relay_url)
        self.tls_pin = tls_pin
        self.token = token
        self.login_info: Login | None = None
        self._ssl: aiohttp.Fingerprint | bool = (
            aiohttp.Fingerprint(tls_pin_fingerprint(tls_pin)) if tls_pin else True
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RelayApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    @property
    def ssl(self) -> aiohttp.Fingerprint | bool:
        return self._ssl

    @property
    def ws_url(self) -> str:
        return ("wss" + self.url[5:] if self.url.startswith("https") else "ws" + self.url[4:]) + (
            "/ws/console"
        )

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None
            if self.url.startswith("https"):
                # aiohttp drops an SSL transport without waiting for its shutdown
                # (aio-libs/aiohttp#1925); its advice: give the loop a moment, or the
                # socket outlives the loop and leaks as an "unclosed transport".
                await asyncio.sleep(SSL_SHUTDOWN_GRACE_SECONDS)

    # -- the calls

    async def login(self, username: str, password: str, totp: str | None = None) -> Login:
        """Log in and keep the token for the next calls.

        Raises:
            LoginFailed: wrong credentials or TOTP; RelayUnreachable; TlsPinMismatch; ApiError.
        """
        body: dict[str, str] = {"username": username, "password": password}
        if totp:
            body["totp"] = totp.strip()
        data = await self._call("POST", "/api/login", body, auth=False)
        try:
            login = Login(
                token=str(data["token"]),
                expires_at=float(data.get("expires_at") or 0),
                display_name=str(data.get("display_name") or username),
                username=username,
            )
        except (KeyError, TypeError, ValueError):
            raise ApiError(0, "bad_response", "The relay's login answer is malformed.") from None
        self.token, self.login_info = login.token, login
        return login

    async def logout(self) -> None:
        """Invalidate the token on the relay (best effort: a dead token is already logged out).

        Raises:
            RelayUnreachable, TlsPinMismatch, ApiError (an expired token is not an error).
        """
        if self.token is None:
            return
        try:
            await self._call("POST", "/api/logout", {})
        except NotLoggedIn:
            pass  # already expired: the goal is reached
        finally:
            self.token = None

    async def relay_info(self) -> RelayInfo:
        """The relay's identity: Ed25519 public key, organisation, version, hours.

        Raises:
            NotLoggedIn, ApiError, RelayUnreachable, TlsPinMismatch.
        """
        data = await self._call("GET", "/api/relay", None, auth=False)
        return RelayInfo(
            public_key=str(data.get("public_key", "")),
            org=str(data.get("org", "")),
            version=str(data.get("version", "")),
            hours=data.get("hours"),
        )

    async def create_ticket(
        self, *, caller_name: str, company: str, phone: str, problem: str
    ) -> Ticket:
        """Register a caller's ticket. Raises ApiError (e.g. validation), NotLoggedIn."""
        body = {"caller_name": caller_name, "company": company, "phone": phone, "problem": problem}
        return Ticket.from_json(await self._call("POST", "/api/tickets", body))

    async def list_tickets(
        self, status: TicketStatus = "open", *, mine: bool = True
    ) -> list[Ticket]:
        """Tickets by status; `mine` keeps the logged-in consultant's own.

        Raises:
            NotLoggedIn, ApiError, RelayUnreachable, TlsPinMismatch.
        """
        query = f"?status={status}" + ("&mine=1" if mine else "")
        data = await self._call("GET", "/api/tickets" + query, None)
        tickets = data.get("tickets")
        if not isinstance(tickets, list):
            raise ApiError(0, "bad_response", "The relay's ticket list is malformed.")
        return [Ticket.from_json(t) for t in tickets]

    async def get_ticket(self, ticket_id: str) -> Ticket:
        """One ticket by id.

        Raises:
            NotLoggedIn, ApiError, RelayUnreachable, TlsPinMismatch.
        """
        data = await self._call("GET", f"/api/tickets/{_segment(ticket_id)}", None)
        return Ticket.from_json(data)

    async def close_ticket(self, ticket_id: str, resolution: str) -> Ticket | None:
        """Close with a resolution; returns the closed ticket if the relay sends it back.

        Raises:
            NotLoggedIn, ApiError, RelayUnreachable, TlsPinMismatch.
        """
        data = await self._call(
            "POST", f"/api/tickets/{_segment(ticket_id)}/close", {"resolution": resolution}
        )
        return Ticket.from_json(data) if "id" in data else None

    async def ticket_history(self, ticket_id: str) -> list[dict[str, Any]]:
        """The ticket's audit events (sessions, consent receipts), oldest first.

        Raises:
            NotLoggedIn, ApiError, RelayUnreachable, TlsPinMismatch.
        """
        data = await self._call("GET", f"/api/tickets/{_segment(ticket_id)}/history", None)
        events = data.get("events")
        if not isinstance(events, list):
            raise ApiError(0, "bad_response", "The relay's ticket history is malformed.")
        return [e for e in events if isinstance(e, dict)]

    # -- plumbing

    def auth_headers(self) -> dict[str, str]:
        """The bearer header. Raises NotLoggedIn without a token."""
        if not self.token:
            raise NotLoggedIn(401, "unauthorized", "Log in first.")
        return {"Authorization": f"Bearer {self.token}"}

    async def _call(
        self, method: str, path: str, body: dict[str, str] | None, *, auth: bool = True
    ) -> dict[str, Any]:
        headers = self.auth_headers() if auth else {}
        try:
            async with self.http.request(
                method, self.url + path, json=body, headers=headers, ssl=self._ssl
            ) as response:
                raw = await response.content.read(MAX_API_RESPONSE_BYTES + 1)
                status = response.status
                if len(raw) > MAX_API_RESPONSE_BYTES:
                    raise ApiError(status, "too_large", "The relay's answer is too large.")
                try:
                    data = json.loads(raw) if raw else {}
                except ValueError:  # includes UnicodeDecodeError
                    data = None
        except aiohttp.ServerFingerprintMismatch as exc:
            raise TlsPinMismatch(self.tls_pin or "", exc.got.hex()) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RelayUnreachable(
                f"The relay at {self.url} does not answer ({_why(exc)})."
            ) from None
        if not isinstance(data, dict):
            raise ApiError(status, "bad_response", f"The relay answered {status} without JSON.")
        if status >= 400:
            code = str(data.get("error") or "error")
            message = str(data.get("message") or f"The relay refused the request ({status}).")
            if path == "/api/login" and status in (400, 401, 403):
                raise LoginFailed(status, code, message)
            if status == 401:
                raise NotLoggedIn(status, code, message)
            raise ApiError(status, code, message)
        return data


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"
