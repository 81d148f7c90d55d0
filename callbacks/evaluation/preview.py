"""Paper Fig. 3 style pictures of a propagation: predicted labels blended over the frames."""

import numpy as np


def overlay(frame: np.ndarray, ids: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Palette colours of ``ids`` (H, W) blended over ``frame`` (H, W, 3) uint8, background left as is."""
    colours = palette[ids.astype(np.int64)].astype(np.float32)  # (H, W, 3)
    blend = np.where((ids > 0)[..., None], (1 - alpha) * frame + alpha * colours, frame)
    return blend.astype(np.uint8)


def preview_frames(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over a video (first and last included)."""
    if count <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, count)})
