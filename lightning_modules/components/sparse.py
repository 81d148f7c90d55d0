"""Masked-dense emulation of submanifold sparse convolution (SparK-style, mask passed explicitly).

A ConvNet "sees" only the visible patches when every feature map is zero at masked sites and every
statistic (BatchNorm, GRN) is taken over visible sites only. Convolutions then read masked neighbours
as zeros, which is exactly a sparse convolution with missing neighbours (VideoMAC §3.2, ConvNeXt-V2 §3.1).
Strided convolutions are exact as long as the mask is constant on each stride block, which holds when the
mask lives on a grid at least as coarse as the network's total stride and is nearest-upsampled.

Nothing here is global: a :class:`SparseMask` is built per forward from the patch mask and handed to
every masked op, so the online and the EMA target network can run back to back with different masks.
"""

import torch
from torch import Tensor, nn

from lightning_modules.components.masking import upsample_mask


class SparseMask:
    """Visible-site maps of one forward pass, nearest-upsampled from a coarse patch mask and cached per size.

    Args:
        mask_b1hw: (B, 1, h, w) patch mask with 1 = masked (removed), the convention of ``masking.py``.
    """

    def __init__(self, mask_b1hw: Tensor):
        if mask_b1hw.dim() != 4 or mask_b1hw.shape[1] != 1:
            raise ValueError(f"mask must be (B, 1, h, w), got {tuple(mask_b1hw.shape)}")
        self.coarse = 1.0 - mask_b1hw.float()  # (B, 1, h, w), 1 = visible
        self._cache: dict[tuple[int, int], Tensor] = {}

    def visible(self, size: tuple[int, int], dtype: torch.dtype | None = None) -> Tensor:
        """(B, 1, H', W') visible map (1 = visible) at a feature-map size."""
        key = (int(size[0]), int(size[1]))
        if key not in self._cache:
            self._cache[key] = upsample_mask(self.coarse, key)
        vis = self._cache[key]
        return vis if dtype is None or vis.dtype == dtype else vis.to(dtype)

    def like(self, x: Tensor) -> Tensor:
        """Visible map matching a channels-first feature map (B, C, H, W)."""
        return self.visible(x.shape[-2:], x.dtype)

    def like_cl(self, x: Tensor) -> Tensor:
        """Visible map matching a channels-last feature map (B, H, W, C): shape (B, H, W, 1)."""
        return self.visible(x.shape[1:3], x.dtype).permute(0, 2, 3, 1)  # (B, H, W, 1)


def apply_mask(x: Tensor, sm: SparseMask | None) -> Tensor:
    """Zero the masked sites of a channels-first map (identity without a mask)."""
    return x if sm is None else x * sm.like(x)


def upcast(x: Tensor) -> Tensor:
    """Half-precision maps to fp32 for statistics; fp32 and fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def masked_batch_norm(bn: nn.BatchNorm2d, x: Tensor, sm: SparseMask | None) -> Tensor:
    """BatchNorm2d whose batch statistics come from visible sites only; output is zero at masked sites.

    Mirrors ``nn.BatchNorm2d`` exactly: biased variance for normalisation, unbiased variance for the running
    estimate, ``momentum=None`` as a cumulative average, running stats in eval mode. Values at masked
    input sites are ignored, so the input need not be re-masked after the preceding conv.

    Args:
        bn: the (dense) BatchNorm2d whose parameters and buffers are used and updated.
        x: (B, C, H, W).
        sm: the forward's mask, or None for the plain dense BatchNorm.

    Returns:
        (B, C, H, W).
    """
    if sm is None:
        return bn(x)
    # Statistics in fp32 whatever the autocast dtype (as native BatchNorm keeps them): a bf16 mean/var of
    # many sites loses the low bits that the centred values are made of.
    out_dtype, x = x.dtype, upcast(x)
    vis = sm.like(x)  # (B, 1, H, W)
    use_batch_stats = bn.training or bn.running_mean is None
    if use_batch_stats:
        n = vis.sum().clamp_min(1.0)  # BatchNorm pools over the batch too; clamp: an all-masked batch
        x_vis = x * vis
        mean = x_vis.sum(dim=(0, 2, 3)) / n  # (C,)
        centred = (x - mean.view(1, -1, 1, 1)) * vis
        var = centred.pow(2).sum(dim=(0, 2, 3)) / n  # (C,) biased
        if bn.training and bn.track_running_stats:
            update_running_stats(bn, mean, var, n)
    else:
        mean, var = bn.running_mean, bn.running_var
        centred = x - mean.view(1, -1, 1, 1)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    y = centred * scale.view(1, -1, 1, 1)
    if bn.bias is not None:
        y = y + bn.bias.view(1, -1, 1, 1)
    return (y * vis).to(out_dtype)


@torch.no_grad()
def update_running_stats(bn: nn.BatchNorm2d, mean: Tensor, var: Tensor, n: Tensor) -> None:
    """Update a BatchNorm's running mean / unbiased variance as ``nn.BatchNorm2d`` does."""
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    unbiased = var * n / (n - 1).clamp_min(1.0)
    bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), momentum)
    bn.running_var.lerp_(unbiased.detach().to(bn.running_var.dtype), momentum)


def masked_layer_norm(
    norm: nn.Module, x: Tensor, sm: SparseMask | None, channels_last: bool = False
) -> Tensor:
    """Per-site LayerNorm (channels-first ``LayerNorm2d`` or channels-last ``LayerNorm``), masked zeroed.

    LayerNorm has no cross-site statistics, so visible outputs never depend on masked sites; the re-mask is
    needed because LN(0) = beta is not zero.
    """
    y = norm(x)
    if sm is None:
        return y
    return y * (sm.like_cl(y) if channels_last else sm.like(y))


def masked_grn(
    grn: nn.Module, x: Tensor, sm: SparseMask | None, batch_global: bool = False, channels_last: bool = True
) -> Tensor:
    """ConvNeXt-V2 Global Response Normalisation over visible sites.

    Per sample (the dense GRN's semantics) by default. ``batch_global=True`` takes the L2 norm over every
    visible site of the whole batch, as MinkowskiEngine's GRN on ``x.F`` does in the official FCMAE/VideoMAC
    encoders (ConvNeXt-V2 issue #86).

    Args:
        grn: timm ``GlobalResponseNorm`` (weight, bias, eps).
        x: (B, H, W, C) if ``channels_last`` else (B, C, H, W).
        sm: the forward's mask or None.
        batch_global: pool the statistic over the batch too.
        channels_last: layout of ``x``.

    Returns:
        Same shape as ``x``; masked sites hold ``bias`` (callers mask the residual branch later).
    """
    out_dtype, x = x.dtype, upcast(x)  # the global L2 statistic in fp32 under bf16 autocast
    if sm is not None:
        x = x * (sm.like_cl(x) if channels_last else sm.like(x))
    spatial, channel = ((1, 2), -1) if channels_last else ((2, 3), 1)
    dims = (0, *spatial) if batch_global else spatial
    g = x.norm(p=2, dim=dims, keepdim=True)  # (B|1, 1, 1, C) or (B|1, C, 1, 1)
    n = g / (g.mean(dim=channel, keepdim=True) + grn.eps)
    shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
    return (x + torch.addcmul(grn.bias.view(shape), grn.weight.view(shape), x * n)).to(out_dtype)


def masked_max_pool(pool: nn.MaxPool2d, x: Tensor, sm: SparseMask | None) -> Tensor:
    """Max-pool of a non-negative map (after ReLU): masked zeros never beat visible maxima, so it is exact."""
    return apply_mask(pool(x), sm)
