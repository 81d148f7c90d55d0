"""Fixed 2-D sine-cosine position embeddings (MAE ``get_2d_sincos_pos_embed``) and their resampling."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """1-D sin-cos embedding of positions (Transformer, Vaswani et al. 2017).

    Args:
        dim: output width D (even).
        pos: (M,) positions.

    Returns:
        (M, D): first half sin, second half cos, frequencies 1 / 10000^(2i/D).
    """
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (D/2,)
    out = pos.double().reshape(-1, 1) * omega.reshape(1, -1)  # (M, D/2)
    return torch.cat([out.sin(), out.cos()], dim=1)  # (M, D)


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = True) -> Tensor:
    """2-D sin-cos position embedding for an (h, w) patch grid, MAE semantics.

    Half of the width encodes the row, half the column (MAE encodes ``grid_h`` = the w-index first, which
    we keep so weights trained with MAE's code and ours agree). The [CLS] slot, if any, is all zeros:
    the class token carries no position.

    Args:
        dim: width D (divisible by 4).
        grid: (h, w).
        cls_token: prepend a zero row for the [CLS] token.

    Returns:
        (1 + h*w, D) if ``cls_token`` else (h*w, D), float32, row-major grid order.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be divisible by 4, got {dim}")
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
    # MAE: np.meshgrid(grid_w, grid_h) puts the column index first; emb_h uses it, emb_w the row index.
    emb = torch.cat([sincos_1d(dim // 2, xs.flatten()), sincos_1d(dim // 2, ys.flatten())], dim=1)  # (L, D)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)  # (1+L, D)
    return emb.float()


def resample_pos_embed(
    pos_embed: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix: int = 1
) -> Tensor:
    """Bicubically interpolate patch position embeddings to another grid (DINO ``interpolate_pos_encoding``).

    Used to run a model trained at 224 px on 480p frames for label propagation; prefix ([CLS]) rows are
    kept as they are.

    Args:
        pos_embed: (1, num_prefix + h*w, D).
        old_grid: (h, w) of ``pos_embed``.
        new_grid: (h', w') wanted.
        num_prefix: leading rows that are not patches.

    Returns:
        (1, num_prefix + h'*w', D).
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    D = patches.shape[-1]
    h, w = old_grid
    if patches.shape[1] != h * w:
        raise ValueError(f"pos_embed has {patches.shape[1]} patch rows, not {h}x{w}")
    x = patches.reshape(1, h, w, D).permute(0, 3, 1, 2)  # (1, D, h, w)
    x = F.interpolate(x.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1).reshape(1, -1, D).to(pos_embed.dtype)  # (1, h'*w', D)
    return torch.cat([prefix, x], dim=1)


def dino_interpolate_pos_embed(pos_embed: Tensor, new_grid: tuple[int, int], num_prefix: int = 1) -> Tensor:
    """DINO's ``interpolate_pos_encoding``: bicubic by a *scale factor*, not to a size.

    DINO calls ``F.interpolate(grid, scale_factor=((h0 + 0.1) / sqrt(N), (w0 + 0.1) / sqrt(N)),
    mode="bicubic")`` on the square pre-training grid of N patches. The output size is floor(sqrt(N) * scale)
    = (h0, w0), but the sampling positions follow the given factor, so they differ slightly from resizing to
    (h0, w0) (``resample_pos_embed``): at 480x832 with /16 the features move by up to ~0.1. The table is
    returned unchanged when the grid is square with the same number of patches (DINO's shortcut).

    Args:
        pos_embed: (1, num_prefix + N, D), N a perfect square.
        new_grid: (h0, w0) wanted.
        num_prefix: leading rows that are not patches ([CLS]).

    Returns:
        (1, num_prefix + h0*w0, D).
    """
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    n, dim = patches.shape[1], patches.shape[-1]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"DINO position-embedding interpolation needs a square grid, got {n} patch rows")
    h0, w0 = new_grid
    if n == h0 * w0 and h0 == w0:
        return pos_embed
    x = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, s, s)
    scale = ((h0 + 0.1) / math.sqrt(n), (w0 + 0.1) / math.sqrt(n))  # the 0.1 guards floor() against rounding
    x = F.interpolate(x, scale_factor=scale, mode="bicubic")
    if tuple(x.shape[-2:]) != (h0, w0):
        raise ValueError(f"interpolation gave grid {tuple(x.shape[-2:])}, expected {(h0, w0)}")
    x = x.permute(0, 2, 3, 1).reshape(1, -1, dim)  # (1, h0*w0, D)
    return torch.cat([prefix, x], dim=1)
