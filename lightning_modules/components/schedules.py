"""Learning-rate and EMA-momentum schedules as pure functions of the optimiser step."""

import math
from typing import Literal


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then half-cosine to ``min_ratio``.

    MAE's ``adjust_learning_rate`` does the same per iteration; returned as a factor for ``LambdaLR``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def momentum_at(
    step: int,
    total_steps: int,
    base: float = 0.996,
    final: float = 1.0,
    schedule: Literal["constant", "cosine"] = "constant",
) -> float:
    """EMA momentum at an optimiser step (DINO/BYOL cosine schedule, or a constant)."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = min(1.0, step / max(1, total_steps))
        return final - (final - base) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown momentum schedule {schedule!r}")
