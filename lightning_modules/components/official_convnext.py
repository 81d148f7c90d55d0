"""The VideoMAC ConvNeXt-V2 (models/convnextv2_sparse.py): one module for sparse pre-training and dense use.

FCMAE's sparse ConvNeXt-V2 plus VideoMAC's extra per-stage LayerNorm ``norm{i}`` in the main path after every
stage; the normalised map feeds the next stage and ``norm3`` is the encoder output (notes §2.1). The dense
downstream network is the same function (the notes' §2.9 recommendation: one encoder for both phases).

Parameter names and shapes are those ``tools/convert_pth.py`` writes from the ME checkpoint: the FCMAE dense
layout ``downsample_layers.{0..3}``, ``stages.i.j.{dwconv,norm,pwconv1,pwconv2,grn}`` (Linear pointwise
convs, GRN ``gamma``/``beta`` of shape (1, 1, 1, 4C)) and ``norm0``-``norm3``.

Masking (notes §3.4), with x zero at masked sites: stem conv + LN then mask; stage entry LN, mask, 2x2/s2
conv, mask; block: depthwise 7x7, LN, Linear, GELU, mask before the GRN statistics, GRN, Linear, residual
branch masked before the add; ``norm{i}`` re-masked. The mask is upsampled to each map's own size.
"""

import torch
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from torch import Tensor, nn

from lightning_modules.components.sparse import SparseMask, apply_mask, masked_grn, masked_layer_norm

# name -> (depths, widths); the official factories are mac_tiny, mac_small and mac_base (models/video_mac.py).
CONVNEXTS = {
    "convnextv2_atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "convnextv2_nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "convnextv2_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnextv2_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnextv2_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}


class GRN(nn.Module):
    """ConvNeXt-V2 Global Response Normalisation, channels-last, the official dense layout (1, 1, 1, C)."""

    eps = 1e-6

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    # ``masked_grn`` reads weight / bias / eps (timm's names).
    weight = property(lambda self: self.gamma)
    bias = property(lambda self: self.beta)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C), statistics per sample (dense semantics)."""
        return masked_grn(self, x, None)


class Block(nn.Module):
    """ConvNeXt-V2 block; registration order as the official code (pwconv2 before grn in the state dict)."""

    def __init__(self, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.grn = GRN(4 * dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, sm: SparseMask | None = None, grn_batch_global: bool = False) -> Tensor:
        """(B, C, H, W), zero at masked sites -> same; order dwconv, norm, pwconv1, act, grn, pwconv2."""
        h = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.act(self.pwconv1(self.norm(h)))  # (B, H, W, 4C)
        h = masked_grn(self.grn, h, sm, batch_global=grn_batch_global, channels_last=True)
        h = self.pwconv2(h).permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + apply_mask(self.drop_path(h), sm)


class VideoMACConvNeXtV2(nn.Module):
    """The official VideoMAC ConvNeXt-V2 encoder; ``forward(x, mask)`` masked, ``forward(x)`` dense.

    Args:
        model_name: ``convnextv2_tiny`` / ``convnextv2_small`` (official), or atto / nano / base sizes.
        output_stride: 32 only (ConvNeXt keeps its natural strides; take ``stage=3`` for stride 16).
        drop_path_rate: stochastic depth (0 in the official scripts).
        grn_batch_global: in masked (pre-training) forwards, take the GRN statistic over all visible sites
            of the batch, as MinkowskiEngine's GRN on ``x.F`` does; dense forwards are always per sample.
    """

    def __init__(
        self,
        model_name: str = "convnextv2_small",
        output_stride: int = 32,
        drop_path_rate: float = 0.0,
        grn_batch_global: bool = False,
    ):
        super().__init__()
        if model_name not in CONVNEXTS:
            raise ValueError(
                f"official VideoMAC ConvNeXt-V2 must be one of {sorted(CONVNEXTS)}, got {model_name!r}"
            )
        if output_stride != 32:
            raise ValueError(
                f"the official ConvNeXt-V2 has natural strides only (32, got {output_stride}): "
                "use feature_stage 3 (stride 16) or 2 (stride 8) instead"
            )
        depths, dims = CONVNEXTS[model_name]
        self.model_name, self.output_stride, self.reduction = model_name, 32, 32
        self.grn_batch_global = grn_batch_global
        self.num_features = dims[-1]
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
            )
        total = sum(
            depths
        )  # linearly increasing stochastic depth (torch.linspace without a tensor: meta-safe)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(nn.Sequential(*[Block(dims[i], rates[start + j]) for j in range(depth)]))
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm2d(dims[i], eps=1e-6))

    def forward(self, x: Tensor, mask: Tensor | None = None, stage: int = 4) -> Tensor:
        """Encode images, optionally with masked patches removed.

        Args:
            x: (B, 3, H, W) images.
            mask: (B, 1, h, w) patch mask, 1 = masked; H/h must be a multiple of 32. None = dense network.
            stage: last stage to run (1..4); the output is that stage's ``norm{stage-1}``.

        Returns:
            (B, C_stage, H/2**(stage+1), W/2**(stage+1)), zero at masked sites.
        """
        sm = None if mask is None else SparseMask(mask)
        batch_global = self.grn_batch_global and sm is not None
        x = apply_mask(self.downsample_layers[0](x), sm)  # (B, C0, H/4, W/4)
        for i in range(stage):
            if i > 0:
                ln, conv = self.downsample_layers[i]
                x = apply_mask(conv(masked_layer_norm(ln, x, sm)), sm)  # (B, C_i, H_i, W_i)
            for blk in self.stages[i]:
                x = blk(x, sm, batch_global)
            x = masked_layer_norm(getattr(self, f"norm{i}"), x, sm)
        return x

    @torch.no_grad()
    def init_weights(self, scheme: str = "official") -> None:
        """Initialise as the official code (``official``) or with std 0.02 everywhere (``standard``).

        ``official`` is ``VideoMAC._init_weights_convnextv2`` (models/video_mac.py, inherited from FCMAE): the
        2x2 ME convs trunc-normal std 0.02; the ME depthwise 7x7, the ME Linears and the dense stem conv
        trunc-normal std 1 (timm's default std: the call passes none); all biases 0, LN (1, 0), GRN zeros.
        ``standard`` is the encoder's own (never called) ``_init_weights``.
        """
        wide = 1.0 if scheme == "official" else 0.02
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                is_down = isinstance(m, nn.Conv2d) and m.kernel_size == (2, 2)
                trunc_normal_(m.weight, std=0.02 if is_down else wide)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | LayerNorm2d):
                nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
            elif isinstance(m, GRN):
                nn.init.zeros_(m.gamma), nn.init.zeros_(m.beta)
