"""Build the agent's MSI: PyInstaller for this platform, then the MSI around its output.

    python -m installer.build [--out DIR] [--version X.Y.Z] [--pyinstaller-dist DIR]
    make msi        (the same, with the project's venv)
    zgoda-build-msi (the console script)

On Windows: PyInstaller, then the WiX toolset v3 (`heat` harvests the folder, `candle` and
`light` build `zgoda-agent-<version>-x64.msi`). This is the MSI admins deploy.

On Linux: PyInstaller, then msitools (`wixl-heat` and `wixl`) around the Linux build, giving
`zgoda-agent-<version>-linux-payload.msi`: the same WiX source, so the same tables,
properties and sequences, and it really installs and upgrades under wine; but the program
inside is a Linux executable, so it is a test artifact, never a deployable package.

Both read `installer/agent.wxs`. The product version comes from `pyproject.toml` unless
`--version` overrides it (the tests build a higher one to exercise upgrades).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
ROOT = INSTALLER_DIR.parent
WXS = INSTALLER_DIR / "agent.wxs"
SPEC = INSTALLER_DIR / "zgoda-agent.spec"

EXE_NAME = "zgoda-agent.exe"
"""The agent's executable inside the install folder, as agent.wxs names it."""

CONTENTS_DIR = "_internal"
"""PyInstaller's folder for everything but the executable (its default since 6.0)."""

SECURE_PROPERTIES = (
    "RELAY_URL",
    "RELAY_KEY",
    "TLS_PIN",
    "ORG_NAME",
    "LANGUAGE",
    "VIDEO_ENCODER",
)
"""Public properties that must reach the elevated install sequence from the command line."""

UPGRADE_ATTRIBUTES = 0x001 | 0x200
"""The upgrade row's Attributes: migrate feature states, and include the maximum version
(what WiX writes for MajorUpgrade AllowSameVersionUpgrades="yes")."""

# MSI ProductVersion fields: major and minor are bytes, build a 16-bit word; a fourth
# field is ignored by upgrade logic, so we never write one (see the ProductVersion docs).
_MSI_FIELD_LIMITS = (255, 255, 65535)
_GUID = re.compile(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}")
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_RELEASE = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


class BuildError(Exception):
    """The build cannot go on; the message says why and what to install or fix."""


@dataclass(frozen=True, slots=True)
class Toolchain:
    """Which MSI tools build the package: `wixl` (msitools) or `wix` (WiX toolset v3)."""

    name: str

    @classmethod
    def for_platform(cls, platform: str = sys.platform) -> Toolchain:
        return cls("wix" if platform == "win32" else "wixl")


def package_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The project's version as written in pyproject.toml.

    Raises:
        BuildError: the file is unreadable or has no [project] version.
    """
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        version = data["project"]["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise BuildError(f"cannot read the project version from {pyproject}: {exc}") from None
    if not isinstance(version, str):
        raise BuildError(f"{pyproject}: [project] version must be a string")
    return version


def msi_version(version: str) -> str:
    """The MSI ProductVersion (`major.minor.build`, numbers only) for a PEP 440 version.

    Pre-release, post-release and local parts are dropped: Windows Installer compares only
    the three numeric fields, so `1.2.0rc1` and `1.2.0` are the same MSI version.

    Raises:
        BuildError: the version does not start with a release number, or a field is
            beyond what Windows Installer accepts (255.255.65535).
    """
    text = version.strip().removeprefix("v")
    match = _RELEASE.match(text)
    if not match:
        raise BuildError(f"version {version!r} does not start with a release number like 1.2.3")
    fields = [int(part) if part else 0 for part in match.groups()]
    for value, limit, name in zip(
        fields, _MSI_FIELD_LIMITS, ("major", "minor", "build"), strict=True
    ):
        if value > limit:
            raise BuildError(f"version {version!r}: the MSI {name} field must be at most {limit}")
    return ".".join(str(value) for value in fields)


def version_info_text(version: str) -> str:
    """The Windows version resource for the agent's executable, in PyInstaller's text form.

    Raises:
        BuildError: as `msi_version`.
    """
    numbers = (*(int(part) for part in msi_version(version).split(".")), 0)
    dotted = ".".join(str(n) for n in numbers)
    strings = {
        "CompanyName": "zgoda",
        "FileDescription": "zgoda Agent",
        "FileVersion": dotted,
        "InternalName": "zgoda-agent",
        "LegalCopyright": "zgoda",
        "OriginalFilename": EXE_NAME,
        "ProductName": "zgoda Agent",
        "ProductVersion": dotted,
    }
    table = ",\n".join(f"          StringStruct({k!r}, {v!r})" for k, v in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(
    filevers={numbers},
    prodvers={numbers},
    mask=0x3f,
    flags=0x0,
    OS=0x40004,
    fileType=0x1,
    subtype=0x0,
    date=(0, 0)
  ),
  kids=[
    StringFileInfo([
      StringTable('040904B0', [
{table}
      ])
    ]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def write_icon(path: Path) -> Path:
    """Draw the agent's icon (a white check mark on a teal square) as a multi-size .ico.

    Drawn here rather than committed as a binary: the same few lines give every size.

    Raises:
        BuildError: Pillow is missing.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise BuildError("Pillow is needed to draw the icon: pip install pillow") from None
    size = 256
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((8, 8, size - 8, size - 8), radius=48, fill=(0, 122, 122, 255))
    draw.line([(64, 134), (110, 184), (196, 80)], fill=(255, 255, 255, 255), width=30)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]
    image.save(path, format="ICO", sizes=sizes)
    return path


def run(
    command: Sequence[str | Path],
    *,
    what: str,
    stdin: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a build tool; return its stdout.

    Raises:
        BuildError: the tool is missing or fails (the end of its output is included).
    """
    args = [str(part) for part in command]
    try:
        result = subprocess.run(  # noqa: S603 - fixed tools, arguments built here
            args, input=stdin, capture_output=True, text=True, check=False, cwd=cwd, env=env
        )
    except FileNotFoundError:
        raise BuildError(f"{what}: {args[0]} not found") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result.stdout


def require_tool(name: str, hint: str) -> str:
    """The full path of a tool on PATH.

    Raises:
        BuildError: not found; the message says how to install it.
    """
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} not found: {hint}")
    return found


def run_pyinstaller(work: Path, icon: Path, version: str) -> Path:
    """Build the agent with PyInstaller (one folder) into `work`; return that folder.

    Raises:
        BuildError: PyInstaller fails or is not installed.
    """
    version_file = work / "version_info.txt"
    version_file.write_text(version_info_text(version), encoding="utf-8")
    env = {**os.environ, "ZGODA_ICON": str(icon), "ZGODA_VERSION_FILE": str(version_file)}
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level=WARN",
        "--distpath",
        str(work / "dist"),
        "--workpath",
        str(work / "pyinstaller"),
        str(SPEC),
    ]
    run(command, what="PyInstaller", env=env)
    folder = work / "dist" / "zgoda-agent"
    if not folder.is_dir():
        raise BuildError(f"PyInstaller finished but {folder} does not exist")
    return folder


def stage(pyinstaller_dist: Path, staging: Path) -> Path:
    """Lay out the install folder: `zgoda-agent.exe` at the top, the rest under _internal/.

    The PyInstaller folder is linked, not copied, when the file system allows it. A Linux
    build's executable has no `.exe`; it is staged under the Windows name so that the MSI's
    tables (Run entry, shortcut) are exactly those of the Windows build.

    Raises:
        BuildError: the folder is not a PyInstaller one-folder build.
    """
    executable = next(
        (
            pyinstaller_dist / name
            for name in (EXE_NAME, "zgoda-agent")
            if (pyinstaller_dist / name).is_file()
        ),
        None,
    )
    if executable is None or not (pyinstaller_dist / CONTENTS_DIR).is_dir():
        raise BuildError(
            f"{pyinstaller_dist} is not a PyInstaller one-folder build of the agent "
            f"(expected zgoda-agent[.exe] and {CONTENTS_DIR}/)"
        )
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copytree(
        pyinstaller_dist / CONTENTS_DIR, staging / CONTENTS_DIR, copy_function=_link_or_copy
    )
    _link_or_copy(executable, staging / EXE_NAME)
    return staging


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copy2(source, destination)


def harvest_wixl(staging: Path, out: Path) -> Path:
    """Write the AgentFiles component group for everything under _internal/ (wixl-heat).

    Raises:
        BuildError: wixl-heat is missing or fails.
    """
    tool = require_tool("wixl-heat", "apt-get install wixl (or run `make msi`)")
    files = sorted(
        path.relative_to(staging).as_posix()
        for path in (staging / CONTENTS_DIR).rglob("*")
        if path.is_file()
    )
    # Relative paths and -p "" keep absolute build paths out of the MSI's tables.
    listing = "".join(f"{name}\n" for name in files)
    fragment = run(
        [
            tool,
            "-p",
            "",
            "--component-group",
            "AgentFiles",
            "--var",
            "var.SourceDir",
            "--directory-ref",
            "INSTALLDIR",
            "--win64",
        ],
        what="wixl-heat",
        stdin=listing,
        cwd=staging,
    )
    out.write_text(fragment, encoding="utf-8")
    return out


def build_with_wixl(staging: Path, work: Path, icon: Path, version: str, out: Path) -> Path:
    """Build the MSI with msitools' wixl and fix the row wixl gets wrong.

    Raises:
        BuildError: wixl, msiinfo or msibuild is missing or fails.
    """
    wixl = require_tool("wixl", "apt-get install wixl wixl-data (or run `make msi`)")
    msibuild = require_tool("msibuild", "apt-get install msitools")
    fragment = harvest_wixl(staging, work / "files.wxs")
    # wixl cannot take absolute Source paths (it resolves them as children of the current
    # folder), so it runs inside `work` with paths relative to it.
    run(
        [
            wixl,
            "-a",
            "x64",
            "-D",
            f"Version={version}",
            "-D",
            f"SourceDir={os.path.relpath(staging, work)}",
            "-D",
            f"IconFile={os.path.relpath(icon, work)}",
            "-D",
            "Win64=yes",
            "-o",
            out.resolve(),
            WXS,
            os.path.relpath(fragment, work),
        ],
        what="wixl",
        cwd=work,
    )
    # wixl ignores Property/@Secure and writes its own SecureCustomProperties (the upgrade
    # properties); our public properties must be in that list too, or a managed install
    # (GPO, SCCM) drops them on the way to the elevated sequence.
    current = read_property(out, "SecureCustomProperties") or ""
    names = [n for n in current.split(";") if n]
    names += [n for n in SECURE_PROPERTIES if n not in names]
    if not all(_PROPERTY_NAME.fullmatch(n) for n in names):
        raise BuildError(f"unexpected SecureCustomProperties in {out}: {current!r}")
    value = ";".join(names)  # property names only (checked above): safe inside the quotes
    run(
        [
            msibuild,
            out,
            "-q",
            f"UPDATE Property SET Value='{value}' WHERE Property='SecureCustomProperties'",  # noqa: S608
        ],
        what="msibuild (SecureCustomProperties)",
    )
    # wixl also ignores MajorUpgrade/@AllowSameVersionUpgrades: without VersionMaxInclusive
    # a rebuilt package of the same version would install beside the old one (two entries
    # in Programs and Features) instead of replacing it. Attributes is part of the table's
    # key, so the row is replaced rather than updated.
    rows = [r for r in read_table(out, "Upgrade") if r["ActionProperty"] == "WIX_UPGRADE_DETECTED"]
    if len(rows) != 1 or not _GUID.fullmatch(rows[0]["UpgradeCode"]):
        raise BuildError(f"{out}: expected one WIX_UPGRADE_DETECTED row in Upgrade, got {rows}")
    if rows[0]["VersionMax"] != version:
        raise BuildError(f"{out}: the upgrade row stops at {rows[0]['VersionMax']}, not {version}")
    code = rows[0]["UpgradeCode"]
    run(
        [
            msibuild,
            out,
            "-q",
            "DELETE FROM Upgrade WHERE ActionProperty='WIX_UPGRADE_DETECTED'",
            "-q",
            # checked above: a GUID, a numeric version and an int, nothing to escape
            "INSERT INTO Upgrade (UpgradeCode, VersionMax, Attributes, ActionProperty) "  # noqa: S608
            f"VALUES ('{code}', '{version}', {UPGRADE_ATTRIBUTES:d}, 'WIX_UPGRADE_DETECTED')",
        ],
        what="msibuild (Upgrade)",
    )
    # wixl writes Root="HKMU" as 4, which is no root at all; Windows Installer's value for
    # "HKLM or HKCU, following ALLUSERS" is -1.
    run(
        [msibuild, out, "-q", "UPDATE Registry SET Root=-1 WHERE Root=4"],
        what="msibuild (Registry HKMU)",
    )
    return out


def read_table(msi: Path, table: str) -> list[dict[str, str]]:
    """The rows of one table of an MSI, as `msiinfo export` gives them (empty cell: "").

    Raises:
        BuildError: msiinfo is missing or cannot read the file or the table.
    """
    msiinfo = require_tool("msiinfo", "apt-get install msitools")
    # a table with binary columns (Icon, Binary) is exported with its streams written
    # to files in a folder named after the table: in a scratch folder, not the caller's
    with tempfile.TemporaryDirectory(prefix="zgoda-msiinfo-") as scratch:
        text = run(
            [msiinfo, "export", msi.resolve(), table],
            what=f"msiinfo export {table}",
            cwd=Path(scratch),
        )
    # An .idt file: column names, column types, then the table name and keys; then rows.
    lines = text.splitlines()
    if len(lines) < 3:
        raise BuildError(f"msiinfo export {table}: unexpected output {text[:200]!r}")
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[3:]]


def read_property(msi: Path, name: str) -> str | None:
    """One value of the MSI's Property table, or None when absent.

    Raises:
        BuildError: msiinfo is missing or cannot read the file.
    """
    for row in read_table(msi, "Property"):
        if row["Property"] == name:
            return row["Value"]
    return None


def build_with_wix(staging: Path, work: Path, icon: Path, version: str, out: Path) -> Path:
    """Build the MSI with the WiX toolset v3 (Windows): heat, candle, light.

    Raises:
        BuildError: a WiX tool is missing or fails.
    """
    wix_bin = Path(os.environ["WIX"]) / "bin" if "WIX" in os.environ else None

    def tool(name: str) -> str:
        if wix_bin is not None and (wix_bin / f"{name}.exe").is_file():
            return str(wix_bin / f"{name}.exe")
        return require_tool(name, "install the WiX toolset v3 (it sets %WIX%)")

    harvest = work / "files.wxs"
    run(
        [
            tool("heat"),
            "dir",
            staging / CONTENTS_DIR,
            "-nologo",
            "-ag",
            "-sfrag",
            "-sreg",
            "-scom",
            "-cg",
            "AgentFiles",
            "-dr",
            "INSTALLDIR",
            "-var",
            "var.HarvestDir",
            "-out",
            harvest,
        ],
        what="heat",
    )
    objects = work / "obj"
    objects.mkdir(exist_ok=True)
    run(
        [
            tool("candle"),
            "-nologo",
            "-arch",
            "x64",
            f"-dVersion={version}",
            f"-dSourceDir={staging}",
            f"-dIconFile={icon}",
            f"-dHarvestDir={staging / CONTENTS_DIR}",
            "-dWin64=yes",
            "-out",
            f"{objects}{os.sep}",
            WXS,
            harvest,
        ],
        what="candle",
    )
    run(
        [tool("light"), "-nologo", "-out", out, objects / "agent.wixobj", objects / "files.wixobj"],
        what="light",
    )
    return out


def build(
    out_dir: Path,
    *,
    version: str | None = None,
    pyinstaller_dist: Path | None = None,
    work: Path | None = None,
    toolchain: Toolchain | None = None,
) -> Path:
    """Build the agent's MSI; return its path.

    `pyinstaller_dist` reuses an existing PyInstaller folder instead of building one.

    Raises:
        BuildError: any step fails; the message names the step.
    """
    toolchain = toolchain or Toolchain.for_platform()
    product_version = msi_version(version or package_version())
    work = (work or ROOT / "build" / "msi").resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    icon = write_icon(work / "zgoda.ico")
    if pyinstaller_dist is None:
        pyinstaller_dist = run_pyinstaller(work, icon, product_version)
    staging = stage(pyinstaller_dist, work / f"stage-{product_version}")
    if toolchain.name == "wix":
        out = out_dir / f"zgoda-agent-{product_version}-x64.msi"
        return build_with_wix(staging, work, icon, product_version, out)
    out = out_dir / f"zgoda-agent-{product_version}-linux-payload.msi"
    return build_with_wixl(staging, work, icon, product_version, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the MSI and print its path; exit 1 with a message on failure."""
    parser = argparse.ArgumentParser(prog="zgoda-build-msi", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the MSI goes")
    parser.add_argument("--version", help="product version (default: pyproject.toml's)")
    parser.add_argument(
        "--pyinstaller-dist", type=Path, help="reuse this PyInstaller folder instead of building"
    )
    parser.add_argument("--work", type=Path, help="build folder (default: build/msi)")
    parser.add_argument(
        "--toolchain", choices=("wixl", "wix"), help="default: wix on Windows, wixl elsewhere"
    )
    args = parser.parse_args(argv)
    try:
        msi = build(
            args.out,
            version=args.version,
            pyinstaller_dist=args.pyinstaller_dist,
            work=args.work,
            toolchain=Toolchain(args.toolchain) if args.toolchain else None,
        )
    except BuildError as exc:
        print(f"zgoda-build-msi: {exc}", file=sys.stderr)
        return 1
    print(msi)
    return 0


if __name__ == "__main__":
    sys.exit(main())
