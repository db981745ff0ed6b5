"""The MSI installed for real by `wine msiexec` in one throwaway prefix (Windows 10 mode).

The tests run in file order on the same prefix, as an admin would meet them: a silent
install without the relay settings is refused; a silent install with them; an upgrade
without properties; an upgrade that changes one property; a rebuilt package of the same
version; a refused downgrade; removal.
Each test states what the previous ones left behind.

Wine differences, checked here and written down where they matter: the exit status is
truncated to 8 bits (1603 shows as 67), and wine resolves ProgramMenuFolder to the current
user's Start menu even for a per-machine install (Windows uses the all-users one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import FakeRegistry, load_config
from installer.build import EXE_NAME

from .conftest import AUTOSTART_ARGUMENTS, BuiltMsi
from .wine import INSTALL_FAILED, WinePrefix, missing_wine

pytestmark = [pytest.mark.msi, pytest.mark.timeout(600)]

AGENT_KEY = r"HKLM\SOFTWARE\zgoda\Agent"
RUN_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
UNINSTALL_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
INSTALL_DIR = Path("Program Files") / "zgoda Agent"

# An Ed25519 public key as `zgoda relay pubkey` prints it; '+', '/' and '=' must survive
# msiexec's command-line parsing.
RELAY_KEY = "7J3xdwgZexyGxwTE/4snPcvrRvqbx5II9Blrw+SwlkA="
SETTINGS = {
    "RELAY_URL": "https://relay.example.com:8443",
    "RELAY_KEY": RELAY_KEY,
    "TLS_PIN": "ab" * 32,
    "ORG_NAME": "Urząd Miasta Łódź",
    "LANGUAGE": "en",
    "VIDEO_ENCODER": "h264_qsv",
}
EXPECTED_VALUES = {
    "RelayUrl": SETTINGS["RELAY_URL"],
    "RelayKey": SETTINGS["RELAY_KEY"],
    "TlsPin": SETTINGS["TLS_PIN"],
    "OrgName": SETTINGS["ORG_NAME"],
    "Language": SETTINGS["LANGUAGE"],
    "VideoEncoder": SETTINGS["VIDEO_ENCODER"],
}


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WinePrefix]:
    reason = missing_wine()
    if reason:
        pytest.skip(reason)
    wine = WinePrefix(tmp_path_factory.mktemp("wine") / "prefix")
    try:
        wine.create()
        yield wine
    finally:
        wine.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "msiexec.log"


def properties(**values: str) -> list[str]:
    return [f"{name}={value}" for name, value in values.items()]


def install(prefix: WinePrefix, msi: BuiltMsi, log: Path, *props: str) -> int:
    return prefix.msiexec("/i", prefix.windows_path(msi.path), "/qn", *props, log=log)


def log_text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else "(no log)"


def products(prefix: WinePrefix) -> list[dict[str, str]]:
    """The zgoda entries in Programs and Features (the Uninstall key), with `ProductCode`."""
    tree = prefix.reg_tree(UNINSTALL_KEY) or {}
    return [
        {**values, "ProductCode": key.rsplit("\\", 1)[-1]}
        for key, values in tree.items()
        if values.get("DisplayName") == "zgoda Agent"
    ]


def installed_files(prefix: WinePrefix) -> set[str]:
    root = prefix.drive_c / INSTALL_DIR
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def staged_files(msi: BuiltMsi) -> set[str]:
    return {p.relative_to(msi.staging).as_posix() for p in msi.staging.rglob("*") if p.is_file()}


def shortcuts(prefix: WinePrefix) -> list[Path]:
    # Per machine on Windows (ProgramData); wine puts it in the user's menu (see above).
    return sorted(prefix.drive_c.glob("**/Start Menu/Programs/zgoda Agent.lnk"))


def run_entry(prefix: WinePrefix) -> str | None:
    return (prefix.reg_values(RUN_KEY) or {}).get("zgoda Agent")


def test_silent_install_without_relay_url_or_key_is_refused(
    prefix: WinePrefix, agent_msi: BuiltMsi, tmp_path: Path
) -> None:
    without_url = {k: v for k, v in SETTINGS.items() if k != "RELAY_URL"}
    without_key = {k: v for k, v in SETTINGS.items() if k != "RELAY_KEY"}
    for name, props in (("no-url", without_url), ("no-key", without_key)):
        log = tmp_path / f"{name}.log"
        status = install(prefix, agent_msi, log, *properties(**props))
        assert status == INSTALL_FAILED, log_text(log)
        assert "LaunchConditions. Return value 0" in log_text(log)  # wine: 0 = failed
    assert products(prefix) == []
    assert not (prefix.drive_c / INSTALL_DIR).exists()
    assert prefix.reg_values(AGENT_KEY) is None
    assert run_entry(prefix) is None


def test_silent_install_writes_files_settings_run_entry_and_shortcut(
    prefix: WinePrefix, agent_msi: BuiltMsi, log: Path
) -> None:
    status = install(prefix, agent_msi, log, *properties(**SETTINGS))
    assert status == 0, log_text(log)
    assert installed_files(prefix) == staged_files(agent_msi)
    exe = prefix.drive_c / INSTALL_DIR / EXE_NAME
    assert exe.read_bytes() == (agent_msi.staging / EXE_NAME).read_bytes()
    values = prefix.reg_values(AGENT_KEY)
    assert values == EXPECTED_VALUES
    # What the agent makes of them: its own reader, fed from wine's real registry.
    config = load_config(env={}, registry=FakeRegistry(values), platform="win32")
    assert config.relay_url == SETTINGS["RELAY_URL"]
    assert config.relay_key == RELAY_KEY
    assert config.tls_pin == SETTINGS["TLS_PIN"]
    assert config.org_name == SETTINGS["ORG_NAME"]
    assert config.language == "en"
    assert run_entry(prefix) == rf'"C:\Program Files\zgoda Agent\{EXE_NAME}" {AUTOSTART_ARGUMENTS}'
    assert len(shortcuts(prefix)) == 1
    # the shortcut's HKMU key path went to HKLM: a per-machine install
    assert prefix.reg_values(AGENT_KEY + r"\Installed") == {"StartMenuShortcut": "0x1"}
    (product,) = products(prefix)
    assert product["DisplayVersion"] == agent_msi.version
    assert product["Publisher"] == "zgoda"


def test_upgrade_without_properties_keeps_settings_and_leaves_one_product(
    prefix: WinePrefix, newer_msis: tuple[BuiltMsi, BuiltMsi], log: Path
) -> None:
    newer, _ = newer_msis
    status = install(prefix, newer, log)
    assert status == 0, log_text(log)
    assert prefix.reg_values(AGENT_KEY) == EXPECTED_VALUES
    (product,) = products(prefix)
    assert product["DisplayVersion"] == newer.version
    assert installed_files(prefix) == staged_files(newer)
    assert run_entry(prefix) is not None
    assert len(shortcuts(prefix)) == 1


def test_upgrade_with_one_property_changes_only_that_value(
    prefix: WinePrefix, newer_msis: tuple[BuiltMsi, BuiltMsi], log: Path
) -> None:
    _, newest = newer_msis
    status = install(prefix, newest, log, "ORG_NAME=Acme Sp. z o.o.")
    assert status == 0, log_text(log)
    assert prefix.reg_values(AGENT_KEY) == {**EXPECTED_VALUES, "OrgName": "Acme Sp. z o.o."}
    (product,) = products(prefix)
    assert product["DisplayVersion"] == newest.version


def test_rebuilt_package_of_the_same_version_replaces_the_installed_one(
    prefix: WinePrefix,
    newer_msis: tuple[BuiltMsi, BuiltMsi],
    rebuilt_newest_msi: BuiltMsi,
    log: Path,
) -> None:
    (before,) = products(prefix)
    assert rebuilt_newest_msi.version == newer_msis[1].version
    status = install(prefix, rebuilt_newest_msi, log)
    assert status == 0, log_text(log)
    (after,) = products(prefix)  # replaced, not installed beside it
    assert after["ProductCode"] != before["ProductCode"]
    assert after["DisplayVersion"] == rebuilt_newest_msi.version
    assert prefix.reg_values(AGENT_KEY) == {**EXPECTED_VALUES, "OrgName": "Acme Sp. z o.o."}


def test_downgrade_is_refused_and_the_newer_version_stays(
    prefix: WinePrefix,
    agent_msi: BuiltMsi,
    newer_msis: tuple[BuiltMsi, BuiltMsi],
    log: Path,
) -> None:
    _, newest = newer_msis
    # Every setting passed, so the relay condition holds: only the downgrade can refuse.
    status = install(prefix, agent_msi, log, *properties(**SETTINGS))
    assert status == INSTALL_FAILED, log_text(log)
    assert "WIX_DOWNGRADE_DETECTED = {" in log_text(log)
    (product,) = products(prefix)
    assert product["DisplayVersion"] == newest.version
    assert prefix.reg_values(AGENT_KEY) == {**EXPECTED_VALUES, "OrgName": "Acme Sp. z o.o."}
    assert installed_files(prefix) == staged_files(newest)


def test_uninstall_removes_files_settings_run_entry_and_shortcut(
    prefix: WinePrefix, rebuilt_newest_msi: BuiltMsi, log: Path
) -> None:
    installed = rebuilt_newest_msi.path
    status = prefix.msiexec("/x", prefix.windows_path(installed), "/qn", log=log)
    assert status == 0, log_text(log)
    assert not (prefix.drive_c / INSTALL_DIR).exists()
    assert prefix.reg_values(AGENT_KEY) is None
    assert prefix.reg_values(r"HKLM\SOFTWARE\zgoda") is None
    assert run_entry(prefix) is None
    assert shortcuts(prefix) == []
    assert products(prefix) == []
