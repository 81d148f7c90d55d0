"""The contract every corrmae method follows, and the optimisation recipe both methods share."""

import math
import os

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from callbacks.data_health import SkippedVideosLogger
from callbacks.nonfinite import NonFinite, NonFiniteGuard, check_policy
from lightning_modules.components.optim import param_groups_weight_decay
from lightning_modules.components.schedules import warmup_cosine


class VideoSSLModule(L.LightningModule):
    """Base class: subclasses implement ``extract_features`` and ``feature_stride``.

    That pair is the dense-feature contract evaluation relies on
    (``callbacks.evaluation.features.DenseFeatures``).

    Optimisation (MAE recipe, SiamMAE Table 4a / VideoMAC §4.1): AdamW with decay / no-decay groups,
    lr = base_lr * effective_batch / 256, per-iteration linear warm-up then cosine decay. The arguments below
    are shared by every system; subclasses take them as ``**kwargs`` and restate those whose default differs
    from MAE's recipe (VideoMAC: ``base_lr``, ``warmup_epochs``).

    Args:
        base_lr: lr per 256 samples (actual lr = base_lr * effective_batch / 256).
        warmup_epochs: linear warm-up length.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        min_lr_ratio: final lr / peak lr of the cosine.
        log_images_every_n_steps: TensorBoard image cadence in optimiser steps (0 disables).
        num_log_samples: samples per logged image grid.
        compile_model: ``torch.compile`` the networks in place (names in the state dict unchanged).
        mask_seed: mask RNG seed; None = the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``).
        nonfinite: a step with a non-finite loss or gradient is skipped (``skip``) or stops training
            (``raise``), naming the batch's videos: the ``callbacks.nonfinite.NonFiniteGuard`` this module
            installs (a guard listed in ``trainer.callbacks`` takes precedence).
        max_nonfinite_skips: skipped steps allowed over the run before raising anyway.
    """

    def __init__(
        self,
        base_lr: float = 1.5e-4,
        warmup_epochs: float = 40.0,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        min_lr_ratio: float = 0.0,
        log_images_every_n_steps: int = 500,
        num_log_samples: int = 4,
        compile_model: bool = False,
        mask_seed: int | None = None,
        nonfinite: NonFinite = "skip",
        max_nonfinite_skips: int = 10,
    ) -> None:
        super().__init__()
        # Records these and the calling subclass's own arguments (its __init__ frame) in one hparams dict.
        self.save_hyperparameters()
        check_policy(nonfinite, max_nonfinite_skips)

    # ----------------------------------------------------------------- evaluation contract
    def extract_features(self, frames: Tensor) -> Tensor:
        """Dense features for label propagation (see ``DenseFeatures``)."""
        raise NotImplementedError

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell of ``extract_features``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- callbacks every run needs
    def configure_callbacks(self) -> list[L.Callback]:
        """The non-finite-step guard and the skipped-video log, unless the trainer already has its own.

        Why here and not only in the CLI: ``nonfinite`` / ``max_nonfinite_skips`` are this module's
        arguments, so they hold for every Trainer that fits it (scripts and tests included).
        """
        defaults = [
            NonFiniteGuard(self.hparams.nonfinite, self.hparams.max_nonfinite_skips),
            SkippedVideosLogger(),
        ]
        have = self.trainer.callbacks
        return [cb for cb in defaults if not any(isinstance(c, type(cb)) for c in have)]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to write non-finite weights: a good ``last.ckpt`` must survive.

        Why in the module: Lightning skips callbacks' checkpoint hooks for weights-only checkpoints.
        """
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:
            raise FloatingPointError(f"refusing to save a checkpoint with non-finite values in {bad[:5]}")

    # ----------------------------------------------------------------- randomness
    def mask_generator(self, batch_idx: int, device: torch.device) -> torch.Generator:
        """RNG for this micro-batch's masks: a pure function of (seed, global_step, micro-batch, rank).

        Why: resuming from a checkpoint then redraws exactly the same masks (no global RNG state). The seed
        is ``mask_seed``, else the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``).
        """
        seed = self.hparams.mask_seed
        seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        micro = batch_idx % max(1, self.trainer.accumulate_grad_batches) if self._trainer else batch_idx
        key = ((seed * 1_000_003 + self.global_step) * 1_009 + micro) * 10_007 + self.global_rank
        return torch.Generator(device=device).manual_seed(key % (2**63))

    # ----------------------------------------------------------------- optimisation
    def trainable_module(self) -> nn.Module:
        """The module whose parameters the optimiser updates (VideoMAC excludes its EMA target)."""
        return self

    def no_weight_decay_names(self) -> tuple[str, ...]:
        """Parameter-name substrings that are never decayed."""
        return ("pos_embed", "cls_token", "mask_token")

    def effective_batch_size(self) -> int:
        """Per-device batch x devices x nodes x gradient accumulation.

        The per-device batch is the data module's ``batch_size``; with plain dataloaders (no data module,
        each item a ready batch) it counts as 1, and the lr line logged by ``configure_optimizers`` says so.
        """
        dm = self.trainer.datamodule
        per_device = 1 if dm is None else getattr(dm, "batch_size", None)
        if not isinstance(per_device, int) or per_device < 1:
            raise ValueError(
                f"{type(dm).__name__} has no positive integer batch_size (got {per_device!r}); the lr "
                "scaling (base_lr * effective batch / 256) needs the per-device batch size"
            )
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def schedule_steps(self) -> tuple[int, int]:
        """(warm-up steps, total optimiser steps) of the run, from the trainer's estimate."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        steps_per_epoch = max(1, math.ceil(total / epochs))
        return int(self.hparams.warmup_epochs * steps_per_epoch), total

    def configure_optimizers(self):
        """AdamW over decay/no-decay groups, LambdaLR(warm-up + cosine) stepped every iteration."""
        hp = self.hparams
        eff_batch = self.effective_batch_size()
        lr = hp.base_lr * eff_batch / 256
        source = "" if self.trainer.datamodule is not None else " (no data module: per-device batch 1)"
        rank_zero_info(
            f"base lr {hp.base_lr:.3g} x effective batch {eff_batch}{source} / 256 = actual lr {lr:.3g}"
        )
        groups = param_groups_weight_decay(
            self.trainable_module(), hp.weight_decay, self.no_weight_decay_names()
        )
        # fused: one kernel for all parameters, 2.5-6x faster than the for-loop default (make bench)
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(hp.betas), fused=True)
        warmup, total = self.schedule_steps()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- TensorBoard images
    def tensorboard(self):
        """The TensorBoard ``SummaryWriter`` on rank 0, or None (other ranks draw nothing)."""
        if self.global_rank != 0:
            return None
        return next((lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)

    def images_due(self, batch_idx: int) -> bool:
        """Whether to draw pictures now: every ``log_images_every_n_steps`` steps, first micro-batch only."""
        n = self.hparams.log_images_every_n_steps
        first_micro = batch_idx % self.trainer.accumulate_grad_batches == 0
        return n > 0 and self.global_step % n == 0 and first_micro
