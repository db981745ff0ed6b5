"""The agent's MSI, built once per test session (PyInstaller once, wixl per version).

`agent_msi` is the package as `make msi` builds it; `newer_msis` are two higher versions
around the same PyInstaller folder, for the upgrade tests. Without wixl/msitools (or
PyInstaller) the tests that need them are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.build import build, msi_version, package_version

# The agent's command line (agent/ui/cli.py): at logon the tray icon only; from the Start
# menu the tray with its *Get help* window open.
AUTOSTART_ARGUMENTS = "tray --autostart"
SHORTCUT_ARGUMENTS = "tray"

MSI_TOOLS = ("wixl", "wixl-heat", "msiinfo", "msibuild")


@dataclass(frozen=True)
class BuiltMsi:
    path: Path
    version: str
    staging: Path
    """The folder the MSI was built from: what must land under Program Files."""


def _missing_msi_tools() -> str | None:
    missing = [tool for tool in MSI_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install msitools wixl wixl-data)"
    if importlib.util.find_spec("PyInstaller") is None:
        return "PyInstaller not installed (pip install -e '.[build]')"
    return None


def _bump(version: str, by: int) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + by}"


@pytest.fixture(scope="session")
def msi_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _missing_msi_tools()
    if reason:
        pytest.skip(reason)
    return tmp_path_factory.mktemp("msi")


@pytest.fixture(scope="session")
def agent_msi(msi_work: Path) -> BuiltMsi:
    """The MSI of the project's version, PyInstaller included (~15 s, then ~4 s of wixl)."""
    version = msi_version(package_version())
    path = build(msi_work / "out", work=msi_work / "work")
    return BuiltMsi(path, version, msi_work / "work" / f"stage-{version}")


@pytest.fixture(scope="session")
def newer_msis(agent_msi: BuiltMsi, msi_work: Path) -> tuple[BuiltMsi, BuiltMsi]:
    """Two higher versions of the same agent (the PyInstaller folder is reused)."""
    dist = msi_work / "work" / "dist" / "zgoda-agent"
    built = []
    for step in (1, 2):
        version = _bump(agent_msi.version, step)
        path = build(
            msi_work / "out", version=version, pyinstaller_dist=dist, work=msi_work / "work"
        )
        built.append(BuiltMsi(path, version, msi_work / "work" / f"stage-{version}"))
    return built[0], built[1]


@pytest.fixture(scope="session")
def rebuilt_newest_msi(newer_msis: tuple[BuiltMsi, BuiltMsi], msi_work: Path) -> BuiltMsi:
    """The newest version built again: same version, new ProductCode (a rebuilt package)."""
    newest = newer_msis[1]
    dist = msi_work / "work" / "dist" / "zgoda-agent"
    path = build(
        msi_work / "rebuilt",
        version=newest.version,
        pyinstaller_dist=dist,
        work=msi_work / "work",
    )
    return BuiltMsi(path, newest.version, newest.staging)
