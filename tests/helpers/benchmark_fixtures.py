"""Tiny generated datasets in the VIP and JHMDB layouts, for the readers' and evaluators' tests.

They reuse the DAVIS generator's scenes (``datamodules.benchmark_gen``), so the objects move, occlude and
change scale as in the demo data; everything is a pure function of the seed.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from datamodules.benchmark_gen import scene_seed, visible_scene


def write_vip_fixture(
    out: str | Path, seed: int = 0, num_videos: int = 2, num_frames: int = 5, size: tuple[int, int] = (64, 48)
) -> Path:
    """Write a tiny VIP-format dataset (``VIP_Fine/Images``, ``Annotations/Category_ids``, ``lists``).

    Objects become body-part classes (hair 2, upper-clothes 4, pants 8); 25-frame-spaced 12-digit names.
    """
    root = Path(out) / "VIP_Fine"
    classes = np.array([0, 2, 4, 8], dtype=np.uint8)
    names = []
    for v in range(num_videos):
        frames, masks = visible_scene(scene_seed(seed, v), num_frames, size, 3)
        name = f"videos{v + 1}"
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            stem = f"{1 + 25 * t:012d}"
            (root / "Images" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "Images" / name / f"{stem}.jpg", quality=95)
            (root / "Annotations" / "Category_ids" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(classes[mask]).save(root / "Annotations" / "Category_ids" / name / f"{stem}.png")
        names.append(name)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    (root / "lists" / "val_videos.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def write_jhmdb_fixture(
    out: str | Path, seed: int = 0, num_videos: int = 2, num_frames: int = 5, size: tuple[int, int] = (60, 80)
) -> Path:
    """Write a tiny JHMDB-format dataset: PNG frames, ``joint_positions.mat`` and ``testlist_split1.txt``.

    The 15 joints ride on a moving object (fixed offsets from its centroid, scaled by its size), stored as
    MATLAB 1-based ``pos_img`` (2, 15, T) like the real annotations.
    """
    root = Path(out)
    offsets = np.random.default_rng(seed).uniform(-0.8, 0.8, (15, 2))  # (joints, xy) in object radii
    lines = []
    for v in range(num_videos):
        frames, masks = visible_scene(scene_seed(seed, v), num_frames, size, 1, min_pixels=40)
        action, video = ("wave", "run")[v % 2], f"clip_{v}"
        img_dir = root / "Rename_Images" / action / video
        img_dir.mkdir(parents=True, exist_ok=True)
        pos = np.zeros((2, 15, num_frames))
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            Image.fromarray(frame).save(img_dir / f"{t + 1:05d}.png")
            ys, xs = np.nonzero(mask == 1)
            centre = np.array([xs.mean(), ys.mean()]) if len(xs) else np.array([size[1] / 2, size[0] / 2])
            radius = np.sqrt(max(len(xs), 1) / np.pi)
            pos[:, :, t] = (centre + offsets * radius).T + 1.0  # MATLAB 1-based pixels
        mat = root / "joint_positions" / action / video / "joint_positions.mat"
        mat.parent.mkdir(parents=True, exist_ok=True)
        savemat(mat, {"pos_img": pos})
        # UVC/CropMAE list format: "<mat> <image dir>" with the author's absolute prefix.
        lines.append(
            f"/data/JHMDB/joint_positions/{action}/{video}/joint_positions.mat "
            f"/data/JHMDB/Rename_Images/{action}/{video}\n"
        )
    (root / "testlist_split1.txt").write_text("".join(lines))
    return root
