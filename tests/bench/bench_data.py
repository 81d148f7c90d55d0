"""Frame-pair loading: ms per pair for each reader backend on a generated 340x256 H.264 clip, 1 thread.

As in a DataLoader worker: a new reader per pair, gap ~ U{4..48}, both frames fetched in one ``read``.
The clip is a procedural textured scene (``render_scene``), 300 frames at 30 fps, encoded with a
250-frame GOP (x264's default, most Kinetics files) and a 30-frame GOP; the JPEG folder holds the same
frames. The last row adds the paired 224x224 augmentation to the fastest video backend.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from datamodules.readers import decord_available, open_reader
from datamodules.sampling import sample_pair
from datamodules.synthetic import render_scene, write_video
from datamodules.transforms import PairedTransform

NUM_FRAMES, PAIRS = 300, 40


def ms_per_pair(path: Path, backend: str, transform: PairedTransform | None = None) -> float:
    """Mean wall time per pair (open + read, optionally + augmentation), fixed gap/start draws."""
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(PAIRS):
        reader = open_reader(path, backend, num_frames=NUM_FRAMES)
        first, gap = sample_pair(NUM_FRAMES, 4, 48, g)
        frames = reader.read([first, first + gap])
        if transform is not None:
            transform(frames, g)
    return 1000 * (time.perf_counter() - start) / PAIRS


def rows() -> list[dict]:
    """Benchmark rows for ``python -m tests.bench``."""
    torch.set_num_threads(1)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames, _ = render_scene(0, NUM_FRAMES, (256, 340), 4)
        for gop in (250, 30):
            write_video(tmp / f"gop{gop}.mp4", frames, gop=gop)
        (tmp / "jpg").mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / "jpg" / f"{i:05d}.jpg", quality=90)
        for gop in (250, 30):
            clip = tmp / f"gop{gop}.mp4"
            pyav = ms_per_pair(clip, "pyav")
            decord = ms_per_pair(clip, "decord") if decord_available() else None
            out.append(
                dict(
                    benchmark=f"pair decode, H.264 340x256 GOP {gop}",
                    a_name="decord",
                    a_value=decord,
                    b_name="pyav",
                    b_value=pyav,
                    unit="ms/pair",
                    ratio=pyav / decord if decord else None,
                )
            )
        jpg = ms_per_pair(tmp / "jpg", "frames")
        out.append(
            dict(
                benchmark="pair decode, JPEG folder vs H.264 GOP 30 (pyav)",
                a_name="jpeg",
                a_value=jpg,
                b_name="pyav",
                b_value=out[-1]["b_value"],
                unit="ms/pair",
                ratio=out[-1]["b_value"] / jpg,
            )
        )
        augment = PairedTransform(224)
        full = ms_per_pair(tmp / "gop30.mp4", "pyav", augment)
        out.append(
            dict(
                benchmark="pair decode + paired 224 augment (pyav, GOP 30)",
                a_name="decode+augment",
                a_value=full,
                b_name="pairs/s/worker",
                b_value=1000 / full,
                unit="ms; 1/s",
            )
        )
    return out
