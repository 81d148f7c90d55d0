"""Crash-safe checkpoint writing: a checkpoint file is either the old one or the complete new one.

Lightning's ``TorchCheckpointIO`` serialises to memory and moves a temp file from the system temp dir
into place; across file systems that move is a copy, so a crash mid-copy leaves a truncated
``last.ckpt`` (and nothing is fsync'ed). ``AtomicCheckpointIO`` writes a temp file in the target's own
directory, fsyncs it, ``os.replace``-s it over the target (atomic on POSIX within one file system) and
fsyncs the directory. A crash at any point leaves the previous checkpoint intact; only a stray
``.<name>.tmp-<pid>`` file can remain. The corrmae CLI installs it by default (``use_atomic_checkpoints``).
"""

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic (temp file in the same directory + ``os.replace``).

    Remote paths (``s3://`` etc.) keep Lightning's fsspec transaction.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: the state Lightning dumps.
            path: target file.
            storage_options: unsupported, as in ``TorchCheckpointIO``.
        """
        if "://" in str(path) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def use_atomic_checkpoints(trainer: L.Trainer) -> None:
    """Swap the trainer's default ``TorchCheckpointIO`` for ``AtomicCheckpointIO`` (user plugins are kept)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
