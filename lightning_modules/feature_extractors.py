"""Dense feature extractors for label-propagation evaluation, all with the ``VideoSSLModule`` contract.

``extract_features(frames (B, 3, H, W) ImageNet-normalised) -> (B, D, H/s, W/s)`` and ``feature_stride = s``:

- ``load_corrmae_checkpoint``: a corrmae ``.ckpt`` (SiamMAE / VideoMAC), rebuilt from its hyper-parameters.
- ``TimmFeatures``: any timm ViT / ResNet / ConvNeXt, random or from a plain state dict on disk (DINO, MAE,
  ..., a ``.safetensors`` file or a ``corrmae export`` folder). ViTs use ``dynamic_img_size`` so the
  position embeddings are bicubically resized to the 480p grid (DINO's choice), and the features are the
  last block after the final norm, prefix tokens dropped.
- ``PixelFeatures``: raw-pixel patches (3*p*p values per p x p patch), the no-learning baseline.
"""

import inspect
from pathlib import Path

import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from lightning_modules.base import VideoSSLModule
from lightning_modules.components import vit
from lightning_modules.safe_load import load_state_file, load_torch_file, registered_class, registered_systems
from lightning_modules.weight_layouts import encoder_state_dict


def check_shapes(module: nn.Module, state: dict[str, Tensor], path: Path, target: str) -> None:
    """Raise a ``ValueError`` naming ``path`` and every tensor whose shape differs from ``module``'s.

    Why: ``load_state_dict`` reports shape mismatches as a RuntimeError that names neither the file nor
    the fix (e.g. a ViT-S checkpoint given with ``--model vit_base_patch16_224``).
    """
    own = module.state_dict()
    # A float parameter filled from integer / bool data (a quantised or mislabelled file) would load
    # silently (copy_ casts), so it is refused; float16 / bfloat16 / float64 are cast.
    kinds = [f"{k}: file {v.dtype} vs model {own[k].dtype}" for k, v in state.items()
             if k in own and own[k].is_floating_point() and not v.is_floating_point()]  # fmt: skip
    if kinds:
        raise ValueError(
            f"{path} does not match {target}: {len(kinds)} tensors have a non-floating dtype "
            f"({'; '.join(kinds[:6])}{' ...' if len(kinds) > 6 else ''})"
        )
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]  # fmt: skip
    if bad:
        raise ValueError(
            f"{path} does not match {target}: {len(bad)} tensors have other shapes "
            f"({'; '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}) — a different architecture or width"
        )


class PixelFeatures(nn.Module):
    """Raw-pixel patch features: each p x p patch flattened to a 3*p*p vector (stride p)."""

    def __init__(self, patch_size: int = 8):
        super().__init__()
        self.patch_size = patch_size

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell."""
        return self.patch_size

    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 3*p*p, H/p, W/p)."""
        b, _, h, w = frames.shape
        p = self.patch_size
        cols = F.unfold(frames, kernel_size=p, stride=p)  # (B, 3*p*p, h*w)
        return cols.reshape(b, -1, h // p, w // p)  # (B, 3*p*p, h, w)


def encoder_state(obj: object, path: Path | str, checkpoint_key: str | None = None) -> dict[str, Tensor]:
    """The one place where a loaded weights file becomes encoder weights (timm key names).

    ``obj`` is whatever the file held (a bare state dict, a DINO / MAE / CropMAE / Lightning wrapper); the
    layout is detected by ``lightning_modules.weight_layouts`` unless ``checkpoint_key`` names the entry.
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
        import timm

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


def _checkpoint_class(
    ckpt: dict, class_path: str | None, source: str | Path = "checkpoint"
) -> type[VideoSSLModule]:
    """The LightningModule class of a checkpoint: explicit, recorded by LightningCLI, or by key matching."""
    hparams = ckpt.get("hyper_parameters", {})
    path = class_path or hparams.get("_class_path")
    if path:
        return registered_class(str(path), source)
    keys = set(ckpt["state_dict"])
    for cls in registered_systems().values():
        try:
            if set(cls(**_init_kwargs(cls, hparams)).state_dict()) == keys:
                return cls
        except (TypeError, ValueError):
            continue
    raise ValueError(
        f"{source}: cannot tell the checkpoint's class; pass class_path, e.g. lightning_modules.SiamMAE"
    )


def _init_kwargs(cls: type, hparams: dict) -> dict:
    """The hyper-parameters that ``cls.__init__`` accepts (drops LightningCLI's ``_class_path`` etc.).

    An ``__init__`` taking ``**kwargs`` passes them on to its base class, so the bases' named parameters
    count too (the systems declare the shared optimisation arguments once, in ``VideoSSLModule``).
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return {k: v for k, v in hparams.items() if k in names}


def load_corrmae_checkpoint(
    path: str | Path, class_path: str | None = None, random_init: bool = False, trust: bool = False
) -> VideoSSLModule:
    """Rebuild a corrmae module from a ``.ckpt`` (hyper-parameters + class path) and load its weights.

    Args:
        path: Lightning checkpoint written by corrmae training.
        class_path: e.g. ``lightning_modules.SiamMAE``; default: recorded by LightningCLI or inferred.
        random_init: build the same architecture but keep its random initialisation (baseline).
        trust: unpickle fully (``--trust-checkpoint``); default: weights-only loading.

    Returns:
        The module in eval mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = load_torch_file(path, trust)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(
            f"{path} is not a Lightning checkpoint (no 'state_dict'); use --model <timm name> --weights"
        )
    hparams = ckpt.get("hyper_parameters", {})
    if not isinstance(hparams, dict):
        raise ValueError(f"{path}: hyper_parameters is a {type(hparams).__name__}, expected a dict")
    cls = _checkpoint_class(ckpt, class_path, path)
    module = cls(**_init_kwargs(cls, ckpt.get("hyper_parameters", {})))
    if not random_init:
        check_shapes(module, ckpt["state_dict"], path, cls.__name__)
        result = module.load_state_dict(ckpt["state_dict"], strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path} does not match {cls.__name__}: missing {result.missing_keys[:12]}, "
                f"unexpected {result.unexpected_keys[:12]}"
            )
    return module.eval()


def export_stage(folder: Path) -> int | None:
    """The timm ``feature_info`` index that ``corrmae export`` recorded (None: a ViT's last block)."""
    import json

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
    if model.startswith("videomac_"):  # the authors' encoders (lightning_modules/videomac_features.py)
        from lightning_modules.videomac_features import build_videomac_features

        return build_videomac_features(model, weights, random_init, stage)
    if random_init and weights:
        raise ValueError("--random-init and --weights are mutually exclusive")
    return TimmFeatures(model, weights=weights, stage=stage, checkpoint_key=checkpoint_key, trust=trust)
