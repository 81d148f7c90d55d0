"""DAVIS-2017 semi-supervised reader and writer (official layout, palette PNGs), no network access.

Layout read (``DAVIS-2017-trainval-480p.zip`` unpacked)::

    <root>/JPEGImages/480p/<seq>/00000.jpg ...      frames, sorted name = temporal order
    <root>/Annotations/480p/<seq>/00000.png ...     palette ('P') PNGs, pixel = object id, 255 = void
    <root>/ImageSets/2017/val.txt                   one sequence name per line

Predictions are written as ``<out>/<seq>/<stem>.png`` palette PNGs at the original resolution, the layout
``davis2017-evaluation`` reads (``--results_path <out>``), so numbers can be double-checked with it.

The evaluation resolution is a protocol rule: ``callbacks.evaluation.davis.eval_size``.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VOID_ID = 255  # DAVIS "void" label: counted as background in semi-supervised evaluation


def voc_palette() -> np.ndarray:
    """The PASCAL-VOC / DAVIS colour map (bit-interleaved), computed locally: (256, 3) uint8."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_index_png(path: Path) -> np.ndarray:
    """Pixel values of a palette ('P') or grayscale ('L') PNG as ids: (H, W) uint8."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path}: expected a palette or grayscale label PNG, got mode {img.mode!r}")
        return np.array(img).astype(np.uint8)


def read_palette(path: Path) -> np.ndarray:
    """The palette stored in a 'P' PNG, or the DAVIS/VOC palette for a grayscale PNG: (256, 3) uint8."""
    with Image.open(path) as img:
        flat = img.getpalette() if img.mode == "P" else None
    if not flat:
        return voc_palette()
    pal = np.zeros((256, 3), dtype=np.uint8)
    flat = np.asarray(flat, dtype=np.uint8).reshape(-1, 3)[:256]  # (n, 3)
    pal[: len(flat)] = flat
    return pal


def write_palette_png(path: str | Path, mask: np.ndarray, palette: np.ndarray) -> Path:
    """Write an id map as a palette PNG (what davis2017-evaluation reads).

    Args:
        path: output file; parent directories are created.
        mask: (H, W) integer ids in 0..255.
        palette: (256, 3) or flat (768,) uint8 colours.

    Returns:
        The written path.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(f"{path}: mask must be (H, W) ids in 0..255, got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    img.save(path)
    return path


@dataclass(frozen=True)
class DavisSequence:
    """One DAVIS sequence: file paths plus what is known from frame 0.

    Attributes:
        name: sequence name.
        frame_paths: JPEG frames in temporal order.
        mask_paths: annotation PNG per frame (None where the frame has none).
        size: original (H, W).
        num_objects: max object id in the frame-0 annotation (the official N_obj).
        palette: (256, 3) uint8, read from the frame-0 annotation.
    """

    name: str
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path | None, ...]
    size: tuple[int, int]
    num_objects: int
    palette: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_paths)

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3)."""
        with Image.open(self.frame_paths[index]) as img:
            frame = np.array(img.convert("RGB"))
        if frame.shape[:2] != self.size:
            raise ValueError(
                f"{self.frame_paths[index]}: size {frame.shape[:2]} differs from frame 0 {self.size}"
            )
        return frame

    def first_mask(self) -> np.ndarray:
        """Frame-0 ids, void mapped to background: (H, W) uint8."""
        return self._read_mask(0)

    def read_masks(self) -> np.ndarray:
        """Ground truth for every frame: (T, H, W) uint8 ids 0..num_objects.

        Void (255) becomes background, as in davis2017-evaluation. Ids above ``num_objects`` (objects that
        are absent from frame 0) can never be evaluated by the official toolkit (it builds masks for ids
        1..N_obj of frame 0 only), so they are mapped to background with a warning.
        """
        return np.stack([self._read_mask(i) for i in range(len(self))])

    def read_mask(self, index: int) -> np.ndarray:
        """Ground truth of frame ``index`` (H, W) uint8, as in ``read_masks`` (one frame: long videos)."""
        return self._read_mask(index)

    def _read_mask(self, index: int) -> np.ndarray:
        path = self.mask_paths[index]
        if path is None:
            raise ValueError(
                f"sequence {self.name!r}: no annotation for frame {self.frame_paths[index].name}"
            )
        mask = read_index_png(path)
        if mask.shape != self.size:
            raise ValueError(f"{path}: annotation size {mask.shape} != frame size {self.size}")
        mask = np.where(mask == VOID_ID, 0, mask).astype(np.uint8)
        if index > 0 and mask.max(initial=0) > self.num_objects:
            extra = sorted(set(np.unique(mask).tolist()) - set(range(self.num_objects + 1)))
            warnings.warn(
                f"{path}: ids {extra} are not in frame 0 (N_obj={self.num_objects}); treated as background",
                stacklevel=2,
            )
            mask = np.where(mask > self.num_objects, 0, mask).astype(np.uint8)
        return mask


def check_name(name: str, listing: str | Path, parts: int = 1) -> str:
    """``name`` read from ``listing``, refused unless it is ``parts`` plain path components.

    Why: outputs are written to ``OUT/<benchmark>/<name>/``; a separator, ``..`` or an absolute path in a
    list file would write outside OUT.
    """
    pieces = name.split("/")
    if len(pieces) != parts or any(p in ("", ".", "..") or "\\" in p or ":" in p for p in pieces):
        shape = "a plain name" if parts == 1 else f"{parts} plain names joined by '/'"
        raise ValueError(
            f"{listing}: entry {name!r} must be {shape} (no path separator, '..' or absolute path); "
            f"results are written under OUT/<name>"
        )
    return name


def read_split(root: str | Path, split: str = "val", year: str = "2017") -> list[str]:
    """Sequence names of ``ImageSets/<year>/<split>.txt`` (blank lines ignored, order kept)."""
    path = Path(root) / "ImageSets" / year / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"DAVIS split file not found: {path}")
    return [check_name(line.strip(), path) for line in path.read_text().splitlines() if line.strip()]


def load_sequence(root: str | Path, name: str, resolution: str = "480p") -> DavisSequence:
    """Index one sequence and validate its frame-0 annotation."""
    root = Path(root)
    frame_dir = root / "JPEGImages" / resolution / name
    mask_dir = root / "Annotations" / resolution / name
    frames = sorted(frame_dir.glob("*.jpg")) if frame_dir.is_dir() else []
    if not frames:
        raise FileNotFoundError(
            f"sequence {name!r} is listed in the split file but {frame_dir} has no .jpg frames"
        )
    masks = tuple(
        (mask_dir / f"{f.stem}.png") if (mask_dir / f"{f.stem}.png").is_file() else None for f in frames
    )
    if masks[0] is None:
        raise FileNotFoundError(f"missing first-frame annotation {mask_dir / (frames[0].stem + '.png')}")
    with Image.open(frames[0]) as img:
        size = (img.height, img.width)
    first = read_index_png(masks[0])
    if first.shape != size:
        raise ValueError(f"{masks[0]}: annotation size {first.shape} != frame size {size} of {frames[0]}")
    ids = set(np.unique(np.where(first == VOID_ID, 0, first)).tolist()) - {0}
    if not ids:
        raise ValueError(f"{masks[0]}: first-frame annotation has no object (all background/void)")
    num_objects = max(ids)
    if len(ids) != num_objects:
        missing = sorted(set(range(1, num_objects + 1)) - ids)
        warnings.warn(
            f"{masks[0]}: object ids {missing} are absent from frame 0 and can never be predicted",
            stacklevel=2,
        )
    return DavisSequence(name, tuple(frames), masks, size, num_objects, read_palette(masks[0]))


def load_davis(
    root: str | Path,
    split: str = "val",
    max_videos: int | None = None,
    resolution: str = "480p",
    year: str = "2017",
) -> list[DavisSequence]:
    """All sequences of a DAVIS split, in split-file order.

    Args:
        root: the ``DAVIS`` directory.
        split: split file stem under ``ImageSets/<year>/`` (``val``; the generated benchmark adds ``tune``).
        max_videos: keep only the first ``max_videos`` sequences (for quick monitoring).
        resolution: ``JPEGImages``/``Annotations`` sub-directory.
        year: ``ImageSets`` sub-directory.

    Returns:
        The indexed sequences.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DAVIS root not found: {root}")
    names = read_split(root, split, year)
    if max_videos is not None:
        names = names[:max_videos]
    return [load_sequence(root, n, resolution) for n in names]
