"""Choice of sparse-convolution backend and the encoder factory used by VideoMAC."""

from typing import Literal

from torch import nn

from lightning_modules.components.sparse_convnext import SparseConvNeXt
from lightning_modules.components.sparse_resnet import SparseResNet

# One choice: the masked-dense emulation. The key stays so that configs name how the sparse convolution is
# computed; MinkowskiEngine's own sparse tensors would compute the same function.
SparseBackend = Literal["dense_masked"]


def check_backend(backend: str) -> None:
    """Validate ``sparse_backend`` (calls from Python bypass the CLI's check of the ``Literal``).

    Raises:
        ValueError: any name but ``dense_masked``; ``minkowski`` (accepted by older versions, where it
            always raised) gets its own message.
    """
    if backend == "dense_masked":
        return
    if backend == "minkowski":
        raise ValueError(
            "sparse_backend='minkowski' is not available: corrmae has no MinkowskiEngine encoders. "
            "sparse_backend='dense_masked' computes the same function in pure PyTorch "
            "(tests/lightning_modules/components/test_official_encoders.py checks it against a direct sparse "
            "reference)."
        )
    raise ValueError(f"sparse_backend must be 'dense_masked', got {backend!r}")


def build_sparse_encoder(
    model_name: str,
    backend: SparseBackend = "dense_masked",
    output_stride: int = 32,
    drop_path_rate: float = 0.0,
    grn_batch_global: bool = False,
    pretrained: bool = False,
) -> nn.Module:
    """Sparse encoder for any timm ResNet (``resnet*``) or ConvNeXt(-V2) (``convnext*``) name.

    Returns:
        A module with ``forward(x, mask=None, stage=4)``, ``num_features``, ``reduction`` and
        ``encoder_state_dict()`` (loads strictly into ``timm.create_model(model_name, num_classes=0)``).
    """
    check_backend(backend)
    if model_name.startswith("convnext"):
        return SparseConvNeXt(model_name, pretrained, output_stride, drop_path_rate, grn_batch_global)
    if "resnet" in model_name:
        return SparseResNet(model_name, pretrained, output_stride, drop_path_rate)
    raise ValueError(f"encoder_name must be a timm ResNet or ConvNeXt name, got {model_name!r}")
