"""Sparse (masked-dense) ResNet encoder built from a timm ResNet; its weights ARE the timm model's weights.

``SparseResNet("resnet50")`` holds ``timm.create_model("resnet50", num_classes=0)`` as ``self.model`` and
walks its modules with an explicit :class:`~lightning_modules.components.sparse.SparseMask`:

* the image is zeroed at masked pixels (the 7x7 stem conv overlaps patch borders);
* every BatchNorm uses visible-site statistics and zeroes masked sites (so a conv followed by a BN needs no
  extra re-mask: the masked BN ignores masked inputs);
* ReLU maps 0 to 0 and the residual add keeps zeros, so neither re-masks;
* the stem max-pool is exact on the non-negative ReLU output but spreads values into masked sites, so it
  re-masks.

With ``mask=None`` the forward is the dense timm network, op for op. This is timm's standard BatchNorm
ResNet (``encoder_variant: timm``); the official code's LayerNorm/GELU patchify-stem ResNet is
``official_resnet.py``.
"""

import timm
import torch
from torch import Tensor, nn

from lightning_modules.components.sparse import SparseMask, apply_mask, masked_batch_norm, masked_max_pool

_POINTWISE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Identity)


def _is_identity(m: nn.Module | None) -> bool:
    return m is None or isinstance(m, nn.Identity)


class SparseResNet(nn.Module):
    """A timm ResNet that accepts a patch mask.

    Args:
        model_name: any timm ResNet with plain conv/BN downsampling (``resnet18``, ``resnet50``, ...).
        pretrained: load timm's pretrained weights (needs the weights locally; off by default).
        output_stride: 32 for pre-training; 16/8 build timm's dilated variant (dense use only).
        drop_path_rate: stochastic depth (per sample, exact under masking).
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        pretrained: bool = False,
        output_stride: int = 32,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.model = timm.create_model(
            model_name,
            pretrained=pretrained,
            num_classes=0,
            output_stride=output_stride,
            drop_path_rate=drop_path_rate,
        )
        if not hasattr(self.model, "layer4"):
            raise ValueError(f"{model_name!r} is not a timm ResNet (no layer1..layer4)")
        self.model_name = model_name
        self.output_stride = output_stride
        self.num_features = self.model.num_features
        self.reduction = 32
        self._check_supported()

    def _check_supported(self) -> None:
        """Reject layers whose masked emulation would not be exact (SE pooling, avg-pool shortcuts, ...)."""
        for name, m in self.model.named_modules():
            if isinstance(m, nn.AvgPool2d | nn.AdaptiveAvgPool2d) and not name.startswith("global_pool"):
                raise ValueError(
                    f"{self.model_name}: average pooling {name!r} mixes masked zeros into visible sites"
                )
        for layer in self.layers():
            for blk in layer:
                for attr in ("se", "aa", "drop_block"):
                    if not _is_identity(getattr(blk, attr, None)):
                        raise ValueError(
                            f"{self.model_name}: block attribute {attr!r} has no sparse emulation"
                        )

    def layers(self) -> list[nn.Sequential]:
        """The four residual stages."""
        return [self.model.layer1, self.model.layer2, self.model.layer3, self.model.layer4]

    def run_seq(self, mods: nn.Module, x: Tensor, sm: SparseMask | None) -> Tensor:
        """Run a conv/BN/activation/max-pool module (or a Sequential of them) under the mask."""
        if isinstance(mods, nn.Sequential):
            for m in mods:
                x = self.run_seq(m, x, sm)
            return x
        if isinstance(mods, nn.BatchNorm2d):
            return masked_batch_norm(mods, x, sm)
        if isinstance(mods, nn.MaxPool2d):
            return masked_max_pool(mods, x, sm)
        if isinstance(mods, (nn.Conv2d, *_POINTWISE)):
            # A conv's masked outputs are cleared by the BatchNorm that always follows it in a ResNet.
            return mods(x)
        raise ValueError(f"{self.model_name}: no sparse emulation for {type(mods).__name__}")

    def forward_block(self, blk: nn.Module, x: Tensor, sm: SparseMask | None) -> Tensor:
        """Timm BasicBlock / Bottleneck with masked BatchNorms (same op order as timm)."""
        shortcut = x
        convs = [blk.conv1, blk.conv2] + ([blk.conv3] if hasattr(blk, "conv3") else [])
        bns = [blk.bn1, blk.bn2] + ([blk.bn3] if hasattr(blk, "bn3") else [])
        acts = [blk.act1] + ([blk.act2] if hasattr(blk, "conv3") else [])
        for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
            x = masked_batch_norm(bn, conv(x), sm)
            if i < len(acts):
                x = acts[i](x)
        if blk.drop_path is not None:
            x = blk.drop_path(x)
        if blk.downsample is not None:
            shortcut = self.run_seq(blk.downsample, shortcut, sm)
        x = x + shortcut
        return (blk.act3 if hasattr(blk, "act3") else blk.act2)(x)

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
        x = apply_mask(x, sm)
        x = self.run_seq(m.conv1, x, sm)
        x = m.act1(masked_batch_norm(m.bn1, x, sm))
        x = self.run_seq(m.maxpool, x, sm)
        for layer in self.layers()[:stage]:
            for blk in layer:
                x = self.forward_block(blk, x, sm)
        return x

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict that loads strictly into ``timm.create_model(model_name, num_classes=0)``."""
        return self.model.state_dict()
