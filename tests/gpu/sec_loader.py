"""Section 4: feeding the step.

Pairs/s delivered by the project's DataLoader (``FramePairDataModule``, JPEG frame folders) with several
worker counts, against the SiamMAE ViT-S/16 step's consumption from section 1: how many cores one GPU needs.
The frames are generated here with PIL (nothing big travels to the device).
"""

from __future__ import annotations

import inspect
import itertools
import os
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from datamodules.device_decode import decode_jpeg_pairs
from datamodules.frame_pairs import FramePairDataModule
from tests.gpu.harness import Context


def _write_video(args: tuple[Path, int, int, tuple[int, int]]) -> int:
    """One folder of JPEGs: a smooth random background and a few moving ellipses (seeded by the video id)."""
    folder, video, frames, (w, h) = args
    rng = np.random.default_rng(video)
    folder.mkdir(parents=True, exist_ok=True)
    small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
    background = Image.fromarray(small).resize((w + frames * 4, h), Image.BICUBIC)
    blobs = [  # x, y, radius, vx, vy, colour
        (
            *rng.uniform((0, 0, h / 12, -6, -4), (w, h, h / 4, 6, 4)),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
        for _ in range(4)
    ]
    for t in range(frames):
        img = background.crop((t * 4, 0, t * 4 + w, h))  # camera pan
        draw = ImageDraw.Draw(img)
        for x, y, r, vx, vy, colour in blobs:
            cx, cy = x + vx * t, y + vy * t
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        img.save(folder / f"{t:05d}.jpg", quality=90)
    return frames


def make_frame_folders(root: Path, videos: int, frames: int, size: tuple[int, int]) -> float:
    """``root/JPEGImages/vid<i>/<t>.jpg`` for ``videos`` videos; returns the seconds it took."""
    t0 = time.perf_counter()
    jobs = [(root / "JPEGImages" / f"vid{i:03d}", i, frames, size) for i in range(videos)]
    procs = min(len(jobs), max(1, len(os.sched_getaffinity(0)) - 1))
    if procs > 1:
        with Pool(procs) as pool:
            pool.map(_write_video, jobs)
    else:
        for job in jobs:
            _write_video(job)
    return time.perf_counter() - t0


def loader_pairs_per_s(
    root: Path,
    workers: int,
    batch: int,
    img: int,
    timed_batches: int,
    budget: float,
    device: torch.device,
    **extra,
) -> dict:
    """Steady-state pairs/s of the training DataLoader, each batch carried to normalised frames on ``device``.

    A batch goes through what the Trainer runs: the data module's ``on_before_batch_transfer`` work (the
    JPEG decode of ``decode_on: gpu``, here on ``device``), the copy, then ``on_after_batch_transfer``
    (normalisation). Epochs (one pass over the videos, 2 pairs each) repeat with persistent workers until
    enough batches are timed. The first ``max(1, workers)`` batches are not timed; timing stops after
    ``timed_batches`` batches or ``budget`` seconds. ``extra`` goes to the data module (e.g. ``decode_on``).
    This is the check's only coupling to the data pipeline.
    """
    warm = max(1, workers)
    dm = FramePairDataModule(
        root=str(root), backend="frames", gap_min=4, gap_max=16, image_size=img, batch_size=batch,
        num_workers=workers, pin_memory=True, persistent_workers=workers > 0, repeated_sampling=2, **extra,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = itertools.chain.from_iterable(loader for _ in itertools.count())

    def deliver(batches) -> None:
        b = next(batches)
        if "jpeg" in b:
            b = decode_jpeg_pairs(b, dm.dataset.transform, device)
        b = dm.on_after_batch_transfer({**b, "frames": b["frames"].to(device, non_blocking=True)}, 0)
        assert b["frames"].dtype == torch.float32

    for _ in range(warm):
        deliver(it)
    t0, n, t_end = time.perf_counter(), 0, time.monotonic() + budget
    while n < timed_batches and (n == 0 or time.monotonic() < t_end):
        deliver(it)
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    del it, loader
    return {"pairs_per_s": n * batch / seconds, "batches": n, "seconds": seconds}


def run(ctx: Context) -> None:
    """Generate the frames, then one row group per worker count, then cores per GPU."""
    sz = ctx.sizes
    consumption = ctx.shared.get("siammae_pairs_per_s")
    with tempfile.TemporaryDirectory(prefix="gpu-check-frames-") as tmp:
        root = Path(tmp)
        took = make_frame_folders(root, sz.loader_videos, sz.loader_frames, sz.loader_frame_size)
        w, h = sz.loader_frame_size
        ctx.add("frames", "generated", sz.loader_videos * sz.loader_frames, "JPEGs",
                f"{sz.loader_videos} folders at {w}x{h}, quality 90, {took:.1f} s")  # fmt: skip
        best_per_worker = 0.0
        for workers in sz.loader_workers:
            item = f"DataLoader, {workers} workers, batch {sz.loader_batch}, {sz.loader_img} px"
            with ctx.item(item, min_left=4.0) as go:
                if not go:
                    continue
                budget = min(15.0, max(3.0, ctx.left() / 3))
                r = loader_pairs_per_s(root, workers, sz.loader_batch, sz.loader_img, 40, budget, ctx.device)
                per_worker = r["pairs_per_s"] / max(1, workers)
                best_per_worker = max(best_per_worker, per_worker)
                ctx.add(
                    item,
                    "pairs/s delivered",
                    r["pairs_per_s"],
                    "pairs/s",
                    f"{r['batches']} batches in {r['seconds']:.1f} s",
                )
                ctx.add(item, "pairs/s per worker", per_worker, "pairs/s")
                if consumption:
                    ctx.add(item, "share of the step's consumption", r["pairs_per_s"] / consumption)
        gpu_decode(ctx, root)
    if consumption and best_per_worker:
        ctx.add(
            "SiamMAE ViT-S/16 step",
            "consumes",
            consumption,
            "pairs/s",
            f"batch {ctx.shared.get('siammae_batch')}, section 1",
        )
        cores = consumption / best_per_worker
        how = "consumption / best pairs/s per worker (one core per worker)"
        ctx.add("SiamMAE ViT-S/16 step", "loader cores needed per GPU", cores, "cores", how)
    elif not consumption:
        ctx.note("No SiamMAE ViT-S/16 step time from section 1, so no cores-per-GPU figure.")
    ctx.note(
        f"Loader batch {sz.loader_batch} (pairs/s does not depend on it; the step's batch x workers x "
        "prefetch would hold gigabytes in shared memory). Decode + crop + resize + normalise per pair, "
        "pinned host memory, copy to the device included."
    )


def gpu_decode(ctx: Context, root: Path) -> None:
    """The GPU JPEG decode path (``decode_on: gpu``), when the data module has it."""
    if "decode_on" not in inspect.signature(FramePairDataModule.__init__).parameters:
        ctx.add("decode_on: gpu", "status", "not in FramePairDataModule yet: not measured")
        return
    workers = sorted(ctx.sizes.loader_workers)[len(ctx.sizes.loader_workers) // 2]
    item = f"DataLoader decode_on=gpu, {workers} workers"
    with ctx.item(item, min_left=4.0) as go:
        if go:
            sz = ctx.sizes
            r = loader_pairs_per_s(
                root,
                workers,
                sz.loader_batch,
                sz.loader_img,
                40,
                min(15.0, ctx.left()),
                ctx.device,
                decode_on="gpu",
            )
            ctx.add(item, "pairs/s delivered", r["pairs_per_s"], "pairs/s")
