"""`python -m agent`: the agent's command line (the PyInstaller build's entry point)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from agent.cli import main


def _log_to_file_when_windowed() -> None:
    """A windowed build (PyInstaller --windowed) has no console: sys.stdout and
    sys.stderr are None and every message, a configuration error included, would
    vanish. Send them to %LOCALAPPDATA%\\zgoda\\agent.log instead."""
    if sys.stdout is not None and sys.stderr is not None:
        return
    base = os.environ.get("LOCALAPPDATA") or str(Path.home())
    folder = Path(base) / "zgoda"
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "agent.log").open("a", encoding="utf-8", buffering=1)
    sys.stdout = sys.stdout or log
    sys.stderr = sys.stderr or log


if __name__ == "__main__":
    _log_to_file_when_windowed()
    sys.exit(main())
