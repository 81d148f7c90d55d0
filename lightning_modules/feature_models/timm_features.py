"""timm backbones (ViT, ResNet, ConvNeXt) as dense feature models, random or from published weights.

Weights on disk (DINO, MAE, CropMAE, a ``.safetensors`` file or a ``corrmae export`` folder) are read through
``weight_layouts``; ViTs use ``dynamic_img_size`` so the position embeddings follow the evaluation grid
(``pos_embed_resize``: timm's resize to the size, or DINO's ``interpolate_pos_encoding``), and the features
are the last block after the final norm, prefix tokens dropped.
"""

from pathlib import Path

import timm
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from callbacks.safe_load import load_state_file
from lightning_modules.components import vit
from lightning_modules.feature_models.checkpoint import check_shapes
from lightning_modules.feature_models.weight_layouts import encoder_state_dict


def encoder_state(obj: object, path: Path | str, checkpoint_key: str | None = None) -> dict[str, Tensor]:
    """The one place where a loaded weights file becomes encoder weights (timm key names).

    ``obj`` is whatever the file held (a bare state dict, a DINO / MAE / CropMAE / Lightning wrapper); the
    layout is detected by ``weight_layouts`` unless ``checkpoint_key`` names the entry.
    """
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise ValueError(f"{path} is not a state dict (a {kind}, expected a name -> tensor dict)")
    if any(isinstance(v, Tensor) for v in obj.values()):  # a flat dict must hold tensors only
        others = sorted(str(k) for k, v in obj.items() if not isinstance(v, Tensor))
        if others:
            n = len(others)
            raise ValueError(f"{path} is not a state dict: {n} entries are not tensors ({others[:6]})")
    try:
        state, layout = encoder_state_dict(obj, checkpoint_key)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    rank_zero_info(f"{path}: checkpoint layout {layout}")
    return state


def weights_file(path: str | Path) -> Path:
    """A weights path as given to ``--weights``: a file, or a ``corrmae export`` folder (its safetensors)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} is a folder without model.safetensors (not a corrmae export)")
        return path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


class TimmFeatures(nn.Module):
    """A timm backbone as a dense feature extractor.

    Args:
        model_name: timm model name, e.g. ``vit_small_patch16_224``, ``resnet50``, ``convnextv2_small``.
        weights: a state-dict file (``.pth``/``.pt``/``.safetensors``); None = random initialisation.
        stage: CNN stage index (timm ``feature_info``) whose map is used; None = the last stage. ViTs
            always use the last block (after the final norm).
        strict: raise when encoder weights are missing (a mismatched checkpoint); otherwise warn.
        checkpoint_key: entry of the checkpoint holding the weights; None = detect the layout.
        pos_embed_resize: ViT position embeddings at other sizes: ``interpolate`` (timm, to the size) or
            ``dino`` (DINO ``interpolate_pos_encoding``); evaluation protocols set it.
        trust: unpickle ``weights`` fully (``--trust-checkpoint``); default: weights-only loading.
    """

    def __init__(
        self,
        model_name: str,
        weights: str | None = None,
        stage: int | None = None,
        strict: bool = True,
        checkpoint_key: str | None = None,
        pos_embed_resize: str = "interpolate",
        trust: bool = False,
    ):
        super().__init__()
        vit_name = "vit" in model_name or "deit" in model_name
        # An export folder ("local-dir:DIR") carries its own model_args (dynamic_img_size included).
        kwargs = {"dynamic_img_size": True} if vit_name and not model_name.startswith("local-dir:") else {}
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        self.model.eval()
        self.is_vit = hasattr(self.model, "patch_embed") and hasattr(self.model, "blocks")
        if self.is_vit:
            self.stage, self._stride = None, int(self.model.patch_embed.patch_size[0])
        else:
            info = self.model.feature_info
            self.stage = len(info) - 1 if stage is None else stage
            self._stride = int(info[self.stage]["reduction"])
        self.pos_embed_resize = pos_embed_resize
        if weights:
            self.load_weights(weights, strict, checkpoint_key, trust)

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell."""
        return self._stride

    def load_weights(
        self, path: str, strict: bool = True, checkpoint_key: str | None = None, trust: bool = False
    ) -> None:
        """Load published weights (layout detected), reporting missing / unexpected keys by name."""
        path = weights_file(path)
        state = encoder_state(load_state_file(path, trust), path, checkpoint_key)
        # Heads, MAE decoders and classifier norms are not part of the dense feature path.
        skip = ("head.", "decoder", "mask_token", "fc.", "fc_norm.")
        state = {k: v for k, v in state.items() if not k.startswith(skip)}
        check_shapes(self.model, state, path, f"timm model {type(self.model).__name__}")
        result = self.model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(skip)]
        if missing:
            msg = (
                f"{path} does not match timm model {type(self.model).__name__}: {len(missing)} missing keys "
                f"{missing[:12]}{' ...' if len(missing) > 12 else ''}; unexpected keys "
                f"{result.unexpected_keys[:12]}"
            )
            if strict:
                raise ValueError(msg)
            rank_zero_warn(msg)
        elif result.unexpected_keys:
            rank_zero_warn(f"{path}: ignoring unexpected keys {result.unexpected_keys[:12]}")
        rank_zero_info(f"loaded {len(state) - len(result.unexpected_keys)} tensors from {path}")

    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, D, H/s, W/s)."""
        if self.is_vit and self.pos_embed_resize == "dino":
            return vit.extract_patch_features(self.model, frames, pos_mode="dino")
        if self.is_vit:
            out = self.model.forward_intermediates(frames, indices=1, norm=True, intermediates_only=True)
        else:
            out = self.model.forward_intermediates(frames, indices=[self.stage], intermediates_only=True)
        return out[-1]
