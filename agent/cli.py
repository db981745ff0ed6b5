"""`zgoda agent`: the PC side from a terminal.

    zgoda agent connect [CODE] [--config PATH] [--rights-prompt terminal]
    zgoda agent config [--config PATH]
    zgoda agent tray [...]            (= zgoda tray: the employee's tray icon and dialogs)

The installed Windows program (`zgoda-agent.exe`, `python -m agent`) runs `tray`
from the Start menu and `tray --autostart` at logon; with no arguments on Windows
it starts the tray too, since that is what a double click means there.

`connect` is the terminal front of the session engine: without CODE it asks for
the code on the terminal, and nothing opens a socket until a valid code is
entered (the terminal's equivalent of the tray's *Connect* click). The consent
prompt is asked on the terminal; Ctrl+C (or typing `end`) ends the session.

`config` prints the effective configuration, so an admin can check what the MSI
or the TOML file set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.codes import PhoneCode, parse_code
from protocol.errors import CodeError, ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zgoda agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    connect = commands.add_parser("connect", help="connect with the code the consultant reads")
    connect.add_argument(
        "code", nargs="?", help="the 9-digit code, e.g. 482-913-775 (asked for when omitted)"
    )
    connect.add_argument("--config", type=Path, help="TOML config file")
    connect.add_argument(
        "--rights-prompt",
        choices=("terminal",),
        default="terminal",
        help="where the consent prompt is asked (the tray UI adds its own front)",
    )
    show = commands.add_parser("config", help="print the effective configuration")
    show.add_argument("--config", type=Path, help="TOML config file")
    # listed for --help; main() hands `tray` and its arguments to agent.ui.cli unparsed
    commands.add_parser("tray", help="the employee's tray icon and dialogs (see zgoda tray -h)")
    return parser


CODE_ATTEMPTS = 3
"""Typos are common when a code is read over the phone; three tries, then stop."""


def parse_code_argument(text: str) -> PhoneCode | None:
    try:
        return parse_code(text)
    except CodeError as exc:
        print(f"zgoda agent: {exc}", file=sys.stderr)
        return None


def ask_for_code() -> PhoneCode | None:
    """Ask on the terminal; None after CODE_ATTEMPTS bad answers or end of input."""
    for _ in range(CODE_ATTEMPTS):
        print("Type the code the consultant reads to you: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return None
        try:
            return parse_code(line)
        except CodeError as exc:
            print(exc, flush=True)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; returns the process exit code (2 for bad usage or config)."""
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments and sys.platform == "win32":
        arguments = ["tray"]
    if arguments[:1] == ["tray"]:
        from agent.ui.cli import main as tray_main

        return tray_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    from agent.config import FIELDS, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"zgoda agent: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        for name in FIELDS:  # every setting, in the order the docs list them
            print(f"{name} = {getattr(config, name)!r}")
        print(f"# agent endpoint: {config.agent_ws_url}")
        from agent.h264 import encoders_in_this_build

        # what `auto` may choose from (which of them works is known once probed)
        print(f"# H.264 encoders in this build: {', '.join(encoders_in_this_build()) or 'none'}")
        return 0
    code = parse_code_argument(args.code) if args.code is not None else ask_for_code()
    if code is None:
        return 2
    from agent.terminal import run_terminal_session

    return run_terminal_session(config, code)
