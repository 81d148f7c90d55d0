"""JHMDB reader for pose-keypoint propagation (split 1 test, 15 joints), in the official / UVC layout.

Layout read (``root`` = the ``JHMDB`` directory)::

    Rename_Images/<action>/<video>/00001.png ...               frames (1-based names)
    joint_positions/<action>/<video>/joint_positions.mat       'pos_img': (2, 15, T) MATLAB 1-based pixels
    testlist_split1.txt  (or splits/testlist_split1.txt)       UVC/CropMAE list: "<mat path> <image dir>"
    splits/<action>_test_split1.txt                            official: "<video>.avi 1|2" (2 = test)

The UVC list is preferred when present because its order defines the published prediction file names; the
absolute prefixes in it are ignored (the part after ``joint_positions/`` / ``Rename_Images/`` is used).
Protocol: 320x320 frames (aspect ignored), PCK@0.1/0.2 with the 0.6 x GT-box-diagonal scale.
When the annotation and the frame count differ, both are truncated to the shorter (VFS's choice).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.davis import check_name

NUM_JOINTS = 15
EVAL_SIZE = (320, 320)


@dataclass(frozen=True)
class JhmdbVideo:
    """One JHMDB clip: frames and 0-based joint pixel coordinates (T, 15, 2) as (x, y)."""

    name: str
    frame_paths: tuple[Path, ...]
    joints: np.ndarray
    size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.frame_paths)

    def read_frame(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        with Image.open(self.frame_paths[index]) as img:
            return np.array(img.convert("RGB"))


def _split_entries(root: Path, split: int) -> list[str]:
    """``<action>/<video>`` names of the test list of ``split``, in list order."""
    for listing in (root / f"testlist_split{split}.txt", root / "splits" / f"testlist_split{split}.txt"):
        if listing.is_file():
            entries = []
            for line in listing.read_text().splitlines():
                for token in line.split():
                    parts = Path(token).parts
                    if "Rename_Images" in parts:
                        i = parts.index("Rename_Images")
                        entries.append(check_name("/".join(parts[i + 1 : i + 3]), listing, parts=2))
            return entries
    official = (
        sorted((root / "splits").glob(f"*_test_split{split}.txt")) if (root / "splits").is_dir() else []
    )
    if not official:
        raise FileNotFoundError(
            f"no JHMDB split {split} list under {root}: expected testlist_split{split}.txt or "
            f"splits/<action>_test_split{split}.txt"
        )
    entries = []
    for path in official:
        action = path.name[: -len(f"_test_split{split}.txt")]
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] == "2":  # 1 = train, 2 = test
                entries.append(check_name(f"{action}/{Path(fields[0]).stem}", path, parts=2))
    return entries


def read_joints(path: Path) -> np.ndarray:
    """``pos_img`` of a ``joint_positions.mat`` as 0-based (T, 15, 2) (x, y) pixels."""
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"missing JHMDB joint annotation {path}")
    mat = loadmat(path)
    if "pos_img" not in mat or mat["pos_img"].shape[:2] != (2, NUM_JOINTS):
        raise ValueError(f"{path}: expected 'pos_img' of shape (2, {NUM_JOINTS}, T)")
    return np.transpose(mat["pos_img"], (2, 1, 0)).astype(np.float64) - 1.0  # (T, 15, 2), MATLAB 1-based -> 0


def load_jhmdb(root: str | Path, split: int = 1, max_videos: int | None = None) -> list[JhmdbVideo]:
    """Index the test videos of JHMDB ``split`` in list order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"JHMDB root not found: {root}")
    entries = _split_entries(root, split)
    if max_videos is not None:
        entries = entries[:max_videos]
    videos = []
    for name in entries:
        frames = tuple(sorted((root / "Rename_Images" / name).glob("*.png")))
        if not frames:
            raise FileNotFoundError(
                f"JHMDB video {name!r} is listed but {root / 'Rename_Images' / name} has no PNGs"
            )
        joints = read_joints(root / "joint_positions" / name / "joint_positions.mat")
        n = min(len(frames), len(joints))
        with Image.open(frames[0]) as img:
            size = (img.height, img.width)
        videos.append(JhmdbVideo(name, frames[:n], joints[:n], size))
    return videos
