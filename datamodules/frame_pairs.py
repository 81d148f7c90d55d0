"""The frame-pair data module: sources (index or scan), the per-video dataset, loader and device-side steps.

Sampling, repeated sampling and determinism are described in ``datamodules.pair_dataset``. Workers return
uint8 crops; ImageNet normalisation runs on the device in ``on_after_batch_transfer`` (so SiamMAE and
VideoMAC both get it), and with ``decode_on: gpu`` the JPEG bytes are decoded there in one batch first.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from datamodules.device_decode import decode_jpeg_pairs
from datamodules.index import VIDEO_EXTENSIONS, find_sources, read_index
from datamodules.loader import ResumableDataLoader, ResumableTrainLoader
from datamodules.pair_dataset import FramePairDataset, VideoSource, collate_pairs
from datamodules.sampling import EpochSampler, worker_init_fn
from datamodules.transforms import PairedTransform, normalize_frames

__all__ = ["FramePairDataModule", "FramePairDataset", "VideoSource"]


class FramePairDataModule(ResumableTrainLoader, L.LightningDataModule):
    """Frame pairs from video files (Kinetics ``<root>/<split>/<class>/<id>.mp4``) or frame folders.

    Args:
        root: data root: video files anywhere below it, or frame folders (YouTube-VOS ``JPEGImages/<video>``).
        index_file: CSV from ``corrmae index``; default ``<root>/index.csv`` when it exists, else the root is
            scanned at ``setup`` (lengths then come from container headers, which can over-report).
        backend: ``auto`` (frames for folders; for files torchcodec if it loads, else decord, else PyAV),
            or one backend.
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
        repeated_sampling: R, pairs per video per epoch (SiamMAE: 2), decoded from ONE open and read of the
            video and placed in the same batch (MAE-ST ``repeat_aug``). An epoch is N videos = N x R pairs.
        batch_size: per-device batch size in PAIRS; the loader batches ``batch_size / R`` videos (so it
            must be divisible by R).
        decode_on: ``cpu`` (workers decode and augment, return uint8 crops) or ``gpu`` (JPEG frame folders
            only: workers return the JPEG bytes and the augmentation parameters, and the device decodes the
            batch with ``torchvision.io.decode_jpeg`` and applies them; on a CPU run it decodes on the CPU
            through the same code).
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
        backend: Literal["auto", "torchcodec", "decord", "pyav", "frames"] = "auto",
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
        decode_on: Literal["cpu", "gpu"] = "cpu",
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
        if batch_size % repeated_sampling:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by repeated_sampling={repeated_sampling}: a "
                "batch holds batch_size / repeated_sampling videos with all their pairs"
            )
        if decode_on == "gpu" and backend not in ("auto", "frames"):
            raise ValueError(f"decode_on='gpu' decodes JPEG frame folders; backend={backend!r} reads videos")
        self.save_hyperparameters()
        self.batch_size = batch_size  # read by VideoSSLModule for the lr scaling rule
        self.dataset: FramePairDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Validate the root, read the index (or scan), and build the dataset."""
        if self.dataset is not None:
            return
        hp = self.hparams
        backend = "frames" if hp.decode_on == "gpu" else hp.backend
        sources = self._sources(Path(hp.root), hp.index_file, backend, hp.extensions)
        transform = PairedTransform(
            hp.image_size, hp.crop_scale, hflip=hp.hflip, color_jitter=hp.color_jitter
        )
        self.dataset = FramePairDataset(
            sources, transform, backend, hp.gap_min, hp.gap_max, hp.gap_unit, hp.frame_step, hp.folder_fps,
            hp.repeated_sampling, hp.seed, hp.strict, hp.max_retries, jpeg_bytes=hp.decode_on == "gpu",
        )  # fmt: skip
        rank_zero_info(
            f"FramePairDataModule: {len(sources)} videos from {hp.root}, {self.dataset.pairs_per_epoch} "
            f"pairs/epoch ({hp.repeated_sampling} per video)"
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
        workers, videos = hp.num_workers, hp.batch_size // hp.repeated_sampling
        loader = ResumableDataLoader(
            self.dataset,
            batch_size=videos,  # x repeated_sampling pairs each: collate_pairs flattens them
            sampler=sampler,
            collate_fn=collate_pairs,
            num_workers=workers,
            # No pinning warning on CPU runs; and JPEG bytes are read by decode_jpeg from pageable memory
            # (pinning thousands of small tensors per batch would cost more than it saves).
            pin_memory=hp.pin_memory and torch.cuda.is_available() and hp.decode_on == "cpu",
            drop_last=len(sampler) >= videos,  # keep tiny datasets (tests, demo) from yielding nothing
            persistent_workers=hp.persistent_workers and workers > 0,
            timeout=hp.timeout if workers > 0 else 0,
            worker_init_fn=worker_init_fn,
        )
        return self.track_train_loader(loader)

    @property
    def skipped(self) -> int:
        """Samples replaced so far because of unreadable or too-short videos (log it as a metric)."""
        return self.dataset.skipped if self.dataset is not None else 0

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """``decode_on: gpu``: decode the JPEG bytes on the training device and augment (uint8 frames)."""
        if "jpeg" in batch:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            batch = decode_jpeg_pairs(batch, self.dataset.transform, device)
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """ImageNet-normalise the uint8 frames on the device (4x fewer bytes through pinned memory)."""
        if batch.get("frames") is not None and batch["frames"].dtype == torch.uint8:
            batch = {**batch, "frames": normalize_frames(batch["frames"])}
        return batch
