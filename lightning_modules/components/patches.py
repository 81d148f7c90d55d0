"""Patchify / unpatchify (MAE's convention: patch pixels flattened as (p, p, C))."""

from torch import Tensor


def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches.

    Args:
        imgs: (B, C, H, W) with H and W divisible by ``patch_size``.
        patch_size: p.

    Returns:
        (B, L, p*p*C) with L = (H/p)*(W/p), patches in row-major grid order.
    """
    b, c, H, W = imgs.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not divisible by patch size {p}")
    h, w = H // p, W // p
    x = imgs.reshape(b, c, h, p, w, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, h * w, p * p * c)  # (B, L, p*p*C)


def unpatchify(x: Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`.

    Args:
        x: (B, L, p*p*C).
        patch_size: p.
        grid: (h, w) with h*w = L.
        channels: C.

    Returns:
        (B, C, h*p, w*p).
    """
    b, L, _ = x.shape
    h, w = grid
    p = patch_size
    if h * w != L:
        raise ValueError(f"grid {h}x{w} does not match {L} tokens")
    x = x.reshape(b, h, w, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, channels, h * p, w * p)  # (B, C, H, W)
