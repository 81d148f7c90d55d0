"""Test-only callbacks for the resume tests, given to the CLI subprocess with ``--trainer.callbacks``."""

import json
import os
import signal

import lightning as L
import torch


class StepRecorder(L.Callback):
    """Appends one JSON line per optimiser step: step, epoch, batch_idx, sample indices, exact loss (hex)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        params = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "index": batch["index"].tolist(),
            "loss": float(loss).hex(),  # hex: exact float, no rounding in the text
            "param_sum": float(params.double().sum()).hex(),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


class KillAtStep(L.Callback):
    """SIGKILLs its own process when the batch after optimiser step ``step`` starts.

    By then step ``step``'s checkpoint is on disk (ModelCheckpoint saves in ``on_train_batch_end``) and
    the loader has already fetched the next batch: a real crash, with nothing cleaned up.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
