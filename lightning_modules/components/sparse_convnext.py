"""Sparse (masked-dense) ConvNeXt(-V2) encoder built from a timm ConvNeXt; its weights ARE timm's weights.

Masking points (FCMAE §3.1 / SparK), with x zero at masked sites:

* stem: 4x4/s4 patchify conv + LayerNorm2d, then re-mask (LN(0) = beta);
* stage entry: LayerNorm2d + 2x2/s2 conv; the mask is constant on each 2x2 block, so visible outputs read only
  visible inputs and one re-mask after the conv suffices;
* block: depthwise 7x7 conv, LN, Linear, GELU, re-mask (GRN statistics must see zeros at masked sites), GRN,
  Linear, then the residual branch is re-masked before the add. The ops between are per-site, so masked
  garbage in the branch never reaches a visible site.

The stages follow timm's (and FCMAE's) ConvNeXt-V2: no per-stage ``norm{i}`` in the main path as in the
official VideoMAC encoder (documented deviation), so the pre-training encoder and the dense downstream model
are the same function. ``mask=None`` runs timm's own forward.
"""

import timm
import torch
from timm.layers import GlobalResponseNormMlp
from torch import Tensor, nn

from lightning_modules.components.sparse import SparseMask, apply_mask, masked_grn


class SparseConvNeXt(nn.Module):
    """A timm ConvNeXt / ConvNeXt-V2 that accepts a patch mask.

    Args:
        model_name: e.g. ``convnextv2_tiny``, ``convnextv2_small``, ``convnextv2_atto`` or a ConvNeXt-V1 name.
        pretrained: load timm's pretrained weights (off by default).
        output_stride: 32 for pre-training; 16/8 build timm's dilated variant (dense use only).
        drop_path_rate: stochastic depth (per sample, exact under masking).
        grn_batch_global: GRN statistic over the whole batch's visible sites (MinkowskiEngine) instead
            of per sample (dense behaviour, default).
    """

    def __init__(
        self,
        model_name: str = "convnextv2_small",
        pretrained: bool = False,
        output_stride: int = 32,
        drop_path_rate: float = 0.0,
        grn_batch_global: bool = False,
    ):
        super().__init__()
        self.model = timm.create_model(
            model_name,
            pretrained=pretrained,
            num_classes=0,
            output_stride=output_stride,
            drop_path_rate=drop_path_rate,
        )
        if not hasattr(self.model, "stages") or not hasattr(self.model, "stem"):
            raise ValueError(f"{model_name!r} is not a timm ConvNeXt (no stem/stages)")
        self.model_name = model_name
        self.output_stride = output_stride
        self.grn_batch_global = grn_batch_global
        self.num_features = self.model.num_features
        self.reduction = 32
        for blk in self.blocks():
            if not isinstance(blk.shortcut, nn.Identity):
                raise ValueError(f"{model_name}: blocks with a projection shortcut have no sparse emulation")

    def blocks(self) -> list[nn.Module]:
        """All ConvNeXt blocks."""
        return [blk for stage in self.model.stages for blk in stage.blocks]

    def forward_mlp(self, mlp: nn.Module, x: Tensor, sm: SparseMask | None, channels_last: bool) -> Tensor:
        """Timm Mlp / GlobalResponseNormMlp with the GRN statistic taken over visible sites."""
        if not isinstance(mlp, GlobalResponseNormMlp):
            return mlp(x)  # per-site only: masked garbage is cleared by the branch re-mask
        x = mlp.drop1(mlp.act(mlp.fc1(x)))
        x = masked_grn(mlp.grn, x, sm, batch_global=self.grn_batch_global, channels_last=channels_last)
        return mlp.drop2(mlp.fc2(x))

    def forward_block(self, blk: nn.Module, x: Tensor, sm: SparseMask | None) -> Tensor:
        """Timm ConvNeXtBlock (same op order) with the residual branch re-masked."""
        h = blk.conv_dw(x)
        if blk.use_conv_mlp:
            h = self.forward_mlp(blk.mlp, blk.norm(h), sm, channels_last=False)
        else:
            h = h.permute(0, 2, 3, 1)  # (B, H, W, C)
            h = self.forward_mlp(blk.mlp, blk.norm(h), sm, channels_last=True)
            h = h.permute(0, 3, 1, 2)  # (B, C, H, W)
        if blk.gamma is not None:
            h = h.mul(blk.gamma.reshape(1, -1, 1, 1))
        return x + apply_mask(blk.drop_path(h), sm)

    def forward(self, x: Tensor, mask: Tensor | None = None, stage: int = 4) -> Tensor:
        """Encode images, optionally with masked patches removed.

        Args:
            x: (B, 3, H, W) images.
            mask: (B, 1, h, w) patch mask, 1 = masked; H/h must be a multiple of 32. None = dense network.
            stage: last stage to run (1..4); stage s has stride 2**(s+1) (at most ``output_stride``).

        Returns:
            (B, C_stage, H/stride, W/stride), zero at masked sites.
        """
        if mask is None and stage == 4:
            return self.model.forward_features(x)
        sm = None if mask is None else SparseMask(mask)
        m = self.model
        x = apply_mask(m.stem(x), sm)
        for stage_mod in list(m.stages)[:stage]:
            if not isinstance(stage_mod.downsample, nn.Identity):
                x = apply_mask(stage_mod.downsample(x), sm)
            for blk in stage_mod.blocks:
                x = self.forward_block(blk, x, sm)
        if stage == 4:
            x = apply_mask(m.norm_pre(x), sm)
        return x

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict that loads strictly into ``timm.create_model(model_name, num_classes=0)``."""
        return self.model.state_dict()
