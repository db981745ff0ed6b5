"""The agent side of `bench.stream`, in its own process (as on a real PC).

    python -m bench.stream_agent CODE SAMPLES_DIR   (config from ZGODA_* variables)

Runs the real agent engine (`SessionRunner`) with a consent UI that answers
"view only", so the benchmark's CPU and latency figures are those of a separate
agent process, not of threads that share an interpreter (and its GIL) with the
console. While the file `SAMPLES_DIR/measuring` exists, every fifth captured
frame that is sent is written to `SAMPLES_DIR/<frame id>.raw` (BGRA, renamed into
place before the frame is sent), at most `MAX_PENDING` at a time, for the
console side to compare with what it decoded; the CPU this costs is written to
`SAMPLES_DIR/hook-cpu` so the benchmark can take it out of the agent's figure.
Ends when the session ends, or on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.config import load_config
from agent.frontend import ConsentAnswer
from agent.runner import SessionRunner
from protocol.codes import parse_code
from tests.agent.scripted_ui import ScriptedUI

SAMPLE_EVERY = 5
MAX_PENDING = 8


class Sampler:
    """The runner's `on_capture` hook: a bounded number of sampled captures on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cpu = 0.0

    def __call__(self, frame_id: int, bgra: npt.NDArray[np.uint8]) -> None:
        if frame_id % SAMPLE_EVERY or not (self.directory / "measuring").exists():
            return
        started = time.thread_time()
        if len(list(self.directory.glob("*.raw"))) < MAX_PENDING:
            partial = self.directory / f"{frame_id}.part"
            partial.write_bytes(bgra.tobytes())
            partial.rename(self.directory / f"{frame_id}.raw")
        self.cpu += time.thread_time() - started
        (self.directory / "hook-cpu").write_text(f"{self.cpu:.6f}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    code, samples = parse_code(args[0]), Path(args[1])
    runner = SessionRunner(
        load_config(), code, ScriptedUI(ConsentAnswer.VIEW_ONLY), end_hotkey=None
    )
    runner.on_capture = Sampler(samples)
    signal.signal(signal.SIGTERM, lambda *_: runner.end())
    runner.start()
    runner.wait(None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ZGODA_LANGUAGE", "en")
    sys.exit(main())
