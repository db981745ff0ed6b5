"""Run an atheris harness in a child process for a bounded time and summarise it."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHILD_FLAG = "--atheris-child"


def fuzz_main(module: str, harness: Callable[[list[str]], None], argv: list[str] | None) -> int:
    """`python -m MODULE --seconds N`: run `harness` under libFuzzer in a child for N
    seconds and print `inputs=… crashes=… artifacts=…`. Returns 1 if a crash was found."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == CHILD_FLAG:
        harness([sys.argv[0], *argv[1:]])
        return 0
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time (bounded)")
    parser.add_argument("--artifacts", type=Path, default=None, help="where crash inputs go")
    args = parser.parse_args(argv)
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="zgoda-fuzz-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        module,
        CHILD_FLAG,
        f"-max_total_time={args.seconds}",
        f"-artifact_prefix={artifacts}/",
        "-rss_limit_mb=2048",
        "-timeout=10",
        "-print_final_stats=1",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=args.seconds + 120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    log = result.stderr
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(
        r"Done (\d+) runs", log
    )
    crashes = sorted(p.name for p in artifacts.iterdir())
    elapsed = time.monotonic() - started
    print(
        f"{module}: inputs={runs[-1] if runs else '?'} seconds={elapsed:.0f} "
        f"crashes={len(crashes)} exit={result.returncode} artifacts={artifacts}"
    )
    if crashes or result.returncode != 0:
        print(log[-4000:], file=sys.stderr)
        return 1
    return 0
