"""The agent side of `bench.stream`, in its own process (as on a real PC).

    python -m bench.stream_agent CODE SAMPLES_DIR   (config from ZGODA_* variables)

Runs the real agent engine (`SessionRunner`) with a consent UI that answers
"view only", so the benchmark's CPU and latency figures are those of a separate
agent process, not of threads that share an interpreter (and its GIL) with the
console. While the file `SAMPLES_DIR/measuring` exists, every fifth captured
frame that is sent is copied and handed to a writer thread, which writes it to
`SAMPLES_DIR/<frame id>.raw` (BGRA, renamed into place when complete), at most
`MAX_PENDING` at a time, for the console side to compare with what it decoded.
The capture thread only copies (~2 ms): writing 8 MB there stalled every fifth
frame and the ones behind it, which the benchmark then counted against zgoda.
The CPU this costs (the copy and the writer thread) is written to
`SAMPLES_DIR/hook-cpu` so the benchmark can take it out of the agent's figure.
Ends when the session ends, or on SIGTERM.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
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
        self._hook_cpu = 0.0  # capture thread: the copies
        self._writer_cpu = 0.0  # the writer thread, all of it
        self._queue: queue.Queue[tuple[int, npt.NDArray[np.uint8]]] = queue.Queue(maxsize=2)
        self._lock = threading.Lock()
        threading.Thread(target=self._write, name="bench-sampler", daemon=True).start()

    def __call__(self, frame_id: int, bgra: npt.NDArray[np.uint8]) -> None:
        if frame_id % SAMPLE_EVERY or not (self.directory / "measuring").exists():
            return
        started = time.thread_time()
        if not self._queue.full():  # else the writer is behind: this one is not sampled
            # a copy: `bgra` may be the stream's own buffer, overwritten by the next look
            self._queue.put_nowait((frame_id, bgra.copy()))
        self._hook_cpu += time.thread_time() - started
        self._report()

    def _write(self) -> None:
        while True:
            frame_id, pixels = self._queue.get()
            if len(list(self.directory.glob("*.raw"))) < MAX_PENDING:
                partial = self.directory / f"{frame_id}.part"
                partial.write_bytes(pixels.data)
                if (self.directory / "measuring").exists():
                    partial.rename(self.directory / f"{frame_id}.raw")
                else:  # the window closed while it was written: nobody will compare it
                    partial.unlink(missing_ok=True)
            self._writer_cpu = time.thread_time()  # this thread's own, since it started
            self._report()

    def _report(self) -> None:
        # whole or not at all: the benchmark may read it at any moment
        with self._lock:
            partial = self.directory / "hook-cpu.part"
            partial.write_text(f"{self._hook_cpu + self._writer_cpu:.6f}")
            partial.replace(self.directory / "hook-cpu")


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
