"""The contract every corrmae method follows, and the optimisation and fault handling both methods share."""

import logging
import math
import os
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lightning_modules.components.optim import param_groups_weight_decay
from lightning_modules.components.schedules import warmup_cosine

log = logging.getLogger(__name__)
NonFinite = Literal["skip", "raise"]


class VideoSSLModule(L.LightningModule):
    """Base class: subclasses implement ``extract_features`` and ``feature_stride`` for label propagation.

    Optimisation (MAE recipe, SiamMAE Table 4a / VideoMAC §4.1): AdamW with decay / no-decay groups,
    lr = base_lr * effective_batch / 256, per-iteration linear warm-up then cosine decay.
    Subclasses set ``base_lr``, ``weight_decay``, ``betas``, ``warmup_epochs`` and ``min_lr_ratio``, and
    call ``set_fault_policy`` with their ``nonfinite`` / ``max_nonfinite_skips`` init args.

    Non-finite steps: a non-finite loss (or gradient) is detected before the optimiser step and, for
    ``nonfinite="skip"``, the update is skipped (gradients dropped, buffers such as BatchNorm statistics
    restored to their pre-step values) and counted in ``train/nonfinite_skips``; one skip more than
    ``max_nonfinite_skips`` (or any, for ``"raise"``) stops training with an error naming the batch's videos.
    Under DDP the flag is summed over ranks first, so every rank takes the same decision (no rank steps
    while another skips, and no rank raises alone and leaves the others hanging in a collective).
    """

    base_lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: float
    min_lr_ratio: float
    log_images_every_n_steps: int
    mask_seed: int | None = None
    nonfinite: NonFinite = "skip"
    max_nonfinite_skips: int = 10

    def __init__(self) -> None:
        super().__init__()
        # Per-step bookkeeping of the non-finite check (not in the state dict; the count is checkpointed).
        self._fault: dict = {"skips": 0, "bad_loss": False, "videos": [], "buffers": None}

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

    # ----------------------------------------------------------------- randomness
    def mask_generator(self, batch_idx: int, device: torch.device) -> torch.Generator:
        """RNG for this micro-batch's masks: a pure function of (seed, global_step, micro-batch, rank).

        Why: resuming from a checkpoint then redraws exactly the same masks (no global RNG state). The seed
        is ``mask_seed``, else the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``).
        """
        seed = self.mask_seed if self.mask_seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
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
        # fused: one kernel for all parameters, 2.5-6x faster than the for-loop default (make bench)
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(self.betas), fused=True)
        warmup, total = self.schedule_steps()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, self.min_lr_ratio)
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
        n = self.log_images_every_n_steps
        first_micro = batch_idx % self.trainer.accumulate_grad_batches == 0
        return n > 0 and self.global_step % n == 0 and first_micro

    # ----------------------------------------------------------------- data health
    def on_train_epoch_end(self) -> None:
        """Log how many unreadable videos the data module skipped so far (bad input is never silent)."""
        skipped = getattr(getattr(self.trainer, "datamodule", None), "skipped", None)
        if isinstance(skipped, int):
            self.log("train/skipped_videos", float(skipped), on_epoch=True, sync_dist=False)

    # ----------------------------------------------------------------- non-finite steps
    def set_fault_policy(self, nonfinite: NonFinite, max_nonfinite_skips: int) -> None:
        """Validate and set what a non-finite step does (subclasses call this from ``__init__``)."""
        if nonfinite not in ("skip", "raise"):
            raise ValueError(f"nonfinite must be 'skip' or 'raise', got {nonfinite!r}")
        if max_nonfinite_skips < 0:
            raise ValueError(f"max_nonfinite_skips must be >= 0, got {max_nonfinite_skips}")
        self.nonfinite, self.max_nonfinite_skips = nonfinite, max_nonfinite_skips

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Remember the batch's videos and, at the start of an optimiser step, the module's buffers."""
        state = self._fault
        state["videos"].extend(batch.get("video", []) if isinstance(batch, dict) else [])
        if self.nonfinite == "skip" and state["buffers"] is None:
            # Why: a NaN frame poisons BatchNorm running statistics in the forward pass already.
            state["buffers"] = [b.detach().clone() for b in self.buffers()]

    def on_before_backward(self, loss: Tensor) -> None:
        """Flag a non-finite (micro-batch) loss."""
        self._fault["bad_loss"] |= not bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(self, optimizer) -> None:
        """Skip (drop gradients, restore buffers) or raise if this step's loss or gradients are not finite."""
        state = self._fault
        bad = state["bad_loss"]
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:  # fp16 scaler handles inf grads
            grads = [p.grad for p in self.trainable_module().parameters() if p.grad is not None]
            bad = bad or (bool(grads) and not bool(torch.isfinite(nn.utils.get_total_norm(grads))))
        flag = torch.tensor(float(bad), device=self.device)
        any_bad = bool(self.trainer.strategy.reduce(flag, reduce_op="sum") > 0)  # same decision on all ranks
        if any_bad:
            self._handle_nonfinite(optimizer, state, bad)
        self.log("train/nonfinite_skips", float(state["skips"]), on_step=True, on_epoch=False, batch_size=1)
        state.update(bad_loss=False, videos=[], buffers=None)

    def _handle_nonfinite(self, optimizer, state: dict, local_bad: bool) -> None:
        """Raise with the videos, or skip this update (and count it)."""
        where = f"step {self.global_step}, rank {self.global_rank}"
        videos = state["videos"] if local_bad else "(non-finite values on another rank)"
        message = f"non-finite loss or gradients at {where}; batch videos: {videos}"
        if self.nonfinite == "raise" or state["skips"] >= self.max_nonfinite_skips:
            budget = "" if self.nonfinite == "raise" else f" after {state['skips']} skipped steps"
            raise FloatingPointError(
                f"{message}{budget} (model.nonfinite={self.nonfinite!r}, "
                f"model.max_nonfinite_skips={self.max_nonfinite_skips})"
            )
        log.warning("skipping the update: %s", message)
        optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without gradients untouched
        if state["buffers"] is not None:
            with torch.no_grad():
                for b, saved in zip(self.buffers(), state["buffers"], strict=True):
                    b.copy_(saved)
        state["skips"] += 1

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to write non-finite weights (a good ``last.ckpt`` must survive), keep the skip count."""
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:
            raise FloatingPointError(f"refusing to save a checkpoint with non-finite values in {bad[:5]}")
        checkpoint["nonfinite_skips"] = self._fault["skips"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the skip count, so the budget spans a resumed run."""
        self._fault["skips"] = int(checkpoint.get("nonfinite_skips", 0))
