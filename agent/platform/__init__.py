"""Platform adapters: the OS calls behind capture and input (see `base`)."""

from __future__ import annotations

import sys

from agent.platform.base import Platform, PlatformError


def default_platform() -> Platform:
    """The platform of this machine. Constructing it opens nothing.

    Raises:
        PlatformError: this OS has no adapter.
    """
    if sys.platform == "win32":
        from agent.platform.windows import WindowsPlatform

        return WindowsPlatform()
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        from agent.platform.x11 import X11Platform

        return X11Platform()
    raise PlatformError(f"no screen and input adapter for {sys.platform}")
