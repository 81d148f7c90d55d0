"""A small generated benchmark in the official DAVIS-2017 layout (demo data; tests use it too).

``python -m datamodules.benchmark_gen --out data/demo/davis --seed 0`` writes a DAVIS-format benchmark built
on ``render_scene`` (textured objects with real motion, occlusion and scale change): JPEG frames, palette
PNG masks with 1-3 objects, ``ImageSets/2017/val.txt`` and a disjoint ``ImageSets/2017/tune.txt`` split for
tuning propagation knobs without touching val. Everything is a pure function of the seed. Its companion from
real photographs (val / tune / hard) is ``datamodules.photo_benchmark``; ``make demo`` writes both.
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.davis import voc_palette, write_palette_png
from datamodules.synthetic import render_scene


def scene_seed(seed: int, *key: int) -> int:
    """A well-mixed 32-bit seed for sub-stream ``key`` of ``seed``."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def visible_scene(
    seed: int, num_frames: int, size: tuple[int, int], num_objects: int, min_pixels: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """``render_scene`` re-drawn (deterministically) until every object shows >= ``min_pixels`` in frame 0.

    DAVIS defines the objects by the frame-0 annotation, so an object hidden at frame 0 would silently
    lower the object count.
    """
    for attempt in range(100):
        frames, masks = render_scene(scene_seed(seed, attempt), num_frames, size, num_objects)
        counts = np.bincount(masks[0].ravel(), minlength=num_objects + 1)
        if (counts[1:] >= min_pixels).all():
            return frames, masks
    raise ValueError(f"no scene with {num_objects} visible objects for seed {seed}; use a larger size")


def write_davis_benchmark(
    out: str | Path,
    seed: int = 0,
    num_val: int = 6,
    num_tune: int = 3,
    num_frames: int = 24,
    size: tuple[int, int] = (96, 160),
    max_objects: int = 3,
) -> Path:
    """Write a DAVIS-2017-format benchmark.

    Args:
        out: the ``DAVIS`` root to create.
        seed: benchmark seed (the same seed gives byte-identical files).
        num_val: sequences in ``ImageSets/2017/val.txt``.
        num_tune: further sequences in ``ImageSets/2017/tune.txt`` (and ``train.txt``), disjoint from val.
        num_frames: frames per sequence.
        size: (H, W) of the frames.
        max_objects: objects per sequence are drawn from 1..max_objects.

    Returns:
        The root.
    """
    out = Path(out)
    palette = voc_palette()
    splits: dict[str, list[str]] = {"val": [], "tune": []}
    for i in range(num_val + num_tune):
        split = "val" if i < num_val else "tune"
        name = f"synth-{split}-{i:02d}"
        rng = np.random.default_rng(scene_seed(seed, 1_000_000 + i))
        frames, masks = visible_scene(
            scene_seed(seed, i), num_frames, size, int(rng.integers(1, max_objects + 1))
        )
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            path = out / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(path, quality=95)
            write_palette_png(out / "Annotations" / "480p" / name / f"{t:05d}.png", mask, palette)
        splits[split].append(name)
    sets = out / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{n}\n" for n in splits["val"]))
    (sets / "tune.txt").write_text("".join(f"{n}\n" for n in splits["tune"]))
    (sets / "train.txt").write_text("".join(f"{n}\n" for n in splits["tune"]))
    return out


def ensure_davis_benchmark(root: str | Path, seed: int = 0, num_val: int = 12, num_tune: int = 8) -> Path:
    """The embedded benchmark used by the demo and the CPU study: (re)written unless already there as asked.

    12 test (``val``) and 8 tuning (``tune``) sequences: with 6/3, tuned propagation settings did not transfer
    between the splits and differences of ~0.03 J&F were noise.
    """
    root = Path(root)
    sets = root / "ImageSets" / "2017"

    def count(split: str) -> int:
        path = sets / f"{split}.txt"
        return len(path.read_text().split()) if path.is_file() else -1

    if (count("val"), count("tune")) != (num_val, num_tune):
        if root.exists():
            shutil.rmtree(root)  # a generated benchmark of another size: never mix the two
        write_davis_benchmark(root, seed=seed, num_val=num_val, num_tune=num_tune)
    return root


def main(argv: list[str] | None = None) -> None:
    """CLI: write a DAVIS-format benchmark."""
    p = argparse.ArgumentParser(
        prog="python -m datamodules.benchmark_gen", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="DAVIS root to create, e.g. data/demo/davis")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-val", type=int, default=6)
    p.add_argument("--num-tune", type=int, default=3)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, nargs=2, default=(96, 160), metavar=("H", "W"))
    args = p.parse_args(argv)
    root = write_davis_benchmark(
        args.out, args.seed, args.num_val, args.num_tune, args.frames, tuple(args.size)
    )
    print(f"wrote DAVIS-format benchmark to {root} ({args.num_val} val + {args.num_tune} tune sequences)")


if __name__ == "__main__":
    main()
