"""corrmae's own Lightning checkpoints (SiamMAE / VideoMAC) rebuilt as feature models.

The class comes from the checkpoint's LightningCLI ``_class_path`` (or the caller's ``class_path``) and must
be a registered corrmae system (``lightning_modules.systems.registered_class``); the hyper-parameters that
class accepts rebuild it, then the weights are loaded with shape checks that name the file.
"""

import inspect
from pathlib import Path

from torch import Tensor, nn

from callbacks.safe_load import load_torch_file
from lightning_modules.base import VideoSSLModule
from lightning_modules.systems import registered_class, registered_systems


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
