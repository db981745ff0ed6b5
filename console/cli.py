"""`zgoda console`: the desktop app, or headless commands for scripts and the demo.

    zgoda console                                   the desktop app
    zgoda console login    --relay URL --user anna --password-stdin
    zgoda console ticket new --caller "Jan Kowalski" --company ACME --phone "+48 600 100 200" \
                             --problem "Outlook does not start"
    zgoda console ticket list|show ID|close ID --resolution TEXT|history ID
    zgoda console session TICKET_ID [--view-only] [--type TEXT] [--screenshot F.png] ...
    zgoda console fingerprint https://relay:8443    the relay certificate's sha256, to pin

Every headless command logs in with `--user` and a password from stdin
(`--password-stdin`) or `$ZGODA_CONSOLE_PASSWORD`, or reuses `--token`/`--name`
(`$ZGODA_CONSOLE_TOKEN`, `$ZGODA_CONSOLE_NAME`) from `login`. The relay comes
from `--relay` or `$ZGODA_RELAY_URL`, a TLS pin from `--tls-pin` or
`$ZGODA_TLS_PIN`. Output is one JSON object per line, flushed, so a script can
read the code as soon as it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from console.api import fetch_tls_fingerprint
from console.client import ConsoleClient
from console.errors import ConsoleError, InputNotAllowed, SessionClosed
from console.png import save_png
from console.session import (
    ConsoleSession,
    ControlDenied,
    NoticeReceived,
    Phase,
    PhaseChanged,
    SessionFinished,
    Update,
    describe_end,
)
from protocol.messages import Rights

CONSENT_WAIT_SECONDS = 180.0
"""How long `session` waits for the user to type the code and click Allow: the
agent's own prompt times out after 120 s; the rest is reading the code aloud."""


def _emit(**fields: Any) -> None:
    print(json.dumps(fields, ensure_ascii=False, default=str), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zgoda console", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--relay", default=os.environ.get("ZGODA_RELAY_URL"), help="relay URL")
    common.add_argument("--tls-pin", default=os.environ.get("ZGODA_TLS_PIN") or None)
    common.add_argument("--user", default=os.environ.get("ZGODA_CONSOLE_USER"))
    common.add_argument("--password-stdin", action="store_true", help="read the password")
    common.add_argument("--totp", default=None, help="the 6-digit TOTP code, if required")
    common.add_argument("--token", default=os.environ.get("ZGODA_CONSOLE_TOKEN"))
    common.add_argument("--name", default=os.environ.get("ZGODA_CONSOLE_NAME"))
    sub = parser.add_subparsers(dest="command")

    sub.add_parser("app", help="the desktop app (the default)")
    sub.add_parser("login", parents=[common], help="log in; print the token")
    sub.add_parser("relay-info", parents=[common], help="the relay's key, org, version, hours")
    fingerprint = sub.add_parser("fingerprint", help="sha256 of a relay's TLS certificate")
    fingerprint.add_argument("url")

    ticket = sub.add_parser("ticket", help="tickets").add_subparsers(dest="action", required=True)
    new = ticket.add_parser("new", parents=[common], help="register a caller's ticket")
    new.add_argument("--caller", required=True)
    new.add_argument("--company", default="")
    new.add_argument("--phone", default="")
    new.add_argument("--problem", required=True)
    listing = ticket.add_parser("list", parents=[common], help="tickets (yours, open)")
    listing.add_argument("--status", choices=("open", "closed", "all"), default="open")
    listing.add_argument("--everyone", action="store_true", help="every consultant's tickets")
    show = ticket.add_parser("show", parents=[common])
    show.add_argument("ticket_id")
    close = ticket.add_parser("close", parents=[common])
    close.add_argument("ticket_id")
    close.add_argument("--resolution", required=True)
    history = ticket.add_parser("history", parents=[common])
    history.add_argument("ticket_id")

    session = sub.add_parser(
        "session", parents=[common], help="start a session: print the code, then its states"
    )
    session.add_argument("ticket_id")
    session.add_argument("--view-only", action="store_true", help="ask only to see the screen")
    session.add_argument("--consent-timeout", type=float, default=CONSENT_WAIT_SECONDS)
    session.add_argument("--wait-frames", type=int, default=1, help="frames to wait for")
    session.add_argument("--screenshot", type=Path, help="save the remote screen as PNG")
    session.add_argument("--type", dest="type_text", help="type this text (needs control)")
    session.add_argument("--hand-back", action="store_true", help="hand the keyboard back")
    session.add_argument("--hold", type=float, default=0.0, help="seconds to stay connected")
    session.add_argument(
        "--until-ended", action="store_true", help="stay until the user ends the session"
    )
    session.add_argument("--end-detail", default="done", help="the reason the user sees")
    return parser


async def _client(args: argparse.Namespace) -> ConsoleClient:
    if not args.relay:
        raise ConsoleError("Which relay? Pass --relay URL or set ZGODA_RELAY_URL.")
    client = ConsoleClient(args.relay, tls_pin=args.tls_pin)
    if args.token:
        await client.use_token(args.token, args.name or args.user or "consultant")
        return client
    if not args.user:
        await client.close()
        raise ConsoleError("Log in with --user (and --password-stdin), or pass --token.")
    password = (
        sys.stdin.readline().rstrip("\n")
        if args.password_stdin
        else os.environ.get("ZGODA_CONSOLE_PASSWORD", "")
    )
    try:
        await client.login(args.user, password, args.totp)
    except BaseException:
        await client.close()
        raise
    return client


async def _run(args: argparse.Namespace) -> int:
    if args.command == "fingerprint":
        pin = await fetch_tls_fingerprint(args.url)
        _emit(url=args.url, sha256=pin)
        return 0 if pin else 1
    client = await _client(args)
    async with client:
        if args.command == "login":
            info = client.api.login_info
            _emit(
                token=client.api.token,
                display_name=client.display_name,
                expires_at=info.expires_at if info else None,
            )
        elif args.command == "relay-info":
            _emit(**dataclasses.asdict(await client.relay_info()))
        elif args.command == "ticket":
            await _ticket(client, args)
        elif args.command == "session":
            return await _session(client, args)
    return 0


async def _ticket(client: ConsoleClient, args: argparse.Namespace) -> None:
    if args.action == "new":
        ticket = await client.create_ticket(
            caller_name=args.caller, company=args.company, phone=args.phone, problem=args.problem
        )
        _emit(**dataclasses.asdict(ticket))
    elif args.action == "list":
        for ticket in await client.tickets(args.status, mine=not args.everyone):
            _emit(**dataclasses.asdict(ticket))
    elif args.action == "show":
        _emit(**dataclasses.asdict(await client.ticket(args.ticket_id)))
    elif args.action == "close":
        closed = await client.close_ticket(args.ticket_id, args.resolution)
        _emit(closed=args.ticket_id, ticket=dataclasses.asdict(closed) if closed else None)
    elif args.action == "history":
        for event in await client.history(args.ticket_id):
            _emit(**event)


async def _session(client: ConsoleClient, args: argparse.Namespace) -> int:
    rights = Rights.VIEW if args.view_only else Rights.CONTROL
    session = client.new_session(await client.ticket(args.ticket_id), rights)

    def report(update: Update) -> None:
        if isinstance(update, PhaseChanged):
            _emit(phase=update.phase.name, state=update.state.value, text=update.phase.value)
        elif isinstance(update, NoticeReceived):
            _emit(notice=update.notice.code.name, text=update.notice.text)
        elif isinstance(update, ControlDenied):
            _emit(control_denied=True)
        elif isinstance(update, SessionFinished):
            ended = update.ended
            _emit(
                ended=ended.reason.name,
                by=ended.by.name,
                detail=ended.detail,
                text=describe_end(ended),
            )

    session.add_listener(report)
    code = await session.open()
    _emit(code=str(code), nameplate=code.nameplate, expires_at=session.expires_at)
    try:
        return await _drive(session, args)
    except SessionClosed:
        return 1
    finally:
        await session.end(args.end_detail)
        _emit(frames=session.stats.frames, **_stats(session))


async def _drive(session: ConsoleSession, args: argparse.Namespace) -> int:
    wanted = (Phase.VIEWING,) if args.view_only else (Phase.CONTROLLING, Phase.VIEWING)
    await session.wait_phase(*wanted, timeout=args.consent_timeout)
    if args.wait_frames > 0:
        await session.wait_frames(args.wait_frames, timeout=30)
        _emit(
            frames=session.stats.frames,
            width=session.framebuffer.width,
            height=session.framebuffer.height,
        )
    if args.screenshot:
        save_png(session.framebuffer.copy(), args.screenshot)
        _emit(screenshot=str(args.screenshot))
    if args.type_text:
        try:
            session.type_text(args.type_text)
        except InputNotAllowed as exc:
            _emit(error=str(exc))
            return 1
        _emit(typed=len(args.type_text))
    if args.hand_back:
        session.hand_back()
        await session.wait_phase(Phase.HAND_BACK, timeout=30)
        await session.wait_phase(
            Phase.VIEWING, Phase.CONTROLLING, Phase.ENDED, timeout=args.consent_timeout
        )
    deadline = time.monotonic() + args.hold
    while session.live and (args.until_ended or time.monotonic() < deadline):
        await asyncio.sleep(0.1 if not args.until_ended else 1.0)
    return 0


def _stats(session: ConsoleSession) -> dict[str, Any]:
    snap = session.stats.snapshot()
    return {"codec": snap.codec, "rtt_ms": snap.rtt_ms}


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command in (None, "app"):
        from console.app.main import run_app  # the GUI only when asked for

        return run_app()
    try:
        return asyncio.run(_run(args))
    except ConsoleError as exc:
        _emit(error=type(exc).__name__, message=str(exc))
        return 1
    except TimeoutError:
        _emit(error="TimeoutError", message="Timed out waiting for the session.")
        return 1
    except KeyboardInterrupt:
        return 130
