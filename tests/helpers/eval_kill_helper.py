"""Test-only runner: ``corrmae eval-all`` that SIGKILLs its own process while writing its K-th DAVIS PNG.

    python -m tests.helpers.eval_kill_helper K <eval-all arguments>

A real crash mid-video, nothing cleaned up (like ``tests.helpers.resume_helpers.KillAtStep`` for training).
"""

import os
import signal
import sys

import callbacks.evaluation.davis as davis_eval
from lightning_modules.tools.eval_all import main


def run_and_die_at_png(k: int, argv: list[str]) -> None:
    """Run eval-all; the k-th palette PNG write kills the process instead."""
    real, calls = davis_eval.write_palette_png, []

    def write(path, mask, palette):
        calls.append(path)
        if len(calls) == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, mask, palette)

    davis_eval.write_palette_png = write
    main(argv)


if __name__ == "__main__":
    run_and_die_at_png(int(sys.argv[1]), sys.argv[2:])
