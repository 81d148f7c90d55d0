"""Tiny test videos whose pixels encode their frame index, so every returned frame can be checked."""

from pathlib import Path

import numpy as np

from datamodules.synthetic import write_video

BITS = 8


def index_frames(num_frames: int, size: tuple[int, int] = (32, 64)) -> np.ndarray:
    """uint8 (T, H, W, 3): frame i shows the 8 bits of i as black/white vertical bands (robust to H.264)."""
    h, w = size
    band = w // BITS
    frames = np.zeros((num_frames, h, w, 3), dtype=np.uint8)
    for i in range(num_frames):
        for b in range(BITS):
            if (i >> b) & 1:
                frames[i, :, b * band : (b + 1) * band] = 255
    return frames


def decode_index(frame: np.ndarray) -> int:
    """Inverse of ``index_frames`` for one (H, W, 3) frame."""
    band = frame.shape[1] // BITS
    bits = [frame[:, b * band + 1 : (b + 1) * band - 1].mean() > 127 for b in range(BITS)]
    return sum(int(bit) << b for b, bit in enumerate(bits))


def write_index_video(path: Path, num_frames: int, size=(32, 64), fps: int = 30, gop: int = 12) -> Path:
    """An H.264 mp4 of ``index_frames``; a short GOP so random access really seeks."""
    return write_video(path, index_frames(num_frames, size), fps=fps, gop=gop)


def write_index_folder(folder: Path, num_frames: int, size=(32, 64), step: int = 1) -> Path:
    """A frame folder (YT-VOS style names ``00000.jpg, 00005.jpg`` when ``step=5``) of ``index_frames``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(index_frames(num_frames, size)):
        Image.fromarray(frame).save(folder / f"{i * step:05d}.jpg", quality=95)
    return folder
