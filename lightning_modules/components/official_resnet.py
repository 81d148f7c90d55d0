"""The VideoMAC "ResNet" (models/resnetv2_sparse.py): one module for sparse pre-training and dense use.

This is not a torchvision/timm ResNet. Following the official code (that file and tools/convert_pth.py):

* stem: 4x4 stride-4 conv with bias, then a channels-first LayerNorm (eps 1e-6); no 7x7 conv, no max-pool;
* every BatchNorm is a per-site LayerNorm (eps 1e-6) and every ReLU a GELU; convs have no bias;
* Bottleneck: 1x1 -> LN -> GELU -> 3x3 (stride here, v1.5) -> LN -> GELU -> 1x1 (x4) -> LN, add, GELU;
  BasicBlock: 3x3 (stride) -> LN -> GELU -> 3x3 -> LN, add, GELU;
* shortcut: 1x1 conv (stride s) then LN, wherever the stride or the width changes; stages 2-4 at stride 2;
  no final norm.

Parameter names are those ``tools/convert_pth.py`` writes (``stem.0``, ``layerK.B.convJ``, ``layerK.B.normJ``,
``layerK.0.downsample.{0,1}``), so a converted official checkpoint loads strictly.

Sparse semantics (masked-dense emulation, ``components/sparse.py``): the stem has no overlapping windows and
32-px patches align with its 4-px blocks, so it runs on the whole image and is masked after its LN, as the
official code does. A map is re-masked only where the next op reads neighbours or leaves the block: after
the LN before each 3x3 conv (LN(0) = beta), and once after the residual add + GELU (GELU(0) = 0). Between
those, 1x1 convs, LNs and GELUs are per site, so masked garbage never reaches a visible site (2 mask products
per block instead of one per LN: the masked-dense overhead). Strided 3x3/1x1 convs are exact because the mask
is constant on each stride block. The mask is nearest-upsampled to each feature map's own size (the official
code hard-codes a factor 8, i.e. 224 px inputs).

``output_stride`` 16/8 dilates layers 4 / 3-4 on the same weights (timm's rule), for dense downstream use.
"""

import torch
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from lightning_modules.components.sparse import SparseMask, apply_mask, masked_layer_norm


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv without bias; padding = dilation keeps ME's centred kernel (notes §Corrections)."""
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


def norm(dim: int) -> LayerNorm2d:
    """The per-site LayerNorm that replaces BatchNorm (eps 1e-6 as the official code)."""
    return LayerNorm2d(dim, eps=1e-6)


class BasicBlock(nn.Module):
    """Official sparse BasicBlock (LN/GELU); ``first_dilation`` applies to conv1 (timm's dilation rule)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride=1, downsample=None, dilation=1, first_dilation=1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, first_dilation)
        self.norm1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.norm2 = norm(planes)
        self.downsample = downsample
        self.act = nn.GELU()

    def forward(self, x: Tensor, sm: SparseMask | None = None) -> Tensor:
        """(B, Cin, H, W), zero at masked sites -> (B, planes, H/s, W/s), zero at masked sites."""
        out = self.act(masked_layer_norm(self.norm1, self.conv1(x), sm))  # re-masked: conv2 reads neighbours
        out = self.norm2(self.conv2(out))  # masked sites hold garbage until the single mask after the add
        return apply_mask(self.act(out + shortcut(self.downsample, x)), sm)


class Bottleneck(nn.Module):
    """Official sparse Bottleneck (LN/GELU, stride on the 3x3)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride=1, downsample=None, dilation=1, first_dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.norm1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride, first_dilation)
        self.norm2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.norm3 = norm(planes * 4)
        self.downsample = downsample
        self.act = nn.GELU()

    def forward(self, x: Tensor, sm: SparseMask | None = None) -> Tensor:
        """(B, Cin, H, W), zero at masked sites -> (B, 4 planes, H/s, W/s), zero at masked sites."""
        out = self.act(masked_layer_norm(self.norm1, self.conv1(x), sm))  # re-masked: conv2 reads neighbours
        out = self.act(self.norm2(self.conv2(out)))  # per-site ops only until the single mask after the add
        out = self.norm3(self.conv3(out))
        return apply_mask(self.act(out + shortcut(self.downsample, x)), sm)


def shortcut(downsample: nn.Sequential | None, x: Tensor) -> Tensor:
    """Identity, or the 1x1 conv + LN projection (per site: its masked outputs are cleared after the add)."""
    if downsample is None:
        return x
    conv, ln = downsample
    return ln(conv(x))


# name -> (block, blocks per stage); the official factories are mac_r18 and mac_r50 (models/video_mac.py).
RESNETS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class VideoMACResNet(nn.Module):
    """The official VideoMAC LN/GELU ResNet; ``forward(x, mask)`` masked, ``forward(x)`` dense.

    Args:
        model_name: ``resnet18`` / ``resnet50`` (the official models), or ``resnet34`` / ``resnet101``.
        output_stride: 32 (pre-training, the official network); 16 or 8 dilate the last stages.
        drop_path_rate: must be 0 (the official ResNet has no stochastic depth).
    """

    def __init__(self, model_name: str = "resnet50", output_stride: int = 32, drop_path_rate: float = 0.0):
        super().__init__()
        if model_name not in RESNETS:
            raise ValueError(f"official VideoMAC ResNet must be one of {sorted(RESNETS)}, got {model_name!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if drop_path_rate:
            raise ValueError("the official VideoMAC ResNet has no stochastic depth; use drop_path_rate 0")
        block, depths = RESNETS[model_name]
        self.model_name, self.output_stride, self.reduction = model_name, output_stride, 32
        self.stem = nn.Sequential(nn.Conv2d(3, 64, kernel_size=4, stride=4), norm(64))
        cin, net_stride, dilation = 64, 4, 1
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            stride, first_dilation = (1 if i == 0 else 2), dilation
            if stride > 1 and net_stride >= output_stride:  # dilate instead of striding (same weights)
                dilation, stride = dilation * stride, 1
            else:
                net_stride *= stride
            downsample = None
            if stride != 1 or cin != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                    norm(planes * block.expansion),
                )
            blocks = [block(cin, planes, stride, downsample, dilation, first_dilation)]
            cin = planes * block.expansion
            blocks += [block(cin, planes, 1, None, dilation, dilation) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = cin

    def layers(self) -> list[nn.Sequential]:
        """The four residual stages."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: Tensor, mask: Tensor | None = None, stage: int = 4) -> Tensor:
        """Encode images, optionally with masked patches removed.

        Args:
            x: (B, 3, H, W) images.
            mask: (B, 1, h, w) patch mask, 1 = masked; H/h must be a multiple of 32. None = dense network.
            stage: last stage to run (1..4).

        Returns:
            (B, C_stage, H/stride, W/stride), zero at masked sites.
        """
        sm = None if mask is None else SparseMask(mask)
        x = apply_mask(self.stem(x), sm)  # (B, 64, H/4, W/4)
        for layer in self.layers()[:stage]:
            for blk in layer:
                x = blk(x, sm)
        return x

    @torch.no_grad()
    def init_weights(self, scheme: str = "official") -> None:
        """Initialise as the official code (``official``) or with std 0.02 everywhere (``standard``).

        ``official`` is ``VideoMAC._init_weights_resnet`` (models/video_mac.py): ME convs trunc-normal std
        0.02, the dense stem conv trunc-normal std 1 (timm's default std) with its bias left at PyTorch's
        default, LN (1, 0). ``standard`` also zeroes the stem bias.
        """
        from timm.layers import trunc_normal_

        stem_conv = self.stem[0]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                trunc_normal_(m.weight, std=1.0 if (m is stem_conv and scheme == "official") else 0.02)
            elif isinstance(m, LayerNorm2d):
                nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
        if scheme == "standard":
            nn.init.zeros_(stem_conv.bias)
