"""Loading the authors' VideoMAC checkpoints into the official encoders, strictly.

Two layouts are accepted:

* **converted**: what the official ``tools/convert_pth.py`` writes, a flat dict with the dense key names of
  :mod:`official_resnet` / :mod:`official_convnext` (this is how the released mac-r18/r50/tiny/small files are
  described);
* **MinkowskiEngine (raw pre-training)**: a ``checkpoint-*.pth`` of ``main_pretrain.py`` whose
  ``online_without_ddp`` (or ``target_without_ddp``) holds ``encoder.*`` keys with ME tensors. It is converted
  with the official rules (``tools/utils.py`` ``remap_checkpoint_keys`` / ``_r50``, notes §2.9):

  - ``encoder.`` is stripped; decoder, mask token, ``proj`` and ``pred`` keys are dropped;
  - an ME kernel [K², Cin, Cout] becomes [Cout, Cin, k, k]: permute to (Cout, Cin, K²), reshape, then swap
    the two spatial axes (ME enumerates the kernel with the first spatial coordinate, h, fastest);
  - a 2-D ME kernel is either a depthwise kernel [K², C] (-> [C, 1, k, k], same swap) or a 1x1 conv at
    stride 1, which ME stores as [Cin, Cout] (-> [Cout, Cin, 1, 1]); at stride 2 ME keeps (1, Cin, Cout).
    The official script tells the two apart by try/except (the first remapper raises on ResNet-50's
    1x1 kernels, then the ``_r50`` one reads every 2-D kernel as 1x1); here the key decides (``dwconv``),
    which gives the official result for all four released encoders;
  - the ``.ln.`` / ``.linear.`` wrapper levels are dropped; (1, C) biases become (C,) and GRN (1, C)
    parameters (1, 1, 1, C).
"""

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor, nn

DROPPED = ("decoder", "mask_token", "proj", "pred")
BRANCH_KEYS = {
    "online": ("online_without_ddp", "model_online"),
    "target": ("target_without_ddp", "model_target"),
}


def kernel_size(key: str, volume: int) -> int:
    """Side k of an ME kernel of volume K² (raises naming the key when K² is not a square)."""
    k = math.isqrt(volume)
    if k * k != volume:
        raise ValueError(f"{key}: kernel volume {volume} is not a square k*k (not a 2-D ME kernel)")
    return k


def convert_kernel(key: str, v: Tensor) -> Tensor:
    """One ME kernel -> the dense conv weight (see the module docstring)."""
    if v.dim() == 3:  # (K², Cin, Cout)
        vol, cin, cout = v.shape
        k = kernel_size(key, vol)
        return v.permute(2, 1, 0).reshape(cout, cin, k, k).transpose(2, 3).contiguous()
    if v.dim() == 2 and key.endswith("dwconv.kernel"):  # depthwise (K², C)
        vol, c = v.shape
        k = kernel_size(key, vol)
        return v.permute(1, 0).reshape(c, 1, k, k).transpose(2, 3).contiguous()
    if v.dim() == 2:  # 1x1 conv at stride 1: (Cin, Cout)
        return v.t().reshape(v.shape[1], v.shape[0], 1, 1).contiguous()
    raise ValueError(f"{key}: an ME kernel has 2 or 3 dimensions, got shape {tuple(v.shape)}")


def convert_minkowski_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A VideoMAC ME state dict (``online_without_ddp``) -> dense encoder keys/shapes (``convert_pth.py``)."""
    out: dict[str, Tensor] = {}
    for key, v in state.items():
        if any(d in key for d in DROPPED):
            continue
        k = key.removeprefix("module.").removeprefix("encoder.")
        if k.endswith(".kernel"):
            out[k.removesuffix(".kernel") + ".weight"] = convert_kernel(key, v)
            continue
        parts = k.split(".")
        if len(parts) >= 2 and parts[-2] in ("ln", "linear"):
            k = ".".join(parts[:-2] + parts[-1:])
        if k.endswith("bias") and v.dim() != 1:
            v = v.reshape(-1)
        elif ".grn." in k:
            v = v.reshape(1, 1, 1, -1)
        out[k] = v
    return out


def is_minkowski_layout(state: dict[str, Tensor]) -> bool:
    """An ME pre-training state dict has ``.kernel`` tensors (every sparse conv stores one)."""
    return any(k.endswith(".kernel") for k in state)


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` without running pickled code (official checkpoints also pickle their argparse args)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VideoMAC weights not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report which file and why, whatever the unpickler raised
        raise ValueError(f"{path}: not a readable VideoMAC checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors or a checkpoint dict, got {type(obj).__name__}")
    return obj


def encoder_tensors(obj: dict, branch: str = "online", source: str = "checkpoint") -> dict[str, Tensor]:
    """The encoder tensors of a converted file or a raw official checkpoint, in the dense layout."""
    if branch not in BRANCH_KEYS:
        raise ValueError(f"branch must be 'online' or 'target', got {branch!r}")
    state = obj
    for key in (*BRANCH_KEYS[branch], "model", "state_dict"):
        if key in obj and isinstance(obj[key], dict):
            state = obj[key]
            break
    state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    lightning = f"{branch}.encoder."  # a corrmae VideoMAC state dict (official variant)
    if any(k.startswith(lightning) for k in state):
        state = {k.removeprefix(lightning): v for k, v in state.items() if k.startswith(lightning)}
    if not state:
        raise ValueError(f"{source}: no tensors found (top-level keys {sorted(obj)[:10]})")
    if is_minkowski_layout(state):
        return convert_minkowski_state_dict(state)
    state = {k.removeprefix("module.").removeprefix("encoder."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not any(d in k for d in DROPPED)}


def load_official_weights(encoder: nn.Module, weights: str | Path | dict, branch: str = "online") -> None:
    """Load a converted or ME-layout VideoMAC checkpoint into an official encoder, strictly.

    Raises:
        ValueError: naming the file and listing the missing, unexpected and mis-shaped keys.
    """
    source = "state dict" if isinstance(weights, dict) else str(weights)
    obj = weights if isinstance(weights, dict) else read_checkpoint(weights)
    state = encoder_tensors(obj, branch, source)
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]  # fmt: skip
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} does not match the official {getattr(encoder, 'model_name', type(encoder).__name__)}: "
            f"{len(missing)} missing keys {missing[:10]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:10]}, "
            f"{len(shapes)} shape mismatches {shapes[:6]}; expected keys like {list(own)[:6]}"
        )
    encoder.load_state_dict(state, strict=True)
