"""Frame pairs for SiamMAE / VideoMAC pre-training: two frames of one video, ``gap`` frames apart.

Sampling (SiamMAE §3, Table 3b): ``gap ~ U{gap_min..gap_max}`` with BOTH bounds inclusive (4..48 by
default; many reproductions use an exclusive ``randint`` upper bound and silently get 4..47). When a
video is shorter than ``gap_max + 1`` frames the range is clamped to ``U{min(gap_min, n-1)..n-1}``;
videos with fewer than 2 frames are never sampled. Then ``start ~ U{0..n-1-gap}``, and frame 2 (the
later one) is ``start + gap``.

Every random draw of sample ``index`` in ``epoch`` comes from a generator seeded by
``(seed, epoch, index)``, so the data is a pure function of those three numbers, whatever the worker,
rank or resume point. The sampler yields ``(epoch, index)`` keys, which also reach persistent workers.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from datamodules.index import VIDEO_EXTENSIONS, find_sources, read_index
from datamodules.loader import ResumableDataLoader, ResumableTrainLoader
from datamodules.readers import Backend, FrameFolderReader, VideoReadError, open_reader
from datamodules.sampling import EpochSampler, gap_bounds, sample_generator, sample_pair, worker_init_fn
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


class FramePairDataset(Dataset):
    """``len(sources) * repeated_sampling`` frame pairs per epoch; sample ``i`` comes from video ``i % N``.

    Items are dicts: ``frames`` float32 (2, 3, S, S) ImageNet-normalised (frame 1 earlier), ``gap`` int64
    (native frames; reader indices in ``seconds`` unit), ``video`` str, ``index`` int64. A key is an int
    (uses ``self.epoch``) or an ``(epoch, index)`` tuple from ``EpochSampler``.

    An unreadable video raises ``VideoReadError`` naming the file when ``strict``; otherwise it is logged
    once per process, counted in ``skipped``, and a replacement video is drawn from the sample's own
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
    ) -> None:
        self.sources, self.transform, self.backend = list(sources), transform, backend
        self.gap_min, self.gap_max, self.gap_unit = gap_min, gap_max, gap_unit
        self.frame_step, self.folder_fps = frame_step, folder_fps
        self.repeated_sampling, self.seed, self.strict, self.max_retries = (
            repeated_sampling,
            seed,
            strict,
            max_retries,
        )
        self.epoch = 0
        # Shared memory, so counts made in DataLoader workers are visible in the main process.
        self._skips = torch.zeros(SKIP_SLOTS, dtype=torch.int64).share_memory_()
        self._logged: set[str] = set()

    def __len__(self) -> int:
        return len(self.sources) * self.repeated_sampling

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (``EpochSampler`` passes it with each key instead)."""
        self.epoch = epoch

    @property
    def skipped(self) -> int:
        """Samples replaced because their video was unreadable or had fewer than 2 frames (all workers)."""
        return int(self._skips.sum())

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        g = sample_generator(self.seed, epoch, index)
        video = index % len(self.sources)
        for _ in range(self.max_retries + 1):
            source = self.sources[video]
            try:
                frames, gap = self._load_pair(source, g)
            except (VideoReadError, _TooShort) as e:
                if self.strict and isinstance(e, VideoReadError):
                    raise
                self._note_skip(source, e)
                video = int(torch.randint(len(self.sources), (), generator=g))
                continue
            return {
                "frames": self.transform(frames, g),  # (2, 3, S, S)
                "gap": torch.tensor(gap, dtype=torch.int64),
                "video": source.path,
                "index": torch.tensor(index, dtype=torch.int64),
            }
        raise RuntimeError(
            f"sample {index}: {self.max_retries + 1} videos in a row were unreadable (last: {source.path}); "
            "check the data or the index (see the warnings above)"
        )

    def _load_pair(self, source: VideoSource, g: torch.Generator) -> tuple[np.ndarray, int]:
        """Both frames (2, H, W, 3) uint8 in one read, and the gap in native frames."""
        reader = open_reader(source.path, self.backend, num_frames=source.num_frames, fps=self._folder_rate())
        if reader.num_frames < 2:
            raise _TooShort(f"{source.path}: {reader.num_frames} frame(s), a pair needs 2")
        step = self.frame_step if isinstance(reader, FrameFolderReader) else 1
        lo, hi = gap_bounds(self.gap_min, self.gap_max, self.gap_unit, reader.fps, step)
        start, gap = sample_pair(reader.num_frames, lo, hi, g)
        frames = reader.read([start, start + gap])  # (2, H, W, 3)
        return frames, gap * step if self.gap_unit == "frames" else gap

    def _folder_rate(self) -> float:
        """File rate of frame folders: native rate over native frames per file."""
        return self.folder_fps / self.frame_step

    def _note_skip(self, source: VideoSource, error: Exception) -> None:
        info = torch.utils.data.get_worker_info()
        self._skips[0 if info is None else 1 + info.id % (SKIP_SLOTS - 1)] += 1
        if source.path not in self._logged:  # once per file and process: a bad file is not log spam
            self._logged.add(source.path)
            log.warning("skipping video (strict=False): %s", error)


class FramePairDataModule(ResumableTrainLoader, L.LightningDataModule):
    """Frame pairs from video files (Kinetics ``<root>/<split>/<class>/<id>.mp4``) or frame folders.

    Args:
        root: data root: video files anywhere below it, or frame folders (YouTube-VOS ``JPEGImages/<video>``).
        index_file: CSV from ``corrmae index``; default ``<root>/index.csv`` when it exists, else the root is
            scanned at ``setup`` (lengths then come from container headers, which can over-report).
        backend: ``auto`` (frames for folders, decord if installed else PyAV for files), or one backend.
        gap_min: smallest gap, INCLUSIVE (SiamMAE: 4 frames).
        gap_max: largest gap, INCLUSIVE (SiamMAE: 48): ``gap ~ U{gap_min..gap_max}``, clamped per video.
        gap_unit: ``frames`` (native frames) or ``seconds`` (converted with each video's fps: mixed-fps data).
        frame_step: native frames per file in frame folders (YouTube-VOS train: 5); gaps stay in native
            frames and become multiples of it. With 1 (default) gaps in folders count files.
        folder_fps: native frame rate of frame folders (for ``gap_unit="seconds"``).
        image_size: output side S (224 in SiamMAE).
        crop_scale: random-resized-crop area range, shared by both frames (SiamMAE: 0.5-1).
        hflip: random horizontal flip shared by both frames.
        color_jitter: shared colour-jitter strength; 0 = off (SiamMAE).
        repeated_sampling: pairs per video per epoch (SiamMAE: 2).
        batch_size: per-device batch size.
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory for faster GPU copies.
        persistent_workers: keep workers alive across epochs.
        timeout: seconds to wait for a batch before raising, so a hung native decoder becomes an error.
        strict: raise on an unreadable video instead of logging, counting and replacing it.
        max_retries: replacement videos tried per sample before giving up.
        seed: seed of all data randomness (order, gaps, crops, flips).
        extensions: video file suffixes found when scanning.
    """

    def __init__(
        self,
        root: str,
        index_file: str | None = None,
        backend: Literal["auto", "decord", "pyav", "frames"] = "auto",
        gap_min: int | float = 4,
        gap_max: int | float = 48,
        gap_unit: Literal["frames", "seconds"] = "frames",
        frame_step: int = 1,
        folder_fps: float = 30.0,
        image_size: int = 224,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        color_jitter: float = 0.0,
        repeated_sampling: int = 2,
        batch_size: int = 64,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        timeout: float = 120.0,
        strict: bool = False,
        max_retries: int = 10,
        seed: int = 0,
        extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
    ) -> None:
        super().__init__()
        if not 0 < gap_min <= gap_max:
            raise ValueError(f"need 0 < gap_min <= gap_max, got gap_min={gap_min}, gap_max={gap_max}")
        if gap_unit == "frames" and (gap_min != int(gap_min) or gap_max != int(gap_max)):
            raise ValueError(f"gap_unit='frames' needs integer gaps, got {gap_min}..{gap_max}")
        if repeated_sampling < 1 or frame_step < 1 or batch_size < 1:
            raise ValueError(
                f"repeated_sampling={repeated_sampling}, frame_step={frame_step}, "
                f"batch_size={batch_size} must all be >= 1"
            )
        self.save_hyperparameters()
        self.batch_size = batch_size  # read by VideoSSLModule for the lr scaling rule
        self.dataset: FramePairDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Validate the root, read the index (or scan), and build the dataset."""
        if self.dataset is not None:
            return
        hp = self.hparams
        sources = self._sources(Path(hp.root), hp.index_file, hp.backend, hp.extensions)
        transform = PairedTransform(
            hp.image_size, hp.crop_scale, hflip=hp.hflip, color_jitter=hp.color_jitter
        )
        self.dataset = FramePairDataset(
            sources, transform, hp.backend, hp.gap_min, hp.gap_max, hp.gap_unit, hp.frame_step, hp.folder_fps,
            hp.repeated_sampling, hp.seed, hp.strict, hp.max_retries,
        )  # fmt: skip
        rank_zero_info(
            f"FramePairDataModule: {len(sources)} videos from {hp.root}, {len(self.dataset)} pairs/epoch"
        )

    @staticmethod
    def _sources(
        root: Path, index_file: str | None, backend: str, extensions: Sequence[str]
    ) -> list[VideoSource]:
        if not root.is_dir():
            raise ValueError(f"data root {str(root)!r} does not exist or is not a directory")
        if not any(root.iterdir()):
            raise ValueError(f"data root {str(root)!r} is an empty directory")
        index = Path(index_file) if index_file else root / "index.csv"
        if index_file and not index.is_file():
            raise ValueError(
                f"index_file {str(index)!r} does not exist (build it with `corrmae index --root ...`)"
            )
        if index.is_file():
            rows = [r for r in read_index(index, root) if r.num_frames >= 2]
            sources = [VideoSource(r.path, r.num_frames, r.fps) for r in rows]
            if backend != "auto":  # the suffix says file or folder, without a stat per row
                wants_files = backend != "frames"
                sources = [s for s in sources if (Path(s.path).suffix.lower() in extensions) == wants_files]
            where = f"index {str(index)!r}"
        else:
            found = find_sources(
                root, extensions, videos=backend != "frames", folders=backend in ("auto", "frames")
            )
            sources, where = [VideoSource(str(p)) for p in found], f"{str(root)!r}"
        if not sources:
            raise ValueError(
                f"no usable videos (backend={backend!r}, extensions {tuple(extensions)}) in {where}"
            )
        return sources

    def train_dataloader(self) -> DataLoader:
        """Shuffled, sharded (``EpochSampler``) ``drop_last`` batches with timeouts; resumable mid-epoch."""
        if self.dataset is None:
            self.setup("fit")
        hp, trainer = self.hparams, self.trainer
        sampler = EpochSampler(
            self.dataset,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            shuffle=True,
            seed=hp.seed,
        )
        workers = hp.num_workers
        loader = ResumableDataLoader(
            self.dataset,
            batch_size=hp.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),  # no pinning warning on CPU runs
            drop_last=len(sampler) >= hp.batch_size,  # keep tiny datasets (tests, demo) from yielding nothing
            persistent_workers=hp.persistent_workers and workers > 0,
            timeout=hp.timeout if workers > 0 else 0,
            worker_init_fn=worker_init_fn,
        )
        return self.track_train_loader(loader)

    @property
    def skipped(self) -> int:
        """Samples replaced so far because of unreadable or too-short videos (log it as a metric)."""
        return self.dataset.skipped if self.dataset is not None else 0
