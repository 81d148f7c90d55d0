"""Test-only callbacks for the DDP rank-loss test, given to the CLI subprocess with ``--config``."""

import os
import signal
import time

import lightning as L

from tests.helpers.resume_helpers import StepRecorder


class RankStepRecorder(StepRecorder):
    """``StepRecorder`` writing one file per rank: ``<path>.rank<r>``."""

    def setup(self, trainer, pl_module, stage) -> None:  # noqa: D102
        self.path = f"{self.base}.rank{trainer.global_rank}"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.base = path


class KillRankAtStep(L.Callback):
    """SIGKILLs global rank ``rank`` when the batch after optimiser step ``step`` starts.

    It writes the kill time to ``stamp`` first, so the test can measure how long the survivor takes to exit.
    """

    def __init__(self, rank: int, step: int, stamp: str) -> None:
        self.rank, self.step, self.stamp = rank, step, stamp

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            with open(self.stamp, "w") as f:
                f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
