"""FCMAE-style convolutional decoder (ConvNeXt-V2 §3.1, VideoMAC §3.2 "MAC decoder")."""

import torch
from timm.layers import trunc_normal_
from timm.models.convnext import ConvNeXtBlock
from torch import Tensor, nn


class ConvDecoder(nn.Module):
    """1x1 projection, mask-token fill, ConvNeXt(-V2) block(s), 1x1 head to one patch of pixels per cell.

    Args:
        in_dim: encoder output width (768 CNXv2-S, 2048 RN50, 512 RN18).
        decoder_dim: decoder width (512; VideoMAC Table 3c).
        depth: number of ConvNeXt blocks (1; Table 3b).
        patch_size: pixels per output cell p (32 = the encoder's total stride).
        out_chans: image channels.
        use_grn: ConvNeXt-V2 blocks (GRN, no layer scale) as in FCMAE/VideoMAC; False = ConvNeXt-V1 blocks.
        kernel_size: depthwise kernel of the blocks (7; at a 7x7 grid it is effectively global).
    """

    def __init__(
        self,
        in_dim: int,
        decoder_dim: int = 512,
        depth: int = 1,
        patch_size: int = 32,
        out_chans: int = 3,
        use_grn: bool = True,
        kernel_size: int = 7,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_dim, decoder_dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        self.blocks = nn.Sequential(
            *[
                ConvNeXtBlock(
                    decoder_dim,
                    kernel_size=kernel_size,
                    use_grn=use_grn,
                    ls_init_value=None if use_grn else 1e-6,
                )
                for _ in range(depth)
            ]
        )
        self.pred = nn.Conv2d(decoder_dim, patch_size**2 * out_chans, kernel_size=1)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, scheme: str = "standard", family: str = "convnext") -> None:
        """Initialise the decoder; the mask token is normal(std 0.02) in every scheme.

        Args:
            scheme: ``standard``: ConvNeXt-standard trunc-normal std 0.02, zero bias. ``official``: what
                ``VideoMAC.apply(_init_weights_*)`` does to the decoder (models/video_mac.py): every Conv2d
                (proj, depthwise, pred) trunc-normal std 1 (timm's default std), the Linears keep PyTorch's
                default (the official init touches only MinkowskiLinear), LN (1, 0), GRN zeros.
            family: ``convnext`` zeroes the conv biases in the official scheme; ``resnet`` keeps PyTorch's
                default biases (``_init_weights_resnet`` leaves them).
        """
        if scheme not in ("standard", "official"):
            raise ValueError(f"init must be 'official' or 'standard', got {scheme!r}")
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if not isinstance(m, nn.Conv2d | nn.Linear):
                continue
            if scheme == "standard":
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
                continue
            m.reset_parameters()  # PyTorch defaults (Linear weights and the ResNet-mode conv biases stay so)
            if isinstance(m, nn.Conv2d):
                trunc_normal_(m.weight, std=1.0)
                if family == "convnext" and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Predict every patch.

        Args:
            x: (B, C, h, w) encoder features (zero at masked cells).
            mask: (B, 1, h, w) with 1 = masked, or None (no token fill).

        Returns:
            (B, L, p*p*out_chans) with L = h*w in row-major order, matching ``patchify``.
        """
        x = self.proj(x)  # (B, D, h, w)
        if mask is not None:
            m = mask.to(x.dtype)
            x = x * (1.0 - m) + self.mask_token.to(x.dtype) * m  # the encoder left zeros there
        x = self.pred(self.blocks(x))  # (B, p*p*3, h, w)
        return x.flatten(2).transpose(1, 2)  # (B, L, p*p*3)
