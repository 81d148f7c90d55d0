"""Exponential-moving-average target networks (BYOL / DINO / VideoMAC §3.3)."""

import copy
from typing import Literal

import torch
from torch import nn

BufferPolicy = Literal["ema", "copy", "keep"]


def make_ema_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy: starts equal to ``module``, shares no storage, never receives gradients."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def update_ema(target: nn.Module, online: nn.Module, momentum: float, buffers: BufferPolicy = "ema") -> None:
    """theta_t <- m * theta_t + (1 - m) * theta_o for every parameter (in place).

    Args:
        target: the EMA network (same architecture as ``online``).
        online: the network trained by the optimiser.
        momentum: m in [0, 1]; 1 freezes the target, 0 copies the online weights.
        buffers: what happens to buffers (BatchNorm running statistics): ``ema`` averages floating buffers
            like parameters and copies integer ones (timm ``ModelEmaV2``); ``copy`` copies them; ``keep``
            leaves them to the target's own forward passes.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError(f"target has {len(t_params)} parameters, online has {len(o_params)}")
    torch._foreach_lerp_(t_params, [p.detach() for p in o_params], 1.0 - momentum)
    if buffers == "keep":
        return
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        if buffers == "ema" and tb.is_floating_point():
            tb.lerp_(ob, 1.0 - momentum)
        else:
            tb.copy_(ob)
