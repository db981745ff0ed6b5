"""The HTTP JSON API under /api: login, tickets, relay info; plus /healthz and /metrics.

Errors are JSON `{"error": "<code>", "message": "<sentence>"}` with a fitting
status; `retry_after` (and the `Retry-After` header) when waiting helps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

from aiohttp import web

from protocol.limits import PROTOCOL_VERSION
from relay import accounts
from relay.core import Relay
from relay.store import Consultant, StorageFull, StoreError, Ticket

log = logging.getLogger("zgoda.relay")

RELAY_APP_KEY: web.AppKey[Relay] = web.AppKey("relay", Relay)

MAX_BODY = 64 * 1024
"""API bodies are a few short strings; 64 KiB refuses memory games early."""

TICKET_FIELDS = {"caller_name": 128, "company": 128, "phone": 32, "problem": 4000}
TITLE_LENGTH = 120
"""A ticket's title is the first line of the problem, cut to fit a consent dialog."""
RESOLUTION_LENGTH = 4000

STORAGE_FULL_MESSAGE = (
    "The relay's disk is full, so nothing new can be saved. "
    "Please tell the helpdesk's administrator."
)


class ApiError(Exception):
    """Raised by a handler; becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def json_error(status: int, code: str, message: str, retry_after: float = 0.0) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    headers = {}
    if retry_after > 0:
        body["retry_after"] = round(retry_after, 1)
        headers["Retry-After"] = str(math.ceil(retry_after))
    return web.json_response(body, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of an API call becomes a JSON error; nothing leaks internals."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return json_error(exc.status, code, f"{exc.reason}.")
    except StorageFull:
        # logged once for the admin by Relay.db; the caller gets a sentence, not a 500
        return json_error(507, "storage_full", STORAGE_FULL_MESSAGE)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return json_error(500, "internal", "The relay had an internal error.")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object. Raises ApiError(400/413)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", "The request body is too large.")
    try:
        raw = await request.content.read(MAX_BODY + 1)
    except (ValueError, OSError):
        raise ApiError(400, "bad_request", "The request body could not be read.") from None
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", "The request body is too large.")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "The request body must be a JSON object.")
    return body


def _string(body: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = body.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"{name} must be a string.")
    value = value.strip()
    if required and not value:
        raise ApiError(400, "missing_field", f"{name} is required.")
    if len(value) > limit:
        raise ApiError(400, "bad_field", f"{name} is longer than {limit} characters.")
    return value


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def bearer_consultant(request: web.Request, relay: Relay) -> Consultant | None:
    """The consultant of the request's bearer token, or None."""
    token = _bearer(request)
    if token is None or len(token) > 256:
        return None
    return await relay.db(relay.store.token_owner, accounts.token_digest(token), relay.now())


async def _require(request: web.Request) -> tuple[Relay, Consultant]:
    relay = request.app[RELAY_APP_KEY]
    consultant = await bearer_consultant(request, relay)
    if consultant is None:
        raise ApiError(
            401, "unauthorized", "Log in first: the token is missing, expired or revoked."
        )
    return relay, consultant


# -- login


async def login(request: web.Request) -> web.Response:
    relay = request.app[RELAY_APP_KEY]
    cfg, store, metrics = relay.config, relay.store, relay.metrics
    ip = request.remote or "?"
    now_mono = time.monotonic()
    wait = relay.logins_per_ip.retry_after(ip, now_mono)
    if wait > 0:
        metrics.logins.labels("rate_limited").inc()
        raise ApiError(429, "rate_limited", "Too many login attempts; wait a moment.", wait)
    relay.logins_per_ip.record(ip, now_mono)
    body = await read_json(request)
    username = _string(body, "username", 64, required=True)
    password = body.get("password")
    totp = body.get("totp")
    if not isinstance(password, str) or (totp is not None and not isinstance(totp, str)):
        raise ApiError(400, "bad_field", "password (and totp, if given) must be strings.")
    consultant = await relay.db(store.consultant, username)
    now = relay.now()
    if consultant is None or consultant.disabled:
        await _in_thread(accounts.burn_verify_time, password)
        metrics.logins.labels("failed").inc()
        await relay.audit("login.failed", actor=username, ip=ip, detail={"why": "unknown"})
        raise ApiError(401, "invalid_credentials", "Wrong username or password.")
    if consultant.locked_until > now:
        metrics.logins.labels("locked").inc()
        wait = consultant.locked_until - now
        raise ApiError(
            429,
            "locked",
            f"Too many failed logins; the account is locked for {math.ceil(wait)} seconds.",
            wait,
        )
    ok = await _in_thread(accounts.verify_password, consultant.password_hash, password)
    step: int | None = None
    why = "password"
    if ok and consultant.totp_secret is not None:
        step = accounts.check_totp(
            consultant.totp_secret, totp or "", now, consultant.last_totp_step
        )
        ok, why = step is not None, "totp"
    if not ok:
        locked_until = await relay.db(
            store.record_login_failure,
            consultant.id,
            cfg.login_max_failures,
            cfg.lockout_seconds,
            cfg.lockout_max_seconds,
            now,
        )
        metrics.logins.labels("failed").inc()
        await relay.audit("login.failed", actor=username, ip=ip, detail={"why": why})
        if locked_until > now:
            log.warning(
                "consultant %s locked until %.0f after failed logins from %s",
                username,
                locked_until,
                ip,
            )
            await relay.audit("login.locked", actor=username, ip=ip, detail={"until": locked_until})
        if why == "totp" and not totp:
            raise ApiError(401, "totp_required", "Enter the code from your authenticator app.")
        raise ApiError(401, "invalid_credentials", "Wrong username, password or code.")
    await relay.db(store.record_login_success, consultant.id, step)
    token = accounts.new_token()
    expires_at = now + cfg.token_ttl
    await relay.db(store.add_token, accounts.token_digest(token), consultant.id, now, expires_at)
    metrics.logins.labels("ok").inc()
    await relay.audit("login", actor=username, ip=ip)
    return web.json_response(
        {"token": token, "expires_at": expires_at, "display_name": consultant.display_name}
    )


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    # argon2 takes ~50 ms of CPU: off the event loop, on the default executor
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def logout(request: web.Request) -> web.Response:
    relay, consultant = await _require(request)
    token = _bearer(request)
    assert token is not None
    await relay.db(relay.store.revoke_token, accounts.token_digest(token))
    await relay.audit("logout", actor=consultant.username, ip=request.remote or "?")
    return web.json_response({"ok": True})


async def relay_info(request: web.Request) -> web.Response:
    relay = request.app[RELAY_APP_KEY]
    try:
        version = metadata.version("zgoda")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return web.json_response(
        {
            "public_key": relay.public_key,
            "org": relay.config.org,
            "version": version,
            "protocol_version": PROTOCOL_VERSION,
            "hours": relay.hours.describe(),
            "open_now": relay.open_now(),
        }
    )


# -- tickets


def _title(problem: str) -> str:
    first = problem.strip().splitlines()[0].strip() if problem.strip() else ""
    return first if len(first) <= TITLE_LENGTH else first[: TITLE_LENGTH - 1].rstrip() + "…"


async def create_ticket(request: web.Request) -> web.Response:
    relay, consultant = await _require(request)
    body = await read_json(request)
    values = {
        name: _string(body, name, limit, required=name in ("caller_name", "problem"))
        for name, limit in TICKET_FIELDS.items()
    }
    ticket = await relay.db(
        relay.store.add_ticket,
        title=_title(values["problem"]),
        consultant_id=consultant.id,
        now=relay.now(),
        **values,
    )
    await relay.audit(
        "ticket.opened",
        ticket_id=ticket.id,
        actor=consultant.username,
        ip=request.remote or "?",
        detail={
            "title": ticket.title,
            "caller_name": ticket.caller_name,
            "company": ticket.company,
        },
    )
    return web.json_response(ticket.to_json(), status=201)


async def list_tickets(request: web.Request) -> web.Response:
    relay, consultant = await _require(request)
    status = request.query.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise ApiError(400, "bad_field", "status is one of open, closed, all.")
    mine = request.query.get("mine", "0") in ("1", "true", "yes")
    tickets = await relay.db(relay.store.tickets, status, consultant.id if mine else None)
    return web.json_response({"tickets": [t.to_json() for t in tickets]})


async def _ticket(relay: Relay, ticket_id: str) -> Ticket:
    ticket = await relay.db(relay.store.ticket, ticket_id) if len(ticket_id) <= 64 else None
    if ticket is None:
        raise ApiError(404, "ticket_unknown", f"There is no ticket {ticket_id[:64]}.")
    return ticket


async def show_ticket(request: web.Request) -> web.Response:
    relay, _ = await _require(request)
    ticket = await _ticket(relay, request.match_info["ticket_id"])
    return web.json_response(ticket.to_json())


async def close_ticket(request: web.Request) -> web.Response:
    relay, consultant = await _require(request)
    body = await read_json(request)
    resolution = _string(body, "resolution", RESOLUTION_LENGTH, required=True)
    ticket = await _ticket(relay, request.match_info["ticket_id"])
    try:
        ticket = await relay.db(relay.store.close_ticket, ticket.id, resolution, relay.now())
    except StoreError:
        raise ApiError(409, "ticket_closed", f"Ticket {ticket.id} is already closed.") from None
    await relay.audit(
        "ticket.closed",
        ticket_id=ticket.id,
        actor=consultant.username,
        ip=request.remote or "?",
        detail={"resolution": resolution},
    )
    return web.json_response(ticket.to_json())


async def ticket_history(request: web.Request) -> web.Response:
    relay, _ = await _require(request)
    ticket = await _ticket(relay, request.match_info["ticket_id"])
    rows = await relay.db(relay.store.audit, ticket.id)
    return web.json_response({"events": [row.to_json() for row in rows]})


# -- operations


async def healthz(request: web.Request) -> web.Response:
    relay = request.app[RELAY_APP_KEY]
    try:
        await relay.db(relay.store.ticket, "")
    except Exception:
        log.exception("health check: the database does not answer")
        return web.json_response({"status": "database unavailable"}, status=503)
    status = "shutting down" if relay.shutting_down else "ok"
    return web.json_response({"status": status}, status=503 if relay.shutting_down else 200)


async def metrics(request: web.Request) -> web.Response:
    relay = request.app[RELAY_APP_KEY]
    return web.Response(
        body=relay.metrics.render(), headers={"Content-Type": relay.metrics.content_type}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/relay", relay_info)
    app.router.add_post("/api/tickets", create_ticket)
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets/{ticket_id}", show_ticket)
    app.router.add_post("/api/tickets/{ticket_id}/close", close_ticket)
    app.router.add_get("/api/tickets/{ticket_id}/history", ticket_history)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
