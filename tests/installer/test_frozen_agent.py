"""The PyInstaller build that goes into the MSI runs, and accepts what the MSI passes it.

This is the Linux build of the same spec: it shows that the spec collects what the agent
imports (protocol, cryptography, ...) and that the command lines written into the Run entry
and the shortcut are ones the agent understands.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from installer.build import EXE_NAME

from .conftest import AUTOSTART_ARGUMENTS, SHORTCUT_ARGUMENTS, BuiltMsi

pytestmark = [pytest.mark.msi, pytest.mark.timeout(600)]

RELAY_KEY = "7J3xdwgZexyGxwTE/4snPcvrRvqbx5II9Blrw+SwlkA="


def run_frozen(
    msi: BuiltMsi, home: Path, *args: str, relay_key: str = RELAY_KEY
) -> subprocess.CompletedProcess[str]:
    # No display and an empty home: only the arguments and these ZGODA_* variables count.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZGODA_", "DISPLAY"))}
    env.update(HOME=str(home), ZGODA_RELAY_URL="https://relay.example.com")
    env.update(ZGODA_RELAY_KEY=relay_key, ZGODA_LANGUAGE="en")
    return subprocess.run(
        [str(msi.staging / EXE_NAME), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_frozen_agent_reads_its_configuration(agent_msi: BuiltMsi, tmp_path: Path) -> None:
    result = run_frozen(agent_msi, tmp_path, "config")
    assert result.returncode == 0, result.stderr
    assert "relay_url = 'https://relay.example.com'" in result.stdout
    assert f"relay_key = '{RELAY_KEY}'" in result.stdout
    # the build carries PyAV's FFmpeg, GPU encoders included: without it, no H.264
    assert "# H.264 encoders in this build: h264_nvenc, h264_amf, h264_qsv, libx264" in (
        result.stdout
    )


def test_frozen_agent_refuses_a_malformed_relay_key(agent_msi: BuiltMsi, tmp_path: Path) -> None:
    result = run_frozen(agent_msi, tmp_path, "config", relay_key="not-a-key")
    assert result.returncode == 2
    assert "configuration error" in result.stderr


@pytest.mark.parametrize("arguments", [AUTOSTART_ARGUMENTS, SHORTCUT_ARGUMENTS])
def test_frozen_agent_accepts_the_installed_command_lines(
    agent_msi: BuiltMsi, tmp_path: Path, arguments: str
) -> None:
    result = run_frozen(agent_msi, tmp_path, *arguments.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "--autostart" in result.stdout
