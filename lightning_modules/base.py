"""The contract every corrmae method follows, and the optimisation both methods share."""

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lightning_modules.components.optim import param_groups_weight_decay
from lightning_modules.components.schedules import warmup_cosine


class VideoSSLModule(L.LightningModule):
    """Base class: subclasses implement ``extract_features`` and ``feature_stride`` for label propagation.

    Optimisation (MAE recipe, SiamMAE Table 4a / VideoMAC §4.1): AdamW with decay / no-decay groups,
    lr = base_lr * effective_batch / 256, per-iteration linear warm-up then cosine decay.
    Subclasses set ``base_lr``, ``weight_decay``, ``betas``, ``warmup_epochs`` and ``min_lr_ratio``.
    """

    base_lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: float
    min_lr_ratio: float

    # ----------------------------------------------------------------- evaluation contract
    def extract_features(self, frames: Tensor) -> Tensor:
        """Dense features for label propagation.

        Args:
            frames: (B, 3, H, W) ImageNet-normalised, H and W divisible by ``feature_stride``.

        Returns:
            (B, D, H/stride, W/stride) features (not yet L2-normalised).
        """
        raise NotImplementedError

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell of ``extract_features``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- optimisation
    def trainable_module(self) -> nn.Module:
        """The module whose parameters the optimiser updates (VideoMAC excludes its EMA target)."""
        return self

    def no_weight_decay_names(self) -> tuple[str, ...]:
        """Parameter-name substrings that are never decayed."""
        return ("pos_embed", "cls_token", "mask_token")

    def effective_batch_size(self) -> int:
        """Per-device batch x devices x nodes x gradient accumulation."""
        dm = getattr(self.trainer, "datamodule", None)
        per_device = getattr(dm, "batch_size", None) or 1
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def schedule_steps(self) -> tuple[int, int]:
        """(warm-up steps, total optimiser steps) of the run, from the trainer's estimate."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        steps_per_epoch = max(1, math.ceil(total / epochs))
        return int(self.warmup_epochs * steps_per_epoch), total

    def configure_optimizers(self):
        """AdamW over decay/no-decay groups, LambdaLR(warm-up + cosine) stepped every iteration."""
        eff_batch = self.effective_batch_size()
        lr = self.base_lr * eff_batch / 256
        rank_zero_info(f"base lr {self.base_lr:.3g} x effective batch {eff_batch} / 256 = actual lr {lr:.3g}")
        groups = param_groups_weight_decay(
            self.trainable_module(), self.weight_decay, self.no_weight_decay_names()
        )
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(self.betas))
        warmup, total = self.schedule_steps()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, self.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
