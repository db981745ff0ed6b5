"""`zgoda tray`: the employee's agent, a tray icon with the dialogs.

    zgoda tray [--config PATH] [--autostart] [--no-help] [--consent-timeout S]

Started from the Start menu (or by hand) it opens *Get help* at once; started
with `--autostart` (the logon entry) it only shows the tray icon, and it exits
quietly when the user switched the autostart entry off. A second start while
one runs asks the first to open *Get help* and exits: one agent per user.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from protocol.errors import ConfigError
from protocol.limits import CONSENT_TIMEOUT_SECONDS

log = logging.getLogger("agent.ui")

MIN_CONSENT_TIMEOUT = 5.0
"""Shorter than this and a user cannot read the prompt before it denies itself."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zgoda tray", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML config file (not on Windows)")
    parser.add_argument(
        "--autostart",
        action="store_true",
        help="started at logon: tray icon only; exit if the user disabled autostart",
    )
    parser.add_argument(
        "--no-help", action="store_true", help="do not open Get help at start (tray icon only)"
    )
    parser.add_argument(
        "--consent-timeout",
        type=float,
        default=CONSENT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"an unanswered consent prompt denies after this long "
        f"(default {CONSENT_TIMEOUT_SECONDS:.0f}, at least {MIN_CONSENT_TIMEOUT:.0f})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the tray app; 0 after *Quit* (or a knock on a running one), 2 on a config error."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="zgoda tray: %(levelname)s %(message)s")
    if args.consent_timeout < MIN_CONSENT_TIMEOUT:
        print(
            f"zgoda tray: --consent-timeout must be at least {MIN_CONSENT_TIMEOUT:.0f} s",
            file=sys.stderr,
        )
        return 2
    from agent.config import WindowsRegistry, load_config
    from agent.ui.desktop import SingleInstance, default_desktop
    from agent.ui.strings import Strings, configured_language, pick_language, system_language

    desktop = default_desktop()
    if args.autostart and desktop.autostart_disabled_by_user():
        return 0
    try:
        config = load_config(args.config)
        registry = WindowsRegistry() if sys.platform == "win32" else None
        language = pick_language(
            configured_language(args.config, registry=registry), system_language()
        )
    except ConfigError as exc:
        print(f"zgoda tray: configuration error: {exc}", file=sys.stderr)
        return 2
    instance: SingleInstance | None
    try:
        instance = SingleInstance()
        first = instance.acquire()
    except OSError as exc:
        # No private runtime directory (or someone else's under /tmp): one agent per
        # user cannot be kept, but the user asked for help, so run without it.
        log.warning("single instance not available (%s); running anyway", exc)
        instance, first = None, True
    if not first:
        assert instance is not None
        try:
            if not instance.knock():
                log.warning("the running agent did not answer; it will open Get help when it can")
        except OSError as exc:
            log.warning("cannot reach the running agent: %s", exc)
        return 0
    desktop.make_dpi_aware()  # before Tk creates its first window
    from agent.ui.app import TrayApp

    try:
        app = TrayApp(
            config,
            Strings(language),
            desktop=desktop,
            instance=instance,
            consent_timeout=args.consent_timeout,
        )
    except BaseException:
        if instance is not None:
            instance.close()
        raise

    def stop(_signum: int, _frame: FrameType | None) -> None:
        app.post(app.quit)

    previous = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.signal(signal.SIGINT, stop)
    try:
        app.run(open_help=not (args.autostart or args.no_help))
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return 0


if __name__ == "__main__":
    sys.exit(main())
