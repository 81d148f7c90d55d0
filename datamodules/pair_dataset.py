"""The frame-pair dataset: one item is ONE video, decoded once, giving ``repeated_sampling`` (R) pairs.

Sampling (SiamMAE §3, Table 3b): ``gap ~ U{gap_min..gap_max}`` with BOTH bounds inclusive (4..48 by
default; many reproductions use an exclusive ``randint`` upper bound and silently get 4..47). When a
video is shorter than ``gap_max + 1`` frames the range is clamped to ``U{min(gap_min, n-1)..n-1}``;
videos with fewer than 2 frames are never sampled. Then ``start ~ U{0..n-1-gap}``, and frame 2 (the
later one) is ``start + gap``.

Repeated sampling as MAE-ST means it (``repeat_aug``): the video is opened once, the 2R frames of its R
pairs are read in one sorted ``read`` call, and each pair gets its own gap, start and augmentation. The
R pairs travel together: the loader batches ``batch_size / R`` videos and ``collate_pairs`` flattens them,
so they sit in the same batch. An epoch is N videos, i.e. N x R pairs, as before; multiplying the length
by R under a shuffling sampler would instead put the repeats in different batches, each paying a decode.

Every random draw of item ``index`` in ``epoch`` comes from a generator seeded by ``(seed, epoch, index)``,
so the data is a pure function of those three numbers, whatever the worker, rank or resume point. With
R = 1 the draws are those of one pair per item (the stream of the one-pair-per-item dataset).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers import Backend, FrameFolderReader, VideoReadError, open_reader
from datamodules.sampling import gap_bounds, sample_generator, sample_pair
from datamodules.transforms import PairedTransform

log = logging.getLogger(__name__)
SKIP_SLOTS = 64  # one skip counter per worker (slot 0 = main process): no write races between workers


@dataclass(frozen=True)
class VideoSource:
    """A video file or frame folder, with its decoded length and frame rate when an index gave them."""

    path: str
    num_frames: int | None = None
    fps: float | None = None


class _TooShort(Exception):
    """A video with fewer than 2 frames (found at load time when there is no index)."""


def collate_pairs(items: Sequence[dict]) -> dict:
    """Flatten per-video items (R pairs each) into one batch of pairs.

    Tensors are concatenated along dim 0 and lists (paths, JPEG bytes) chained, so ``batch_size / R`` videos
    give ``batch_size`` pairs, each video's pairs next to each other.
    """
    out = {}
    for key, first in items[0].items():
        if isinstance(first, torch.Tensor):
            out[key] = torch.cat([item[key] for item in items])
        else:
            out[key] = [v for item in items for v in item[key]]
    return out


class FramePairDataset(Dataset):
    """``len(sources)`` items per epoch; item ``i`` is video ``i`` with its ``repeated_sampling`` pairs.

    Items are dicts with R = ``repeated_sampling`` rows: ``frames`` uint8 (R, 2, 3, S, S) (frame 1
    earlier; normalised on the device by the data module), ``gap`` int64 (R,) (native frames; reader
    indices in ``seconds`` unit), ``video`` list of R paths, ``index`` int64 (R,) (the video's index). With
    ``jpeg_bytes`` frame folders are not decoded: ``jpeg`` holds the 2R files' bytes (uint8 1-D tensors,
    frame order) and ``params`` (R, 8) the augmentation drawn for each pair (``PairedTransform.draw``),
    for the device to decode and apply (``device_decode``). A key is an int (uses ``self.epoch``) or an
    ``(epoch, index)`` tuple from ``EpochSampler``.

    An unreadable video raises ``VideoReadError`` naming the file when ``strict``; otherwise it is logged
    once per process, counted in ``skipped``, and a replacement video is drawn from the item's own
    generator (still deterministic), up to ``max_retries`` times.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        transform: PairedTransform,
        backend: Backend = "auto",
        gap_min: float = 4,
        gap_max: float = 48,
        gap_unit: Literal["frames", "seconds"] = "frames",
        frame_step: int = 1,
        folder_fps: float = 30.0,
        repeated_sampling: int = 2,
        seed: int = 0,
        strict: bool = False,
        max_retries: int = 10,
        jpeg_bytes: bool = False,
    ) -> None:
        if repeated_sampling < 1:
            raise ValueError(f"repeated_sampling must be >= 1, got {repeated_sampling}")
        self.sources, self.transform, self.backend = list(sources), transform, backend
        self.gap_min, self.gap_max, self.gap_unit = gap_min, gap_max, gap_unit
        self.frame_step, self.folder_fps = frame_step, folder_fps
        self.repeated_sampling, self.seed, self.strict = repeated_sampling, seed, strict
        self.max_retries, self.jpeg_bytes = max_retries, jpeg_bytes
        self.epoch = 0
        # Shared memory, so counts made in DataLoader workers are visible in the main process.
        self._skips = torch.zeros(SKIP_SLOTS, dtype=torch.int64).share_memory_()
        self._logged: set[str] = set()

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def pairs_per_epoch(self) -> int:
        """Pairs in one epoch: videos x ``repeated_sampling``."""
        return len(self.sources) * self.repeated_sampling

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (``EpochSampler`` passes it with each key instead)."""
        self.epoch = epoch

    @property
    def skipped(self) -> int:
        """Videos replaced because they were unreadable or had fewer than 2 frames (all workers)."""
        return int(self._skips.sum())

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        g = sample_generator(self.seed, epoch, index)
        video = index % len(self.sources)
        for _ in range(self.max_retries + 1):
            source = self.sources[video]
            try:
                item = self._load_video(source, g)
            except (VideoReadError, _TooShort) as e:
                if self.strict and isinstance(e, VideoReadError):
                    raise
                self._note_skip(source, e)
                video = int(torch.randint(len(self.sources), (), generator=g))
                continue
            r = self.repeated_sampling
            return {**item, "video": [source.path] * r, "index": torch.full((r,), index, dtype=torch.int64)}
        raise RuntimeError(
            f"sample {index}: {self.max_retries + 1} videos in a row were unreadable (last: {source.path}); "
            "check the data or the index (see the warnings above)"
        )

    def _load_video(self, source: VideoSource, g: torch.Generator) -> dict:
        """One open and one read for all R pairs; then each pair's augmentation, in draw order."""
        reader = open_reader(source.path, self.backend, num_frames=source.num_frames, fps=self._folder_rate())
        if reader.num_frames < 2:
            raise _TooShort(f"{source.path}: {reader.num_frames} frame(s), a pair needs 2")
        step = self.frame_step if isinstance(reader, FrameFolderReader) else 1
        lo, hi = gap_bounds(self.gap_min, self.gap_max, self.gap_unit, reader.fps, step)
        if self.jpeg_bytes:
            return self._jpeg_item(reader, lo, hi, step, g)
        pairs = [sample_pair(reader.num_frames, lo, hi, g) for _ in range(self.repeated_sampling)]
        wanted = [i for start, gap in pairs for i in (start, start + gap)]  # (2R,) frame order
        frames = _read_sorted(reader, wanted)  # (2R, H, W, 3)
        # Augmentation draws follow ALL pair draws: with R = 1 that is the one-pair order (pair, then crop).
        clips = [self.transform(frames[2 * r : 2 * r + 2], g) for r in range(len(pairs))]
        return {"frames": torch.stack(clips), "gap": self._gaps(pairs, step)}  # (R, 2, 3, S, S)

    def _jpeg_item(self, reader, lo: int, hi: int, step: int, g: torch.Generator) -> dict:
        """JPEG bytes of the 2R frames and each pair's augmentation parameters (``decode_on: gpu``)."""
        if not isinstance(reader, FrameFolderReader):
            raise VideoReadError(reader.path, "decode_on='gpu' reads JPEG frame folders, not video files")
        pairs = [sample_pair(reader.num_frames, lo, hi, g) for _ in range(self.repeated_sampling)]
        width, height = reader.size
        params = [self.transform.draw(height, width, g) for _ in pairs]
        data = reader.read_bytes([i for start, gap in pairs for i in (start, start + gap)])
        return {"jpeg": data, "params": torch.stack(params), "gap": self._gaps(pairs, step)}

    def _gaps(self, pairs: list[tuple[int, int]], step: int) -> torch.Tensor:
        scale = step if self.gap_unit == "frames" else 1
        return torch.tensor([gap * scale for _, gap in pairs], dtype=torch.int64)

    def _folder_rate(self) -> float:
        """File rate of frame folders: native rate over native frames per file."""
        return self.folder_fps / self.frame_step

    def _note_skip(self, source: VideoSource, error: Exception) -> None:
        info = torch.utils.data.get_worker_info()
        self._skips[0 if info is None else 1 + info.id % (SKIP_SLOTS - 1)] += 1
        if source.path not in self._logged:  # once per file and process: a bad file is not log spam
            self._logged.add(source.path)
            log.warning("skipping video (strict=False): %s", error)


def _read_sorted(reader, wanted: list[int]) -> np.ndarray:
    """Frames at ``wanted`` (any order, repeats) from ONE read of the sorted unique indices.

    Sorted, a decoder only moves forward (H.264 random access costs a walk from the previous key frame).
    """
    unique = sorted(set(wanted))
    frames = reader.read(unique)  # (U, H, W, 3)
    row = {frame: i for i, frame in enumerate(unique)}
    return frames[[row[i] for i in wanted]]  # (2R, H, W, 3)
