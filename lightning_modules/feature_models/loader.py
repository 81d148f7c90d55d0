"""``load_feature_model``: the one way to get a dense feature extractor (eval-all, the callback, notebooks).

from lightning_modules import load_feature_model
net = load_feature_model(ckpt="runs/siammae/last.ckpt")  # a corrmae checkpoint
net = load_feature_model(model="vit_small_patch16_224", weights="dino_deitsmall16_pretrain.pth")
net = load_feature_model(model="pixels", patch_size=8)  # raw-pixel baseline
feats = net.extract_features(frames)  # (B, 3, H, W) -> (B, D, H/s, W/s), s = net.feature_stride
"""

import json
from pathlib import Path

from torch import nn

from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.feature_models.pixels import PixelFeatures
from lightning_modules.feature_models.timm_features import TimmFeatures
from lightning_modules.feature_models.videomac_official import build_videomac_features


def load_feature_model(
    ckpt: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    random_init: bool = False,
    patch_size: int = 8,
    stage: int | None = None,
    checkpoint_key: str | None = None,
    pos_embed: str | None = None,
    trust: bool = False,
) -> nn.Module:
    """A feature model in eval mode with ``extract_features(frames) -> (B, D, h, w)`` and ``feature_stride``.

    Args:
        ckpt: corrmae Lightning checkpoint (SiamMAE / VideoMAC), rebuilt from its hyper-parameters.
        model: ``pixels`` or a timm model name (ViT, ResNet, ConvNeXt); exclusive with ``ckpt``.
        weights: published weights for ``model``; the layout (DINO backbone or full checkpoint, MAE,
            CropMAE, corrmae) is detected by ``lightning_modules.feature_models.weight_layouts``.
        random_init: the same architecture with random weights (baseline).
        patch_size: patch size of the ``pixels`` baseline.
        stage: CNN stage (timm ``feature_info`` index); default the last.
        checkpoint_key: entry of ``weights`` holding the weights (e.g. ``student``); default: detect.
        pos_embed: ViT position embeddings at non-training sizes: ``dino`` (DINO ``interpolate_pos_encoding``)
            or ``interpolate`` (bicubic to the size); None keeps the model's own setting. Evaluation
            protocols set this per run (``callbacks.evaluation.features.pos_embed_rule``).
        trust: unpickle ``ckpt`` / ``weights`` fully (they can run code); default: weights-only loading,
            which refuses files that need more than tensors and a few plain types.
    """
    if ckpt and model:
        raise ValueError("give either ckpt (a corrmae checkpoint) or model (pixels | timm name), not both")
    net = build_feature_extractor(
        ckpt, model, weights, random_init, patch_size, stage, checkpoint_key=checkpoint_key, trust=trust
    )
    if pos_embed is not None:
        if not hasattr(net, "pos_embed_resize"):
            raise ValueError(
                f"{type(net).__name__} has no position embeddings to resize (pos_embed={pos_embed!r})"
            )
        net.pos_embed_resize = pos_embed
    return net.eval()


def export_stage(folder: Path) -> int | None:
    """The timm ``feature_info`` index that ``corrmae export`` recorded (None: a ViT's last block)."""
    try:
        info = json.loads((folder / "config.json").read_text()).get("corrmae", {})
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder}/config.json is not a readable export config ({err})") from err
    index = info.get("feature_index", -1)
    return None if index is None or index < 0 else int(index)


def build_feature_extractor(
    ckpt: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    random_init: bool = False,
    patch_size: int = 8,
    stage: int | None = None,
    checkpoint_key: str | None = None,
    trust: bool = False,
) -> nn.Module:
    """One entry point for eval-all: a corrmae checkpoint, ``pixels``, or a timm model name (+ weights)."""
    if ckpt:
        return load_corrmae_checkpoint(ckpt, random_init=random_init, trust=trust)
    if not model and weights and Path(weights).is_dir() and (Path(weights) / "config.json").is_file():
        # a corrmae export / timm hub folder names its own architecture and feature map
        model = f"local-dir:{Path(weights).resolve()}"
        stage = export_stage(Path(weights)) if stage is None else stage
    if not model:
        raise ValueError(
            "give a corrmae checkpoint (--ckpt), a model (--model pixels | <timm name>) or an export folder "
            f"(--weights DIR with config.json){f'; {weights} is not one' if weights else ''}"
        )
    if model == "pixels":
        return PixelFeatures(patch_size)
    if model.startswith("videomac_"):  # the authors' encoders
        return build_videomac_features(model, weights, random_init, stage)
    if random_init and weights:
        raise ValueError("--random-init and --weights are mutually exclusive")
    return TimmFeatures(model, weights=weights, stage=stage, checkpoint_key=checkpoint_key, trust=trust)
