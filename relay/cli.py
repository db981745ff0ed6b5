"""`zgoda relay ...`: run the relay and administer it.

    zgoda relay serve [--data-dir D] [--port P] [--bind A] [--org O] [--dev-tls] ...
    zgoda relay consultant add USER --name "Display Name" (--password-stdin | prompt) [--totp]
    zgoda relay consultant list | disable USER | enable USER | passwd USER | totp USER [--off]
    zgoda relay consultant revoke USER
    zgoda relay pubkey
    zgoda relay audit verify | audit show [--ticket T] [--json]

Every command takes `--data-dir` (or ZGODA_RELAY_DATA_DIR) and `--config`.
Admin commands open the same SQLite file as a running relay; WAL lets them.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from typing import Any

from protocol.attestation import public_key_text
from protocol.errors import ConfigError
from relay import accounts
from relay.config import RelayConfig, load_config
from relay.keys import load_or_create_relay_key
from relay.store import SQLiteStore, StorageFull, StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zgoda relay", description="run and administer the relay")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where the database and keys live")
    common.add_argument("--config", help="TOML config file (default: DATA_DIR/relay.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the relay")
    serve.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (0: any free port; default 8765)")
    serve.add_argument("--org", help="organisation name signed into attestations")
    serve.add_argument("--tls-cert", help="PEM certificate chain")
    serve.add_argument("--tls-key", help="PEM private key")
    serve.add_argument("--dev-tls", action="store_true", default=None, help="self-signed TLS")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback bind without TLS",
    )
    serve.add_argument("--hours", help="'always' or like 'Mon-Fri 08:00-18:00'")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.add_argument("--log-level")

    consultant = sub.add_parser("consultant", help="manage consultants")
    csub = consultant.add_subparsers(dest="action", required=True)
    add = csub.add_parser("add", parents=[common], help="create a consultant")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="display name shown to the PC's user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--totp", action="store_true", help="require an authenticator code")
    csub.add_parser("list", parents=[common], help="list consultants")
    for name, text in (
        ("disable", "disable a consultant and revoke their tokens"),
        ("enable", "enable a consultant again"),
        ("revoke", "revoke every token of a consultant (log them out)"),
    ):
        p = csub.add_parser(name, parents=[common], help=text)
        p.add_argument("username")
    passwd = csub.add_parser("passwd", parents=[common], help="set a new password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    totp = csub.add_parser("totp", parents=[common], help="(re)issue or remove the TOTP secret")
    totp.add_argument("username")
    totp.add_argument("--off", action="store_true", help="remove the second factor")

    sub.add_parser("pubkey", parents=[common], help="print the relay's public key (for the MSI)")

    audit = sub.add_parser("audit", help="check and read the audit log")
    asub = audit.add_subparsers(dest="action", required=True)
    asub.add_parser("verify", parents=[common], help="check the hash chain")
    show = asub.add_parser("show", parents=[common], help="print audit rows")
    show.add_argument("--ticket", help="only this ticket's history")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _config(args: argparse.Namespace, **overrides: Any) -> RelayConfig:
    return load_config(data_dir=args.data_dir, config_file=args.config, overrides=overrides)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise ValueError("the passwords differ")
    return first


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _consultant(args: argparse.Namespace, config: RelayConfig) -> int:
    store = SQLiteStore(config.data_dir)
    try:
        if args.action == "add":
            password = _read_password(args.password_stdin)
            secret = accounts.new_totp_secret() if args.totp else None
            store.add_consultant(args.username, args.name, accounts.hash_password(password), secret)
            store.append_audit(
                "consultant.added", actor="admin", detail={"username": args.username}
            )
            print(f"consultant {args.username} added")
            if secret is not None:
                print(f"totp {accounts.totp_uri(secret, args.username, config.org)}")
        elif args.action == "list":
            for c in store.consultants():
                flags = ["disabled" if c.disabled else "active"]
                if c.totp_secret is not None:
                    flags.append("totp")
                print(f"{c.username}\t{c.display_name}\t{','.join(flags)}")
        elif args.action in ("disable", "enable"):
            store.set_disabled(args.username, args.action == "disable")
            store.append_audit(
                f"consultant.{args.action}d", actor="admin", detail={"username": args.username}
            )
            print(f"consultant {args.username} {args.action}d")
        elif args.action == "revoke":
            count = store.revoke_tokens_of(args.username)
            store.append_audit(
                "consultant.tokens_revoked", actor="admin", detail={"username": args.username}
            )
            print(f"{count} token(s) of {args.username} revoked")
        elif args.action == "passwd":
            if store.consultant(args.username) is None:
                raise StoreError(f"no consultant {args.username!r}")
            store.set_password(
                args.username, accounts.hash_password(_read_password(args.password_stdin))
            )
            store.append_audit(
                "consultant.password_set", actor="admin", detail={"username": args.username}
            )
            print(f"password of {args.username} changed; their tokens are revoked")
        elif args.action == "totp":
            secret = None if args.off else accounts.new_totp_secret()
            store.set_totp(args.username, secret)
            store.append_audit(
                "consultant.totp_set",
                actor="admin",
                detail={"username": args.username, "on": secret is not None},
            )
            if secret is None:
                print(f"second factor of {args.username} removed")
            else:
                print(f"totp {accounts.totp_uri(secret, args.username, config.org)}")
    finally:
        store.close()
    return 0


def _audit(args: argparse.Namespace, config: RelayConfig) -> int:
    store = SQLiteStore(config.data_dir)
    try:
        if args.action == "verify":
            count, problems = store.verify_audit()
            for problem in problems:
                print(f"audit row {problem.seq}: {problem.reason}")
            if problems:
                print(f"audit chain BROKEN: {len(problems)} problem(s) in {count} rows")
                return 1
            print(f"audit chain intact: {count} rows")
            return 0
        rows = store.audit(args.ticket)
        if args.ticket and not rows:
            print(f"no audit rows for ticket {args.ticket}", file=sys.stderr)
            return 1
        for row in rows:
            if args.json:
                print(json.dumps(row.to_json(), ensure_ascii=False))
            else:
                detail = " ".join(f"{k}={v}" for k, v in sorted(row.detail.items()))
                where = " ".join(x for x in (row.ticket_id, row.session_id) if x)
                line = f"{row.seq:>6} {_when(row.at)} {row.kind:<26} {where} {row.actor} {detail}"
                print(line.rstrip())
        return 0
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run one `zgoda relay` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            config = _config(
                args,
                bind=args.bind,
                port=args.port,
                org=args.org,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                dev_tls=args.dev_tls,
                insecure=args.insecure,
                hours=args.hours,
                log_format=args.log_format,
                log_level=args.log_level,
            )
            from relay.app import run
            from relay.logs import setup_logging

            setup_logging(config.log_format, config.log_level)
            return run(config)
        config = _config(args)
        if args.command == "pubkey":
            print(public_key_text(load_or_create_relay_key(config.data_dir).public_key()))
            return 0
        if args.command == "consultant":
            return _consultant(args, config)
        return _audit(args, config)
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"zgoda relay: {exc}", file=sys.stderr)
        return 2
    except StorageFull as exc:
        print(f"zgoda relay: the disk is full, nothing was changed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
