"""Frame folders as a video: one image file per frame, read by index (YouTube-VOS, DAVIS, prepared JPEG)."""

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.reader_checks import IMAGE_EXTENSIONS, VideoReadError, check_indices


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_frame_names(folder: str | Path) -> list[str]:
    """Names of the image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``).

    Called once per video item in every worker, so it stays cheap: no ``stat`` per file (``scandir``'s entry
    type), no ``Path`` per file, and no regex sort key when all names are zero-padded numbers of one length
    (``corrmae prepare``'s, YouTube-VOS's), where plain order is natural order.
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()]
    padded = len({len(n) for n in names}) <= 1 and all(n.split(".", 1)[0].isdigit() for n in names)
    return sorted(names) if padded else sorted(names, key=_natural_key)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in natural order, as paths."""
    return [Path(folder) / n for n in list_frame_names(folder)]


class FrameFolderReader:
    """A folder of image files, one per frame (YouTube-VOS ``JPEGImages/<video>/*.jpg``, DAVIS, K400 frames).

    Frame ``i`` is the ``i``-th file in natural order, so gaps are counted in FILES. In YouTube-VOS train the
    files are every 5th native frame (``00000.jpg, 00005.jpg, ...``, 30 fps video): one file step is 5 native
    frames and the file rate is 6 fps. ``FramePairDataModule(frame_step=5)`` converts gaps given in native
    frames to file steps. Grayscale, palette and RGBA images are converted to RGB (alpha is dropped).
    All frames must have the size of the first frame, otherwise ``VideoReadError`` names the odd file.
    """

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        self.path, self.fps = str(path), float(fps)
        if not Path(path).is_dir():
            raise VideoReadError(path, "not a directory of frames")
        self._folder, self._names = str(path), list_frame_names(path)
        self.num_frames = len(self._names)
        if not self._names:
            raise VideoReadError(path, f"no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self.size = self._open(self._file(0)).size  # (W, H) from the header only

    def _file(self, i: int) -> Path:
        return Path(os.path.join(self._folder, self._names[i]))

    def _open(self, file: Path):
        from PIL import Image, UnidentifiedImageError

        try:
            return Image.open(file)
        except (UnidentifiedImageError, OSError) as e:
            raise VideoReadError(file, f"cannot open image ({type(e).__name__}: {e})") from e

    def check_sizes(self) -> None:
        """Raise ``VideoReadError`` naming the first file whose size differs from frame 0 (headers only)."""
        for file in (self._file(i) for i in range(1, len(self._names))):
            self._check_size(file, self._open(file).size)

    def _check_size(self, file: Path, size: tuple[int, int]) -> None:
        if size != self.size:
            w0, h0 = self.size
            raise VideoReadError(
                file, f"frame size {size[0]}x{size[1]} differs from the first frame's {w0}x{h0}"
            )

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as uint8 (T, H, W, 3)."""
        idx = check_indices(self.path, indices, self.num_frames)
        out = []
        for i in idx:
            file = self._file(i)
            image = self._open(file)
            self._check_size(file, image.size)
            try:
                out.append(np.asarray(image.convert("RGB")))
            except OSError as e:  # truncated JPEG/PNG data
                raise VideoReadError(file, f"cannot decode image ({e})") from e
        return np.stack(out)

    def read_bytes(self, indices: Sequence[int]) -> list:
        """The undecoded JPEG files at ``indices`` as uint8 1-D tensors (``decode_on: gpu``)."""
        import torch

        idx = check_indices(self.path, indices, self.num_frames)
        out = []
        for i in idx:
            file = self._file(i)
            if file.suffix.lower() not in (".jpg", ".jpeg"):
                raise VideoReadError(file, "decode_on='gpu' needs JPEG frames (see corrmae prepare)")
            try:
                out.append(torch.frombuffer(bytearray(file.read_bytes()), dtype=torch.uint8))
            except (OSError, ValueError) as e:  # ValueError: an empty file
                raise VideoReadError(file, f"cannot read JPEG bytes ({e})") from e
        return out
