"""What every frame reader shares: its errors, its protocol and the checks on files and frame indices.

The video readers (``readers``, ``torchcodec_reader``) and the frame-folder reader all import from here, and
``readers.open_reader`` imports them, so none of them imports another reader module.
"""

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoReadError(RuntimeError):
    """A video or frame file that cannot be opened or decoded (corrupt, truncated, empty, missing)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # pickled across worker processes: rebuild from both fields, not the message
        return type(self), (self.path, self.reason)


class BackendUnavailableError(ImportError):
    """The requested optional decoding backend is not installed."""


class VideoReader(Protocol):
    """What the frame-pair dataset needs from a video: its length, frame rate and batched random access."""

    path: str
    num_frames: int
    fps: float

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (T, H, W, 3) RGB, in one call."""
        ...


def import_backend(name: str, install_hint: str):
    """Import an optional decoder, or raise an error that says what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise BackendUnavailableError(f"backend {name!r} is not installed: {install_hint}") from e


def check_file(path: Path) -> None:
    """Raise ``VideoReadError`` unless ``path`` is a non-empty file (decoders' own errors are cryptic)."""
    if not path.is_file():
        raise VideoReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")


def check_indices(path: str, indices: Sequence[int], num_frames: int) -> list[int]:
    """``indices`` as ints, or an error naming ``path`` when there are none or any is out of range."""
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError(f"{path}: read() needs at least one index")
    bad = [i for i in idx if not 0 <= i < num_frames]
    if bad:
        raise VideoReadError(path, f"frame indices {bad} out of range for {num_frames} frames")
    return idx
