"""OpenCV's ``cv2.resize(img, (w, h))`` (INTER_LINEAR) on uint8 images, reproduced in numpy without OpenCV.

DINO's ``eval_video_segmentation.py`` resizes the *uint8* frame with OpenCV before converting to float, so its
network sees values rounded back to integers after a fixed-point interpolation, not the float bilinear
interpolation of ``F.interpolate``. OpenCV's 8-bit path:

- per axis, source coordinate ``f = float32((i + 0.5) * in / out - 0.5)``, ``s = floor(f)``, clamped to the
  first / last pixel (weight 0 on the outside neighbour);
- both weights are rounded separately to 11-bit fixed point, ``round((1 - frac) * 2048)`` and
  ``round(frac * 2048)``;
- horizontal pass in int32 (value * 2048), then the vertical pass of its SIMD kernel: each row is shifted
  right by 4, multiplied by the 16-bit vertical weight keeping the high 16 bits, summed, and rounded with
  ``(x + 2) >> 2``.

Checked against opencv-python-headless 5.0.0 on random uint8 images (2026-12-02): bit-identical for
480x854 -> 480x832, 480x910 -> 480x896, 480x1152 (no-op), 720x1280 -> 560x560, 240x320 -> 320x320 and
480x854 -> 448x832 (``tests/callbacks/evaluation/test_protocols.py`` holds hand-computed cases of the same
arithmetic).
"""

import numpy as np

_COEF_SCALE = 2048  # INTER_RESIZE_COEF_SCALE = 1 << 11


def linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: the two source indices and their fixed-point weights (sum ~2048)."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resize sizes must be >= 1, got {n_in} -> {n_out}")
    scale = 1.0 / (n_out / n_in)  # OpenCV keeps 1 / inv_scale in double
    pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo.astype(np.float32)).astype(np.float32)
    outside = (lo < 0) | (lo >= n_in - 1)
    frac[outside] = 0.0
    lo = np.clip(lo, 0, n_in - 1)
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(_COEF_SCALE)).astype(np.int64)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int64)
    return lo, np.minimum(lo + 1, n_in - 1), w0, w1


def resize_linear_uint8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(img, (size[1], size[0]))`` for a uint8 (H, W) or (H, W, C) image -> uint8 at ``size``."""
    if img.dtype != np.uint8:
        raise ValueError(f"resize_linear_uint8 expects uint8, got {img.dtype}")
    if tuple(img.shape[:2]) == tuple(size):
        return img.copy()  # OpenCV copies when the size is unchanged
    squeeze = img.ndim == 2
    src = (img[..., None] if squeeze else img).astype(np.int64)  # (H, W, C)
    x0, x1, a0, a1 = linear_taps(src.shape[1], size[1])
    y0, y1, b0, b1 = linear_taps(src.shape[0], size[0])
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]  # (H_in, W_out, C), value * 2048
    top = np.clip(rows[y0] >> 4, -32768, 32767)  # the SIMD kernel packs (row >> 4) to int16
    bottom = np.clip(rows[y1] >> 4, -32768, 32767)
    acc = ((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16)  # mul_hi
    out = np.clip((acc + 2) >> 2, 0, 255).astype(np.uint8)
    return out[..., 0] if squeeze else out
