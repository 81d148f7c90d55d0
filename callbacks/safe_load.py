"""Loading checkpoint and weight files that users hand us, without running code from them.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a crafted ``.pth`` / ``.ckpt`` runs code
the moment it is opened. Every corrmae entry point (eval-all ``--weights`` / ``--ckpt``, ``fit --ckpt_path``,
``export``) loads through ``load_torch_file``: ``weights_only=True`` plus a short allow-list of plain-data
classes that corrmae's, Lightning's and the DINO / MAE releases' own checkpoints contain. Anything else is
refused with an error naming the file, the offending globals and the opt-in flag ``--trust-checkpoint``;
only that flag (``trust=True``) falls back to a full unpickle, for files the user trusts. The class path a
checkpoint records is never imported: it may only name a registered corrmae system
(``lightning_modules.systems.registered_class``).

Why it lives in ``callbacks/``: the checkpoint plugin (``checkpointing.py``) loads through it, and keeping it
free of the systems keeps the packages layered: ``datamodules`` <- ``callbacks`` <- ``lightning_modules``.
"""

import argparse
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.data import AttributeDict

TRUST_FLAG = "--trust-checkpoint"


def safe_globals() -> list[type]:
    """The classes allowed besides torch's own weights-only set: plain containers of data, no behaviour.

    ``argparse.Namespace`` holds the training arguments in DINO's and MAE's full checkpoints;
    ``AttributeDict`` is Lightning's ``hparams`` dict; paths appear in hyper-parameters.
    """
    return [
        argparse.Namespace,
        AttributeDict,
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    ]


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A file needs globals outside the allow-list; loading it would execute code from it."""


def _offending_globals(source: Any, err: Exception) -> list[str]:
    """The disallowed globals, read statically from the pickle (nothing is executed), else from ``err``."""
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in safe_globals()}
    try:
        if hasattr(source, "seek"):
            source.seek(0)
        found = torch.serialization.get_unsafe_globals_in_checkpoint(source)
    except Exception:  # legacy (non-zip) files cannot be disassembled; use the loader's message
        found = re.findall(r"GLOBAL ([\w.]+)", str(err))
    return sorted({g for g in found if g not in allowed}) or re.findall(r"GLOBAL ([\w.]+)", str(err))


def load_torch_file(
    source: Any, trust: bool = False, map_location: Any = "cpu", name: str | None = None
) -> Any:
    """``torch.load`` a user-given file safely (weights only + the allow-list) unless ``trust``.

    Args:
        source: a path, or an open binary file (remote checkpoints via fsspec).
        trust: the user passed ``--trust-checkpoint``: full unpickling, which can run code from the file.
        map_location: as in ``torch.load``.
        name: how to name the file in errors (default: the path).

    Raises:
        UntrustedCheckpointError: naming the file, the disallowed globals and ``--trust-checkpoint``.
    """
    label = name or str(source)
    if trust:  # --trust-checkpoint: the user's explicit opt-in, the only full unpickling in corrmae
        return torch.load(source, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        bad = _offending_globals(source, err)
        raise UntrustedCheckpointError(
            f"{label}: refusing to load: it needs the Python global(s) {', '.join(bad) or '(unknown)'}, "
            f"which are not plain weights and could run code when unpickled. If you trust this file, pass "
            f"{TRUST_FLAG} to load it with full unpickling."
        ) from None


def load_state_file(path: str | Path, trust: bool = False) -> Any:
    """A weights file (``.safetensors`` read as tensors only; anything else through ``load_torch_file``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    return load_torch_file(path, trust)
