"""`zgoda`: one command, one subcommand per part of the product.

Subcommands are named here as module paths and imported only when run, so
this module stays free of I/O imports and `zgoda --help` starts fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("console.demo", "relay, agent and console on this machine; scripted without a screen"),
    "relay": ("relay.cli", "run and administer the relay"),
    "console": ("console.cli", "the consultant's desktop app (and headless commands)"),
    "agent": ("agent.cli", "the PC side: connect with a code, consent on the terminal"),
    "tray": ("agent.ui.cli", "the employee's tray icon and dialogs"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: zgoda COMMAND [options]\n\ncommands:")
        for name, (_, summary) in COMMANDS.items():
            print(f"  {name:<10} {summary}")
        return 0 if not args or args[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
