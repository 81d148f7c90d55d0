"""Crash-safe checkpoint writing: a checkpoint file is either the old one or the complete new one.

Lightning's ``TorchCheckpointIO`` serialises to memory and moves a temp file from the system temp dir
into place; across file systems that move is a copy, so a crash mid-copy leaves a truncated
``last.ckpt`` (and nothing is fsync'ed). ``AtomicCheckpointIO`` writes a temp file in the target's own
directory, fsyncs it, ``os.replace``-s it over the target (atomic on POSIX within one file system) and
fsyncs the directory. A crash at any point leaves the previous checkpoint intact; only a stray
``.<name>.tmp-<pid>`` file can remain. The corrmae CLI installs it by default (``use_atomic_checkpoints``).

Loading (``fit --ckpt_path``) is weights-only with corrmae's allow-list (``callbacks.safe_load``): a
checkpoint that needs other Python globals is refused unless the CheckpointIO was built with ``trust=True``
(the CLI's ``--trust-checkpoint``).
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from callbacks.safe_load import load_torch_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic (temp file in the same directory + ``os.replace``).

    Remote paths (``s3://`` etc.) keep Lightning's fsspec transaction.

    Args:
        trust: load checkpoints with full unpickling (only for files the user trusts); default weights-only.
    """

    def __init__(self, trust: bool = False) -> None:
        super().__init__()
        self.trust = trust

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        """Load ``path`` weights-only (allow-listed globals) unless ``trust``; ``weights_only`` is ignored.

        Why ignored: Lightning passes ``None`` (meaning "unpickle everything" for local files); only the
        user's explicit ``--trust-checkpoint`` may lift the restriction.
        """
        fs = get_filesystem(path)
        if not fs.exists(path):
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        with fs.open(path, "rb") as f:
            return load_torch_file(f, self.trust, map_location or "cpu", name=str(path))

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
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(f)`` so that readers see the old file or the whole new one.

    A temp file in the same directory (so the rename cannot cross file systems), fsync'd, then
    ``os.replace``d over ``path``; a failure or kill mid-write leaves ``path`` untouched.
    """
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
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


def use_atomic_checkpoints(trainer: L.Trainer, trust: bool = False) -> None:
    """Swap the trainer's default ``TorchCheckpointIO`` for ``AtomicCheckpointIO`` (user plugins are kept)."""
    if type(trainer.strategy.checkpoint_io) in (TorchCheckpointIO, AtomicCheckpointIO):
        trainer.strategy.checkpoint_io = AtomicCheckpointIO(trust)
