"""The built MSI's tables, read back with `msiinfo export`: what an admin relies on."""

from __future__ import annotations

import subprocess

import pytest

from installer.build import EXE_NAME, SECURE_PROPERTIES, read_table

from .conftest import AUTOSTART_ARGUMENTS, SHORTCUT_ARGUMENTS, BuiltMsi

pytestmark = [pytest.mark.msi, pytest.mark.timeout(600)]

UPGRADE_CODE = "{10071E2B-1566-4640-BA0D-4CBD45D8B3B0}"
HKLM = "2"  # Registry/RegLocator Root column
HKMU = "-1"  # HKLM or HKCU following ALLUSERS
AGENT_KEY = r"SOFTWARE\zgoda\Agent"
RUN_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
SETTINGS = {
    "RelayUrl": "RELAY_URL",
    "RelayKey": "RELAY_KEY",
    "TlsPin": "TLS_PIN",
    "OrgName": "ORG_NAME",
    "Language": "LANGUAGE",
    "VideoEncoder": "VIDEO_ENCODER",
}


def rows(msi: BuiltMsi, table: str) -> list[dict[str, str]]:
    return read_table(msi.path, table)


def properties(msi: BuiltMsi) -> dict[str, str]:
    return {row["Property"]: row["Value"] for row in rows(msi, "Property")}


def test_product_version_is_the_package_version_and_upgrade_code_is_fixed(
    agent_msi: BuiltMsi,
) -> None:
    props = properties(agent_msi)
    assert props["ProductVersion"] == agent_msi.version
    assert props["UpgradeCode"] == UPGRADE_CODE
    assert props["ProductName"] == "zgoda Agent"
    assert props["ALLUSERS"] == "1"  # per machine


def test_summary_says_x64(agent_msi: BuiltMsi) -> None:
    info = subprocess.run(
        ["msiinfo", "suminfo", str(agent_msi.path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Template: x64;1033" in info


def test_public_properties_have_no_defaults_and_reach_the_elevated_sequence(
    agent_msi: BuiltMsi,
) -> None:
    props = properties(agent_msi)
    for name in SECURE_PROPERTIES:
        assert name not in props, f"{name} must come from the command line or the registry"
    secure = props["SecureCustomProperties"].split(";")
    assert set(SECURE_PROPERTIES) <= set(secure)
    assert {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"} <= set(secure)


def test_settings_are_written_to_hklm_where_the_agent_reads_them(agent_msi: BuiltMsi) -> None:
    written = {
        row["Name"]: row
        for row in rows(agent_msi, "Registry")
        if row["Key"].rstrip("\\") == AGENT_KEY
    }
    assert set(written) == set(SETTINGS)
    for name, prop in SETTINGS.items():
        assert written[name]["Root"] == HKLM
        assert written[name]["Value"] == f"[{prop}]"  # REG_SZ: no #/#x prefix


def test_nothing_is_written_per_user(agent_msi: BuiltMsi) -> None:
    roots = {row["Name"]: row["Root"] for row in rows(agent_msi, "Registry")}
    # The shortcut's key path is HKMU (-1), as ICE38/ICE43 ask; with ALLUSERS=1 it is HKLM.
    assert roots.pop("StartMenuShortcut") == HKMU
    assert set(roots.values()) == {HKLM}
    assert properties(agent_msi)["ALLUSERS"] == "1"


def test_agent_starts_at_every_logon_from_hklm_run(agent_msi: BuiltMsi) -> None:
    run = [row for row in rows(agent_msi, "Registry") if row["Key"].rstrip("\\") == RUN_KEY]
    assert len(run) == 1
    assert run[0]["Root"] == HKLM
    assert run[0]["Name"] == "zgoda Agent"
    assert run[0]["Value"] == f'"[INSTALLDIR]{EXE_NAME}" {AUTOSTART_ARGUMENTS}'


def test_install_folder_is_under_64_bit_program_files(agent_msi: BuiltMsi) -> None:
    directories = {row["Directory"]: row for row in rows(agent_msi, "Directory")}
    assert directories["INSTALLDIR"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert directories["INSTALLDIR"]["DefaultDir"].endswith("zgoda Agent")
    components = rows(agent_msi, "Component")
    # msidbComponentAttributes64bit: files and registry go to the 64-bit locations
    assert all(int(row["Attributes"]) & 0x100 for row in components)


def test_every_built_file_is_in_the_package(agent_msi: BuiltMsi) -> None:
    files = rows(agent_msi, "File")
    staged = [p for p in agent_msi.staging.rglob("*") if p.is_file()]
    assert len(files) == len(staged)
    exe = [row for row in files if row["File"] == "AgentExe"]
    assert exe[0]["FileName"].split("|")[-1] == EXE_NAME
    assert int(exe[0]["FileSize"]) == (agent_msi.staging / EXE_NAME).stat().st_size


def test_start_menu_shortcut_runs_the_agent_with_its_icon(agent_msi: BuiltMsi) -> None:
    (shortcut,) = rows(agent_msi, "Shortcut")
    assert shortcut["Directory_"] == "ProgramMenuFolder"
    assert shortcut["Name"].split("|")[-1] == "zgoda Agent"
    assert shortcut["Target"] == f"[INSTALLDIR]{EXE_NAME}"
    assert shortcut["Arguments"] == SHORTCUT_ARGUMENTS
    assert shortcut["Icon_"] == "zgoda.ico"
    assert [row["Name"] for row in rows(agent_msi, "Icon")] == ["zgoda.ico"]
    assert properties(agent_msi)["ARPPRODUCTICON"] == "zgoda.ico"


def test_major_upgrade_replaces_older_and_same_versions_and_detects_newer(
    agent_msi: BuiltMsi,
) -> None:
    upgrade = {row["ActionProperty"]: row for row in rows(agent_msi, "Upgrade")}
    assert set(upgrade) == {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"}
    older = upgrade["WIX_UPGRADE_DETECTED"]
    assert older["UpgradeCode"] == UPGRADE_CODE
    assert (older["VersionMin"], older["VersionMax"]) == ("", agent_msi.version)
    attributes = int(older["Attributes"])
    assert attributes & 0x200  # VersionMaxInclusive: a rebuild of this version replaces it
    assert not attributes & 0x002  # not detect-only: it is removed
    newer = upgrade["WIX_DOWNGRADE_DETECTED"]
    assert (newer["VersionMin"], newer["VersionMax"]) == (agent_msi.version, "")
    assert int(newer["Attributes"]) == 0x002  # detect only, this version excluded


def test_launch_conditions_refuse_a_downgrade_and_a_missing_relay(agent_msi: BuiltMsi) -> None:
    conditions = {
        row["Condition"]: row["Description"] for row in rows(agent_msi, "LaunchCondition")
    }
    assert "newer version" in conditions["NOT WIX_DOWNGRADE_DETECTED"]
    relay = conditions["Installed OR (RELAY_URL AND RELAY_KEY)"]
    assert "RELAY_URL=" in relay
    assert "RELAY_KEY=" in relay
    assert "zgoda relay pubkey" in relay


def test_remembered_values_are_searched_in_the_64_bit_registry(agent_msi: BuiltMsi) -> None:
    locators = {row["Signature_"]: row for row in rows(agent_msi, "RegLocator")}
    searches = {row["Property"]: row["Signature_"] for row in rows(agent_msi, "AppSearch")}
    assert len(searches) == len(SETTINGS)
    for name, prop in SETTINGS.items():
        locator = locators[searches[f"SAVED_{prop}"]]
        assert (locator["Root"], locator["Key"], locator["Name"]) == (HKLM, AGENT_KEY, name)
        assert int(locator["Type"]) == 2 | 16  # raw value, 64-bit view


def test_sequence_restores_remembered_values_before_launch_conditions(
    agent_msi: BuiltMsi,
) -> None:
    actions = {row["Action"]: row for row in rows(agent_msi, "CustomAction")}
    for table in ("InstallExecuteSequence", "InstallUISequence"):
        sequence = {row["Action"]: row for row in rows(agent_msi, table)}
        search = int(sequence["AppSearch"]["Sequence"])
        launch = int(sequence["LaunchConditions"]["Sequence"])
        for prop in SETTINGS.values():
            restore = next(a for a, row in actions.items() if row["Source"] == prop)
            assert actions[restore]["Target"] == f"[SAVED_{prop}]"
            assert search < int(sequence[restore]["Sequence"]) < launch
            # only when the command line left it unset: a passed value wins
            assert sequence[restore]["Condition"] == f"SAVED_{prop} AND NOT {prop}"


def test_old_version_is_removed_before_the_new_one_is_installed(agent_msi: BuiltMsi) -> None:
    sequence = {
        row["Action"]: int(row["Sequence"]) for row in rows(agent_msi, "InstallExecuteSequence")
    }
    assert sequence["FindRelatedProducts"] < sequence["LaunchConditions"]
    assert (
        sequence["InstallValidate"]
        < sequence["RemoveExistingProducts"]
        < sequence["InstallInitialize"]
    )


def test_no_code_runs_no_service_and_no_port(agent_msi: BuiltMsi) -> None:
    # Every custom action only sets a property (type 51): no DLL, EXE or script runs.
    assert {int(row["Type"]) & 0x3F for row in rows(agent_msi, "CustomAction")} == {51}
    tables = subprocess.run(
        ["msiinfo", "tables", str(agent_msi.path)], capture_output=True, text=True, check=True
    ).stdout.split()
    # wixl creates some of these tables empty; none may have a row.
    for table in ("ServiceInstall", "ServiceControl", "Binary", "Environment", "IniFile"):
        if table in tables:
            assert rows(agent_msi, table) == [], table


def test_msi_files_are_named_after_their_version(
    agent_msi: BuiltMsi, newer_msis: tuple[BuiltMsi, BuiltMsi]
) -> None:
    for msi in (agent_msi, *newer_msis):
        assert msi.path.name == f"zgoda-agent-{msi.version}-linux-payload.msi"
        assert properties(msi)["ProductVersion"] == msi.version
    codes = {properties(msi)["ProductCode"] for msi in (agent_msi, *newer_msis)}
    assert len(codes) == 3  # a new ProductCode per build: every one is a major upgrade
