"""Token masking (MAE style: masked tokens are dropped, not zeroed) and binary patch masks for ConvNets."""

from typing import Literal

import torch
from torch import Tensor

MaskPattern = Literal["random", "grid"]
KeepRule = Literal["floor", "round"]


def num_visible(num_tokens: int, mask_ratio: float, rule: KeepRule = "round") -> int:
    """Number of tokens kept, at least 1 (an encoder needs a token).

    ``floor`` is MAE's ``len_keep = int(L * (1 - mask_ratio))`` evaluated in the same float order (196
    patches at 0.95: 9.8 -> 9); ``round`` gives 10. SiamMAE uses MAE's code, hence ``floor`` there.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if rule == "floor":
        return max(1, int(num_tokens * (1 - mask_ratio)))
    if rule == "round":
        return max(1, round((1.0 - mask_ratio) * num_tokens))
    raise ValueError(f"keep rule must be 'floor' or 'round', got {rule!r}")


def grid_keep_ids(grid: tuple[int, int], mask_ratio: float, device: torch.device | None = None) -> Tensor:
    """Token ids kept by the regular ``grid`` pattern (SiamMAE Table 2c).

    Ratio 0.5 keeps a checkerboard (every other patch); 0.75 keeps one patch per 2x2 block (MAE's grid).

    Returns:
        (L_keep,) sorted token ids.
    """
    h, w = grid
    rows = torch.arange(h, device=device).view(h, 1)
    cols = torch.arange(w, device=device).view(1, w)
    if abs(mask_ratio - 0.5) < 1e-6:
        keep = (rows + cols) % 2 == 0
    elif abs(mask_ratio - 0.75) < 1e-6:
        keep = (rows % 2 == 0) & (cols % 2 == 0)
    else:
        raise ValueError(f"grid masking supports mask_ratio 0.5 or 0.75, got {mask_ratio}")
    return keep.flatten().nonzero().squeeze(1)


def sample_shuffle(
    batch: int,
    grid: tuple[int, int],
    mask_ratio: float,
    pattern: MaskPattern = "random",
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
    keep_rule: KeepRule = "round",
) -> tuple[Tensor, int]:
    """Sample a per-sample permutation of token ids whose first ``len_keep`` entries are kept.

    ``keep_rule``: how ``len_keep`` is rounded for the random pattern (``num_visible``).

    Returns:
        ids_shuffle (B, L) and len_keep.
    """
    L = grid[0] * grid[1]
    if pattern == "random":
        noise = torch.rand(batch, L, device=device, generator=generator)  # (B, L)
        return torch.argsort(noise, dim=1), num_visible(L, mask_ratio, keep_rule)
    if pattern == "grid":
        keep = grid_keep_ids(grid, mask_ratio, device)
        is_kept = torch.zeros(L, dtype=torch.bool, device=device)
        is_kept[keep] = True
        order = torch.cat([keep, (~is_kept).nonzero().squeeze(1)])  # (L,): first len_keep kept
        return order.unsqueeze(0).expand(batch, L).contiguous(), keep.numel()
    raise ValueError(f"unknown mask pattern {pattern!r}")


def random_masking(
    x: Tensor,
    mask_ratio: float,
    grid: tuple[int, int],
    pattern: MaskPattern = "random",
    generator: torch.Generator | None = None,
    keep_rule: KeepRule = "round",
) -> tuple[Tensor, Tensor, Tensor]:
    """Drop a fraction of tokens per sample (MAE ``random_masking``).

    Args:
        x: (B, L, D) tokens.
        mask_ratio: fraction of tokens removed.
        grid: (h, w) token grid, h*w = L.
        pattern: ``random`` (uniform per sample) or ``grid``.
        generator: optional RNG for reproducible masks.
        keep_rule: ``floor`` (MAE's ``int``) or ``round`` for the number of kept tokens.

    Returns:
        x_visible (B, L_keep, D), mask (B, L) with 1 = removed, ids_restore (B, L) to unshuffle.
    """
    B, L, D = x.shape
    if mask_ratio == 0.0:
        ids = torch.arange(L, device=x.device).expand(B, L)
        return x, torch.zeros(B, L, device=x.device), ids
    ids_shuffle, len_keep = sample_shuffle(B, grid, mask_ratio, pattern, x.device, generator, keep_rule)
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # (B, L)
    ids_keep = ids_shuffle[:, :len_keep]  # (B, L_keep)
    x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(B, len_keep, D))  # (B, L_keep, D)
    mask = torch.ones(B, L, device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # (B, L) back in grid order
    return x_visible, mask, ids_restore


def random_patch_mask(
    batch: int,
    grid: tuple[int, int],
    mask_ratio: float,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Binary patch mask for ConvNet MAEs (FCMAE ``gen_random_mask``).

    Returns:
        (B, 1, h, w) float mask with 1 = masked (removed), exactly L - round((1-r)L) ones per sample.
    """
    h, w = grid
    ids_shuffle, len_keep = sample_shuffle(batch, grid, mask_ratio, "random", device, generator)
    mask = torch.ones(batch, h * w, device=device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, torch.argsort(ids_shuffle, dim=1))  # (B, L) in grid order
    return mask.view(batch, 1, h, w)  # (B, 1, h, w)


def upsample_mask(mask_b1hw: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsample a (B, 1, h, w) patch mask to a feature map size (H', W')."""
    h, w = mask_b1hw.shape[-2:]
    H, W = size
    if H % h or W % w:
        raise ValueError(f"feature size {H}x{W} is not a multiple of the mask grid {h}x{w}")
    return mask_b1hw.repeat_interleave(H // h, dim=2).repeat_interleave(W // w, dim=3)
