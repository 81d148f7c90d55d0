"""Published checkpoint layouts -> the encoder's state dict in timm naming (a pure function, no I/O).

``encoder_state_dict(obj)`` recognises, in this order:

- ``corrmae``: a corrmae Lightning checkpoint (``state_dict`` + ``hyper_parameters``); the encoder is the
  ``encoder.`` sub-dict (SiamMAE; VideoMAC: ``online.encoder.``), already in timm naming.
- ``dino-full``: DINO's training ``checkpoint.pth`` (``student``, ``teacher``, ``optimizer``, ...). The
  teacher is taken, as DINO's evaluation scripts do (``--checkpoint_key teacher``), and the DDP
  ``module.`` and multi-crop-wrapper ``backbone.`` prefixes are stripped; the DINO ``head.`` is dropped.
- ``cropmae`` / ``mae``: MAE's ``save_model`` layout ``{"model", "optimizer", "epoch", "scaler", "args"}``,
  which CropMAE reuses (``models/components/mae/util/misc.py``); CropMAE's decoder has cross-attention
  blocks (``decoder_blocks.*.multihead_attn``). The decoder (``decoder_*``) and ``mask_token`` are dropped.
- ``state_dict``: any other ``{"state_dict": ...}`` wrapper.
- ``plain``: a bare tensor dict, e.g. DINO's published backbones (``dino_deitsmall16_pretrain.pth``),
  timm/safetensors files or ``corrmae export`` output; ``module.`` / ``backbone.`` prefixes stripped.
  ``corrmae-module``: a bare dict with ``encoder.*`` keys (a corrmae module's ``state_dict()``).

``checkpoint_key`` picks a top-level entry explicitly (e.g. ``student``) and then strips the same prefixes.
"""

from torch import Tensor

_STRIP = ("module.", "backbone.")
_NOT_ENCODER = ("head.", "decoder", "mask_token", "fc_norm.", "fc.")


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove leading DDP ``module.`` and DINO ``backbone.`` prefixes (in any order, repeated)."""
    out = {}
    for key, value in state.items():
        while key.startswith(_STRIP):
            key = key[len(next(p for p in _STRIP if key.startswith(p))) :]
        out[key] = value
    return out


def _encoder_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(_NOT_ENCODER)}


def _sub_dict(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def detect_layout(obj: dict) -> str:
    """The layout name of a loaded checkpoint object (see the module docstring); raises if unknown."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a checkpoint dict, got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), dict) and "hyper_parameters" in obj:
        return "corrmae"
    if isinstance(obj.get("teacher"), dict) and isinstance(obj.get("student"), dict):
        return "dino-full"
    if _is_tensor_dict(obj.get("model")):
        return "cropmae" if any(".multihead_attn." in k for k in obj["model"]) else "mae"
    if _is_tensor_dict(obj.get("state_dict")):
        return "state_dict"
    if _is_tensor_dict(obj):
        return "plain"
    raise ValueError(
        f"unrecognised checkpoint layout; top-level keys {sorted(map(str, obj))[:12]} "
        "(pass checkpoint_key / --checkpoint-key to pick the entry holding the weights)"
    )


def encoder_state_dict(obj: dict, checkpoint_key: str | None = None) -> tuple[dict[str, Tensor], str]:
    """Encoder weights of a loaded checkpoint, prefixes stripped and non-encoder tensors dropped.

    Args:
        obj: what ``torch.load`` (or ``safetensors.load_file``) returned.
        checkpoint_key: take ``obj[checkpoint_key]`` instead of detecting the layout.

    Returns:
        (state dict in the encoder's own naming, layout name).
    """
    if checkpoint_key is not None:
        if not isinstance(obj, dict) or checkpoint_key not in obj:
            keys = sorted(map(str, obj))[:12] if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"checkpoint_key {checkpoint_key!r} not in the checkpoint ({keys})")
        inner = obj[checkpoint_key]
        if not _is_tensor_dict(inner):
            return encoder_state_dict(inner)[0], f"key:{checkpoint_key}"
        return _encoder_only(_strip_prefixes(inner)), f"key:{checkpoint_key}"
    layout = detect_layout(obj)
    if layout == "corrmae":
        state = obj["state_dict"]
        prefix = "encoder." if any(k.startswith("encoder.") for k in state) else "online.encoder."
        sub = _sub_dict(state, prefix)
        if not sub:
            raise ValueError(f"corrmae checkpoint without encoder.* weights (keys {sorted(state)[:8]})")
        return sub, layout
    inner = {"dino-full": "teacher", "cropmae": "model", "mae": "model", "state_dict": "state_dict"}
    state = _strip_prefixes(obj[inner[layout]] if layout in inner else obj)
    if layout == "plain" and any(
        k.startswith("encoder.") for k in state
    ):  # a corrmae module's own state_dict
        return _sub_dict(state, "encoder."), "corrmae-module"
    return _encoder_only(state), layout
