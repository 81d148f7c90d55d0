"""Parameter groups for AdamW: no weight decay on biases, norms, position embeddings and special tokens."""

from collections.abc import Iterable

from torch import nn


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, skip_names: Iterable[str] = ()
) -> list[dict]:
    """Split trainable parameters into decay / no-decay groups (timm/MAE rule: 1-D tensors are not decayed).

    Args:
        model: module whose trainable parameters are grouped.
        weight_decay: decay of the decayed group.
        skip_names: substrings of parameter names never decayed (e.g. ``pos_embed``, ``cls_token``).

    Returns:
        Two param-group dicts for ``torch.optim.AdamW``.
    """
    skip = tuple(skip_names)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or any(s in name for s in skip):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
