"""VIP (Video Instance-level Parsing) reader for body-part propagation, in the layout UVC/CRW/CropMAE use.

Layout read (``root`` is the ``VIP_Fine`` directory or a directory containing it)::

    VIP_Fine/Images/videos<N>/<12-digit index>.jpg                 annotated key frames, 25 frames apart
    VIP_Fine/Annotations/Category_ids/videos<N>/<same stem>.png    class ids 0..19 (0 = background)
    VIP_Fine/lists/val_videos.txt                                  one video per line (50 in val)

Protocol (SiamMAE, following UVC): frames resized to 560x560 ignoring the aspect ratio; 20 classes including
background; one confusion matrix over all frames of all videos; mIoU = nanmean over classes.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.davis import check_name, read_index_png

NUM_CLASSES = 20
EVAL_SIZE = (560, 560)
CLASS_NAMES = (
    "background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
    "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg", "right-shoe",
    "left-shoe",
)  # fmt: skip


@dataclass(frozen=True)
class VipVideo:
    """One VIP video: annotated frames in temporal order and their class-id PNGs."""

    name: str
    frame_paths: tuple[Path, ...]
    label_paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.frame_paths)

    def read_frame(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        with Image.open(self.frame_paths[index]) as img:
            return np.array(img.convert("RGB"))

    def read_label(self, index: int) -> np.ndarray:
        """Class ids (H, W) uint8; values >= 20 (e.g. 255) are ignored by the metric."""
        path = self.label_paths[index]
        if not path.is_file():
            raise FileNotFoundError(f"VIP video {self.name!r}: missing annotation {path}")
        label = read_index_png(path)
        with Image.open(self.frame_paths[index]) as img:
            size = (img.height, img.width)
        if label.shape != size:
            raise ValueError(f"{path}: annotation size {label.shape} != frame size {size}")
        return label


def vip_root(root: str | Path) -> Path:
    """Resolve ``root`` to the ``VIP_Fine`` directory (it may be given directly or as its parent)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VIP root not found: {root}")
    return root / "VIP_Fine" if (root / "VIP_Fine").is_dir() else root


def load_vip(
    root: str | Path, split_file: str = "lists/val_videos.txt", max_videos: int | None = None
) -> list[VipVideo]:
    """Index the videos listed in ``split_file`` (relative to ``VIP_Fine``), in list order."""
    root = vip_root(root)
    listing = root / split_file
    if not listing.is_file():
        raise FileNotFoundError(f"VIP split file not found: {listing}")
    names = [
        check_name(Path(line.strip()).name, listing)
        for line in listing.read_text().splitlines()
        if line.strip()
    ]
    if max_videos is not None:
        names = names[:max_videos]
    videos = []
    for name in names:
        frames = tuple(sorted((root / "Images" / name).glob("*.jpg")))
        if not frames:
            raise FileNotFoundError(
                f"VIP video {name!r} is listed in {listing} but {root / 'Images' / name} is empty"
            )
        labels = tuple(root / "Annotations" / "Category_ids" / name / f"{f.stem}.png" for f in frames)
        if not labels[0].is_file():
            raise FileNotFoundError(f"missing first-frame annotation {labels[0]}")
        videos.append(VipVideo(name, frames, labels))
    return videos
