"""`python -m agent`: the agent's command line (the PyInstaller build's entry point)."""

from __future__ import annotations

import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
