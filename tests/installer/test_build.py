"""The build script's own logic: versions, icon, version resource, staging, errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from PIL import Image

from installer.build import (
    EXE_NAME,
    BuildError,
    Toolchain,
    main,
    msi_version,
    package_version,
    stage,
    version_info_text,
    write_icon,
)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.1.0", "0.1.0"),
        ("1.2", "1.2.0"),
        ("3", "3.0.0"),
        ("1.2.3rc1", "1.2.3"),
        ("1.2.3.post4", "1.2.3"),
        ("v2.0.1+local", "2.0.1"),
        ("255.255.65535", "255.255.65535"),
    ],
)
def test_msi_version_keeps_the_three_numeric_fields(version: str, expected: str) -> None:
    assert msi_version(version) == expected


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("", "release number"),
        ("dev", "release number"),
        ("256.0.0", "major field must be at most 255"),
        ("1.256.0", "minor field must be at most 255"),
        ("1.0.65536", "build field must be at most 65535"),
    ],
)
def test_msi_version_refuses_what_windows_installer_cannot_compare(
    version: str, message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        msi_version(version)


def test_package_version_is_read_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nversion = "4.5.6"\n', encoding="utf-8")
    assert package_version(pyproject) == "4.5.6"


@pytest.mark.parametrize(
    "text", ["", "[project]\nname = 'x'\n", "[project\n", "[project]\nversion = 3\n"]
)
def test_package_version_explains_a_bad_pyproject(tmp_path: Path, text: str) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(text, encoding="utf-8")
    with pytest.raises(BuildError, match="version"):
        package_version(pyproject)


def test_version_resource_carries_the_msi_version() -> None:
    text = version_info_text("1.4.2rc1")
    call = ast.parse(text, mode="eval").body
    assert isinstance(call, ast.Call)
    assert isinstance(call.func, ast.Name)
    assert call.func.id == "VSVersionInfo"
    assert "filevers=(1, 4, 2, 0)" in text
    assert "prodvers=(1, 4, 2, 0)" in text
    assert "StringStruct('FileVersion', '1.4.2.0')" in text
    assert f"StringStruct('OriginalFilename', '{EXE_NAME}')" in text


def test_icon_has_every_windows_size(tmp_path: Path) -> None:
    icon = write_icon(tmp_path / "sub" / "zgoda.ico")
    with Image.open(icon) as image:
        assert image.format == "ICO"
        sizes = image.info["sizes"]
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(sizes)


def test_toolchain_is_wix_on_windows_and_wixl_elsewhere() -> None:
    assert Toolchain.for_platform("win32").name == "wix"
    assert Toolchain.for_platform("linux").name == "wixl"


def _fake_pyinstaller_folder(root: Path, exe: str) -> Path:
    folder = root / "zgoda-agent"
    (folder / "_internal" / "lib").mkdir(parents=True)
    (folder / exe).write_bytes(b"agent")
    (folder / "_internal" / "base_library.zip").write_bytes(b"zip")
    (folder / "_internal" / "lib" / "module.so").write_bytes(b"so")
    return folder


@pytest.mark.parametrize("exe", ["zgoda-agent", "zgoda-agent.exe"])
def test_stage_puts_the_executable_under_its_windows_name(tmp_path: Path, exe: str) -> None:
    folder = _fake_pyinstaller_folder(tmp_path / "dist", exe)
    staging = stage(folder, tmp_path / "stage")
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert files == [
        "_internal/base_library.zip",
        "_internal/lib/module.so",
        EXE_NAME,
    ]
    assert (staging / EXE_NAME).read_bytes() == b"agent"


def test_stage_replaces_an_old_staging_folder(tmp_path: Path) -> None:
    folder = _fake_pyinstaller_folder(tmp_path / "dist", "zgoda-agent")
    (tmp_path / "stage" / "stale").mkdir(parents=True)
    staging = stage(folder, tmp_path / "stage")
    assert not (staging / "stale").exists()


def test_stage_refuses_a_folder_that_is_not_a_pyinstaller_build(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "zgoda-agent").write_bytes(b"one-file build")
    with pytest.raises(BuildError, match="not a PyInstaller one-folder build"):
        stage(tmp_path / "dist", tmp_path / "stage")


def test_command_line_reports_a_bad_version_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--version", "300.0.0", "--out", str(tmp_path), "--work", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zgoda-build-msi: ")
    assert "at most 255" in err
    assert list(tmp_path.iterdir()) == []


def test_command_line_reports_a_bad_pyinstaller_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--pyinstaller-dist", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]
    assert main([*args, "--work", str(tmp_path / "work")]) == 1
    assert "not a PyInstaller one-folder build" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
