"""A relay whose data dir is a tiny tmpfs in a private mount namespace (root only).

`unshare --mount --propagation private` gives the relay process a mount namespace of
its own; the tmpfs is mounted inside it, over an empty directory of the test's, so
nothing is mounted on the host and the filesystem disappears with the process. The
test writes its filler through `/proc/PID/root/...` (the process's view of the tree);
SQLite, though, resolves that magic link to "/" and would open the host's empty
directory, so `cli()` and `query()` run inside the namespace with `nsenter --mount`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.relay import (
    DEFAULT_NAME,
    DEFAULT_ORG,
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    REPO,
    TEST_DEFAULTS,
    RelayProcess,
    _read_line,
    add_consultant,
)

MOUNT = 'mount -t tmpfs -o "size=$1,mode=0700" zgoda-test-disk "$2" && cp -a "$3"/. "$2"/'
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private", "sh", "-c")
FILLER = "filler"
CHUNK = 64 * 1024


def why_no_small_disk(scratch: Path) -> str | None:
    """None when a tmpfs can be mounted in a private mount namespace here, else why not."""
    if os.geteuid() != 0:
        return "needs root: mounting a small tmpfs (in a private mount namespace) takes it"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    scratch.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        [*PRIVATE_MOUNTS, 'mount -t tmpfs -o size=64k zgoda-test-probe "$1"', "sh", str(scratch)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


@dataclass
class NamespacedRelay(RelayProcess):
    """A relay whose data dir (`disk`) exists only in its own mount namespace."""

    disk: Path = Path()

    def _inside(self, *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", *command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`zgoda relay ARGS` on the relay's own data dir, inside its mount namespace."""
        command = [sys.executable, "-m", "protocol.cli", "relay", *args]
        return self._inside(*command, "--data-dir", str(self.disk), stdin=stdin)

    def query(self, sql: str) -> list[Any]:
        """Rows of one SQL statement on the relay's database, opened read-only inside
        the namespace. Raises AssertionError when it fails."""
        script = (
            "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1], uri=True); "
            "print(json.dumps(db.execute(sys.argv[2]).fetchall())); db.close()"
        )
        uri = f"file:{self.disk / 'relay.sqlite3'}?mode=ro"
        result = self._inside(sys.executable, "-c", script, uri, sql)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))


@contextlib.contextmanager
def relay_on_small_disk(
    base: Path, size: str, config: Mapping[str, Any] | None = None
) -> Iterator[NamespacedRelay]:
    """A relay (one consultant, TEST_DEFAULTS + `config`) on a `size` tmpfs; stopped by PID.

    `data_dir` is the tmpfs as seen through /proc/PID/root (for plain file access),
    `disk` its path inside the namespace, where `cli()` and `query()` run.

    Raises RuntimeError when the relay does not start.
    """
    staging, disk = base / "staging", base / "disk"
    staging.mkdir(parents=True)
    disk.mkdir()
    settings = {**TEST_DEFAULTS, **(config or {})}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    (staging / "relay.toml").write_text("\n".join(lines) + "\n")
    add_consultant(staging, DEFAULT_USER, DEFAULT_NAME, DEFAULT_PASSWORD)
    log_path = base / "relay.log"
    serve = [sys.executable, "-m", "protocol.cli", "relay", "serve", "--data-dir", str(disk)]
    serve += ["--port", "0", "--org", DEFAULT_ORG]
    mount_args = [size, str(disk), str(staging)]
    with log_path.open("a") as log:
        # unshare and sh exec in place: the PID is the relay's, stopped by it below
        proc = subprocess.Popen(
            [*PRIVATE_MOUNTS, MOUNT + ' && shift 3 && exec "$@"', "sh", *mount_args, *serve],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
        )
    process = NamespacedRelay(
        disk=disk,
        data_dir=Path(f"/proc/{proc.pid}/root") / disk.relative_to("/"),
        org=DEFAULT_ORG,
        url="",
        proc=proc,
        log_path=log_path,
        pubkey="",
    )
    try:
        process.url = _read_line(proc, "zgoda relay listening on ")
        status, info = process.api("GET", "/api/relay")
        assert status == 200, info
        process.pubkey = info["public_key"]
        yield process
    finally:
        process.stop()


def fill(directory: Path) -> int:
    """Write a filler file until the filesystem says ENOSPC; return its size.

    Bounded: a tmpfs of N bytes takes at most N / 4 KiB + a few writes. Raises
    AssertionError when the disk never fills (no size limit took effect).
    """
    written = 0
    with (directory / FILLER).open("wb", buffering=0) as filler:
        for size in (CHUNK, 4096, 1):  # then a page, then a byte: no slack left
            for _ in range(100_000):
                try:
                    written += filler.write(b"\0" * size) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            else:
                raise AssertionError(f"{directory} did not fill after {written} bytes")
    return written


def free(directory: Path) -> None:
    (directory / FILLER).unlink()
