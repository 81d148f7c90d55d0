"""VideoMAC encoder factory: the official VideoMAC encoders or the timm ones, both sparse (masked-dense)."""

from typing import Literal

from torch import nn

from lightning_modules.components.official_convnext import CONVNEXTS, VideoMACConvNeXtV2
from lightning_modules.components.official_resnet import RESNETS, VideoMACResNet
from lightning_modules.components.sparse_backends import SparseBackend, build_sparse_encoder, check_backend

EncoderVariant = Literal["official", "timm"]
InitScheme = Literal["official", "standard"]


def build_encoder(
    model_name: str,
    variant: EncoderVariant = "timm",
    backend: SparseBackend = "dense_masked",
    output_stride: int = 32,
    drop_path_rate: float = 0.0,
    grn_batch_global: bool = False,
    pretrained: bool = False,
) -> nn.Module:
    """A sparse encoder with ``forward(x, mask=None, stage=4)``, ``num_features``, ``reduction``.

    Args:
        model_name: ``resnet18`` / ``resnet50`` / ``convnextv2_tiny`` / ``convnextv2_small`` (and, for
            timm, any timm ResNet or ConvNeXt name).
        variant: ``official`` = the authors' LN/GELU patchify-stem ResNet and ConvNeXt-V2 with per-stage
            norms (state dicts as their ``convert_pth.py`` writes); ``timm`` = timm's BatchNorm ResNet /
            ConvNeXt-V2.
        backend: ``dense_masked``, the only one (see ``sparse_backends.check_backend``).
        output_stride: 32, or 16 / 8 (dilated, dense use; not for the official ConvNeXt).
        drop_path_rate: stochastic depth.
        grn_batch_global: ConvNeXt GRN statistic over the batch's visible sites (MinkowskiEngine).
        pretrained: timm weights (timm variant only).
    """
    if variant == "timm":
        return build_sparse_encoder(
            model_name, backend, output_stride, drop_path_rate, grn_batch_global, pretrained
        )
    if variant != "official":
        raise ValueError(f"encoder_variant must be 'official' or 'timm', got {variant!r}")
    check_backend(backend)
    if pretrained:
        raise ValueError(
            "pretrained=True loads timm weights, which do not fit the official VideoMAC encoders; "
            "load the authors' checkpoints with load_official_weights (or eval-all --model videomac_*)"
        )
    if model_name in RESNETS:
        return VideoMACResNet(model_name, output_stride, drop_path_rate)
    if model_name in CONVNEXTS:
        return VideoMACConvNeXtV2(model_name, output_stride, drop_path_rate, grn_batch_global)
    raise ValueError(
        f"encoder_variant 'official' has no encoder {model_name!r}; "
        f"choose from {sorted(RESNETS) + sorted(CONVNEXTS)}"
    )


def is_official(encoder: nn.Module) -> bool:
    """Whether an encoder is one of the official VideoMAC architectures."""
    return isinstance(encoder, VideoMACResNet | VideoMACConvNeXtV2)
