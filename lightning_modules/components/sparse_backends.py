"""Choice of sparse-convolution backend and the encoder factory used by VideoMAC."""

from typing import Literal

from torch import nn

from lightning_modules.components.sparse_convnext import SparseConvNeXt
from lightning_modules.components.sparse_resnet import SparseResNet

SparseBackend = Literal["dense_masked", "minkowski"]


def check_backend(backend: str) -> None:
    """Validate ``sparse_backend``; the MinkowskiEngine backend is optional and import-gated.

    Raises:
        ValueError: unknown backend name.
        ImportError: ``minkowski`` selected but the ``MinkowskiEngine`` package is not installed.
        NotImplementedError: MinkowskiEngine is importable (no corrmae ME encoders exist yet).
    """
    if backend == "dense_masked":
        return
    if backend != "minkowski":
        raise ValueError(f"sparse_backend must be 'dense_masked' or 'minkowski', got {backend!r}")
    try:
        import MinkowskiEngine  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "sparse_backend='minkowski' needs the optional package 'MinkowskiEngine' (and its CUDA build), "
            "which is not installed; use sparse_backend='dense_masked' (the same function in pure PyTorch)."
        ) from err
    raise NotImplementedError(
        "MinkowskiEngine is importable, but corrmae ships no MinkowskiEngine encoders; "
        "sparse_backend='dense_masked' computes the same function (tests/components/test_sparse.py)."
    )


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
