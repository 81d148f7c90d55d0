"""Frame-pair loading from H.264 mp4 (decord and PyAV) vs what the CPU SiamMAE training step consumes.

Videos: ``NUM_VIDEOS`` generated scenes (``datamodules.synthetic.render_scene``), 340x256, 300 frames,
written twice with ``write_video``: GOP 30 (``write_synthetic_videos``' default) and GOP 250 (x264's default,
what most Kinetics files have; a random seek then decodes up to 250 frames). They are cached in the
temp directory, so only the first run pays the rendering (~1 min).

- Per worker: ``FramePairDataset`` items (gap 4..48, 224 random-resized crop, flip; uint8, normalised later
  on the device) read in the main process on one thread, as one DataLoader worker does. One pair per video
  item (``repeated_sampling`` 1; ``bench_pipeline`` compares decode-once R=2).
- 2 workers: ``FramePairDataModule.train_dataloader()`` with ``num_workers=2``, batch 8, timed after the
  first batch (worker start-up excluded).
- Consumption: pairs/s of the SiamMAE ViT-S/16 step at batch 8 (``bench_train_step.measure_core``, shared
  within one ``make bench`` run). On a 2-core machine the workers take their CPU from the training step, so
  the per-worker row also says which share of one core loading needs at that consumption.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch

from datamodules import FramePairDataModule
from datamodules.readers import decord_available
from datamodules.synthetic import render_scene, write_video
from tests.bench.bench_train_step import BATCH, measure_core

NUM_VIDEOS, NUM_FRAMES, SIZE = 2, 300, (256, 340)  # (H, W)
GOPS = (30, 250)
PER_WORKER_PAIRS = 24  # timed items per backend and GOP (after 2 warm-up items)
LOADER_BATCHES = 6  # timed batches of the 2-worker DataLoader (after the first)


def bench_videos(gop: int) -> Path:
    """Directory with the benchmark videos at key-frame interval ``gop`` (rendered once, then cached)."""
    root = Path(tempfile.gettempdir()) / "corrmae_bench_videos"
    out = root / f"{NUM_FRAMES}f_{SIZE[1]}x{SIZE[0]}_gop{gop}"
    if len(list(out.glob("*.mp4"))) == NUM_VIDEOS:
        return out
    for i in range(NUM_VIDEOS):
        frames, _ = render_scene(1000 + i, NUM_FRAMES, SIZE, num_objects=3)  # (T, H, W, 3) uint8
        for g in GOPS:  # write every GOP from one rendering (rendering dominates the cost)
            write_video(root / f"{NUM_FRAMES}f_{SIZE[1]}x{SIZE[0]}_gop{g}" / f"scene_{i}.mp4", frames, gop=g)
    return out


def data_module(root: Path, backend: str, num_workers: int) -> FramePairDataModule:
    """The training data pipeline at 224 (SiamMAE defaults), enough pairs per epoch for the timing."""
    dm = FramePairDataModule(
        root=str(root), backend=backend, image_size=224, batch_size=BATCH, num_workers=num_workers,
        repeated_sampling=1, persistent_workers=False, strict=True,
    )  # fmt: skip
    dm.setup("fit")
    dm.dataset.sources = dm.dataset.sources * 32  # each video listed 32 times: enough items per epoch
    return dm


def per_worker_pairs_per_s(root: Path, backend: str) -> float:
    """Pairs/s of one worker: dataset items read in this process on one thread."""
    ds = data_module(root, backend, 0).dataset
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # what DataLoader workers run with
    try:
        for i in range(2):
            ds[(0, i)]
        times = []
        for i in range(2, 2 + PER_WORKER_PAIRS):
            t0 = time.perf_counter()
            ds[(0, i)]
            times.append(time.perf_counter() - t0)
        return 1.0 / statistics.median(times)
    finally:
        torch.set_num_threads(prev)


def two_worker_pairs_per_s(root: Path, backend: str) -> float:
    """Pairs/s delivered by the real DataLoader with 2 workers (first batch excluded)."""
    it = iter(data_module(root, backend, 2).train_dataloader())
    try:
        next(it)
        t0 = time.perf_counter()
        for _ in range(LOADER_BATCHES):
            batch = next(it)
        elapsed = time.perf_counter() - t0
    finally:
        # Why: an abandoned iterator's workers are otherwise reaped late, inside the next loader's forked
        # workers ("can only test a child process" warnings).
        del it
        gc.collect()
    assert batch["frames"].shape == (BATCH, 2, 3, 224, 224)
    return LOADER_BATCHES * BATCH / elapsed


def rows() -> list[dict]:
    """Per-worker rates (decord vs PyAV, GOP 30 and 250) and the 2-worker margin over the training step."""
    backends = ["decord", "pyav"] if decord_available() else ["pyav"]
    consumption = BATCH / measure_core()["siammae_s"]
    out = []
    for gop in GOPS:
        root = bench_videos(gop)
        rate = {b: per_worker_pairs_per_s(root, b) for b in backends}
        core_share = ", ".join(f"{b} {consumption / r:.0%}" for b, r in rate.items())
        out.append(
            {
                "benchmark": f"loading pairs/s per worker, H.264 {SIZE[1]}x{SIZE[0]} GOP {gop} -> 224 crop "
                f"(one core's share needed by the train step: {core_share})",
                "a_name": backends[0],
                "a_value": rate[backends[0]],
                "b_name": backends[-1],
                "b_value": rate[backends[-1]],
                "unit": "pairs/s",
                "ratio": rate[backends[-1]] / rate[backends[0]],
                "target": None,
            }
        )
        for b in backends:
            delivered = two_worker_pairs_per_s(root, b)
            out.append(
                {
                    "benchmark": f"2 {b} workers (DataLoader, GOP {gop}) vs SiamMAE ViT-S/16 step "
                    f"consumption (batch {BATCH}, CPU)",
                    "a_name": "step consumes",
                    "a_value": consumption,
                    "b_name": "2 workers deliver",
                    "b_value": delivered,
                    "unit": "pairs/s",
                    "ratio": delivered / consumption,
                    "target": ">= 3",
                }
            )
    return out


if __name__ == "__main__":  # quick look without the training step: per-worker rates only
    for gop in GOPS:
        print(gop, {b: round(per_worker_pairs_per_s(bench_videos(gop), b), 1) for b in ("decord", "pyav")})
