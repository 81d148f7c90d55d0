"""Pure sampling pieces of the frame-pair data: per-sample generators, gap ranges, pairs, the sampler.

Kept free of I/O so each is unit-testable in isolation (the dataset composes them).
"""

import math
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DistributedSampler


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on ``(seed, epoch, index)`` (hashed, so nearby keys are unrelated)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def gap_bounds(
    gap_min: float, gap_max: float, unit: Literal["frames", "seconds"], fps: float, frame_step: int = 1
) -> tuple[int, int]:
    """Inclusive gap range in reader indices (frames; files for frame folders).

    Args:
        gap_min: lower bound, in native frames or seconds.
        gap_max: upper bound (inclusive).
        unit: ``frames`` or ``seconds`` (converted with this video's ``fps``).
        fps: rate of the reader's indices (frames per second; files per second for frame folders).
        frame_step: native frames per reader index (5 for YouTube-VOS train folders, 1 for video files).
            Only used in ``frames`` unit: the range becomes ``ceil(gap_min/step)..floor(gap_max/step)``.

    Returns:
        ``(lo, hi)`` with ``1 <= lo <= hi``.
    """
    per_index = fps if unit == "seconds" else 1.0 / frame_step
    lo = max(1, math.ceil(gap_min * per_index - 1e-9))
    hi = max(lo, math.floor(gap_max * per_index + 1e-9))
    return lo, hi


def sample_pair(num_frames: int, lo: int, hi: int, g: torch.Generator) -> tuple[int, int]:
    """``(start, gap)`` with ``gap ~ U{lo..hi}`` clamped to the video and ``start ~ U{0..n-1-gap}``."""
    if num_frames < 2:
        raise ValueError(f"a pair needs at least 2 frames, got {num_frames}")
    hi = min(hi, num_frames - 1)
    lo = min(lo, hi)
    gap = int(torch.randint(lo, hi + 1, (), generator=g))  # +1: the upper bound is INCLUSIVE
    start = int(torch.randint(0, num_frames - gap, (), generator=g))
    return start, gap


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled with ``seed`` and the epoch) that yields ``(epoch, index)`` keys.

    Lightning calls ``set_epoch`` on it and keeps it as is under DDP (it already shards by rank), and
    the epoch travels with each key, so persistent workers never see a stale epoch. ``start`` skips the
    first samples of the next iteration without loading them (``ResumableDataLoader`` sets it on resume).
    """

    start: int = 0  # samples of this rank's shard to skip on the next iteration only (mid-epoch resume)

    def __iter__(self):
        epoch, start = self.epoch, self.start
        self.start = 0
        indices = list(super().__iter__())[start:]
        return ((epoch, int(i)) for i in indices)


def worker_init_fn(worker_id: int) -> None:
    """One intra-op thread per worker: decoding and resizing in N workers must not oversubscribe cores."""
    torch.set_num_threads(1)
