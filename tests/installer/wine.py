"""A throwaway wine prefix to run `msiexec` in, and to read its registry and files back.

Measured here (see PLATFORM.md): `wineboot --init` takes ~5-8 s; every msiexec call then
takes ~0.3-1.5 s, *provided* the prefix uses the null graphics driver. Without a display,
wine otherwise tries to start explorer, fails, and waits 10 s for RpcSs on every msiexec.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_FAILED = 1603 & 0xFF
"""msiexec's ERROR_INSTALL_FAILURE as wine's exit status shows it (truncated to 8 bits)."""

COMMAND_TIMEOUT = 120  # seconds; the slowest step (wineboot) takes under 10 s here

# One value line of a .reg file: "Name"="text", "Name"=dword:0000001f, or "Name"=hex...
_VALUE = re.compile(
    r'"(?P<name>(?:[^"\\]|\\.)*)"='
    r'(?:"(?P<string>(?:[^"\\]|\\.)*)"|dword:(?P<dword>[0-9a-f]{8})|(?P<other>.*))'
)


def missing_wine() -> str | None:
    """Why wine cannot be used here, or None when it can."""
    for tool in ("wine", "wineserver"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install wine wine64, or `make test`)"
    return None


class WinePrefix:
    """A 64-bit wine prefix in Windows 10 mode, created in `path` and shut down by `close`.

    Every command runs with a timeout; `close` stops this prefix's wineserver (and the
    processes it started), which is what `wineserver -k` does for one WINEPREFIX.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(
            WINEPREFIX=str(path),
            WINEARCH="win64",
            WINEDEBUG="-all",
            # wine decodes its command line (msiexec PROPERTY=value) in the Unix locale;
            # without a UTF-8 one a value like "Łódź" would arrive mangled.
            LC_ALL="C.UTF-8",
            # No .NET or Gecko installers: a bare prefix is all msiexec needs.
            WINEDLLOVERRIDES="mscoree,mshtml=",
        )
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `wine ARGS...` in this prefix.

        Raises:
            subprocess.CalledProcessError: `check` and a non-zero exit.
            subprocess.TimeoutExpired: the command outlived COMMAND_TIMEOUT.
        """
        # Output goes to files, not pipes: wineserver and the services wine starts inherit
        # the caller's stdout and stderr, and a pipe would then stay open (and the call
        # would wait) until they exit.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            result = subprocess.run(
                ["wine", *args],
                env=self.env,
                # msiexec writes the product's icons under the working directory ("Icon/"):
                # keep them inside the throwaway prefix, not in the checkout.
                cwd=self.path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            completed = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check:
            completed.check_returncode()
        return completed

    def create(self) -> None:
        """Initialise the prefix: null graphics driver, Windows 10 mode.

        Raises:
            subprocess.CalledProcessError, subprocess.TimeoutExpired: wine failed.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        # One wineserver for the whole prefix, until close(): otherwise each wine command
        # starts its own and the server lingers 3 s after it.
        subprocess.run(
            ["wineserver", "-p"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )
        self.run("wineboot", "--init")
        self.run("reg", "add", r"HKCU\Software\Wine\Drivers", "/v", "Graphics", "/d", "null", "/f")
        self.run("winecfg", "/v", "win10")

    def close(self) -> None:
        """Stop this prefix's wineserver and wait until it has exited."""
        for flag in ("-k", "-w"):
            subprocess.run(
                ["wineserver", flag],
                env=self.env,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )

    @staticmethod
    def windows_path(path: Path) -> str:
        """The path as wine's Windows side sees it (drive Z: is the Unix root)."""
        return "Z:" + str(path.resolve()).replace("/", "\\")

    @property
    def drive_c(self) -> Path:
        return self.path / "drive_c"

    def msiexec(self, *args: str, log: Path) -> int:
        """Run `msiexec ARGS... /l*v LOG`; return its exit status (see INSTALL_FAILED)."""
        result = self.run("msiexec", *args, "/l*v", self.windows_path(log), check=False)
        return result.returncode

    def reg_values(self, key: str) -> dict[str, str] | None:
        """The values of one registry key (REG_DWORD as `0x1`), or None when it is absent."""
        tree = self.reg_tree(key)
        return None if tree is None else tree.get(key.upper(), {})

    def reg_tree(self, key: str) -> dict[str, dict[str, str]] | None:
        """Key path (upper case, `HKLM\\...`) -> its values, for a key and its subkeys.

        None when the key does not exist. Read through `reg export`, which writes UTF-16:
        `reg query` prints in the console's OEM code page and loses non-ASCII text.
        """
        with tempfile.TemporaryDirectory(dir=self.path) as folder:
            out = Path(folder) / "export.reg"
            result = self.run("reg", "export", key, self.windows_path(out), "/y", check=False)
            if result.returncode != 0 or not out.exists():
                return None
            text = out.read_text(encoding="utf-16")
        tree: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                name = line[1:-1].upper().replace("HKEY_LOCAL_MACHINE", "HKLM")
                current = tree.setdefault(name.replace("HKEY_CURRENT_USER", "HKCU"), {})
            elif current is not None and (match := _VALUE.fullmatch(line)):
                name = _unescape(match["name"])
                if match["string"] is not None:
                    current[name] = _unescape(match["string"])
                elif match["dword"] is not None:
                    current[name] = hex(int(match["dword"], 16))
                else:
                    current[name] = match["other"]
        return tree


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)
