"""What a training step with a non-finite loss or gradient does: skip the update (within a budget) or raise.

A non-finite loss (or gradient) is detected before the optimiser step. With ``policy="skip"`` the update is
dropped (gradients cleared, buffers such as BatchNorm statistics restored to their pre-step values) and
counted in ``train/nonfinite_skips``; one skip more than ``max_skips`` (or any, for ``"raise"``) stops
training with a ``FloatingPointError`` naming the batch's videos. Under DDP the flag is summed over ranks
first, so every rank takes the same decision: no rank steps while another skips, and no rank raises alone
and leaves the others hanging in a collective.
"""

import logging
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)
NonFinite = Literal["skip", "raise"]
# The key under which checkpoints written before the guard was a callback kept the skip count.
LEGACY_CHECKPOINT_KEY = "nonfinite_skips"


def check_policy(policy: NonFinite, max_skips: int) -> None:
    """Raise a ``ValueError`` naming the model argument when the policy or the budget is invalid."""
    if policy not in ("skip", "raise"):
        raise ValueError(f"nonfinite must be 'skip' or 'raise', got {policy!r}")
    if max_skips < 0:
        raise ValueError(f"max_nonfinite_skips must be >= 0, got {max_skips}")


class NonFiniteGuard(L.Callback):
    """Skip or raise on non-finite steps; the skip count is checkpointed, so the budget spans a resume.

    The systems install one by default (``VideoSSLModule.configure_callbacks``) from their ``nonfinite`` and
    ``max_nonfinite_skips`` arguments; one listed in ``trainer.callbacks`` takes precedence.

    Args:
        policy: ``skip`` (drop the update and count it) or ``raise`` (stop at once).
        max_skips: skipped steps allowed over the run before raising anyway.
    """

    def __init__(self, policy: NonFinite = "skip", max_skips: int = 10) -> None:
        check_policy(policy, max_skips)
        self.policy, self.max_skips = policy, max_skips
        self.skips = 0
        # Per optimiser step: a micro-batch loss was non-finite, the batches' videos, the buffers before it.
        self._bad_loss = False
        self._videos: list = []
        self._buffers: list[Tensor] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        """Remember the batch's videos and, at the start of an optimiser step, the module's buffers."""
        self._videos.extend(batch.get("video", []) if isinstance(batch, dict) else [])
        if self.policy == "skip" and self._buffers is None:
            # Why: a NaN frame poisons BatchNorm running statistics in the forward pass already.
            self._buffers = [b.detach().clone() for b in pl_module.buffers()]

    def on_before_backward(self, trainer, pl_module, loss: Tensor) -> None:
        """Flag a non-finite (micro-batch) loss."""
        self._bad_loss |= not bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        """Skip (drop gradients, restore buffers) or raise if this step's loss or gradients are not finite."""
        bad = self._bad_loss
        if getattr(trainer.precision_plugin, "scaler", None) is None:  # fp16 scaler handles inf grads
            grads = [p.grad for p in pl_module.trainable_module().parameters() if p.grad is not None]
            bad = bad or (bool(grads) and not bool(torch.isfinite(nn.utils.get_total_norm(grads))))
        flag = torch.tensor(float(bad), device=pl_module.device)
        if trainer.strategy.reduce(flag, reduce_op="sum") > 0:  # the same decision on all ranks
            self._handle(trainer, pl_module, optimizer, bad)
        pl_module.log("train/nonfinite_skips", float(self.skips), on_step=True, on_epoch=False, batch_size=1)
        self._bad_loss, self._videos, self._buffers = False, [], None

    def _handle(self, trainer, pl_module, optimizer, local_bad: bool) -> None:
        """Raise with the videos, or skip this update (and count it)."""
        where = f"step {trainer.global_step}, rank {trainer.global_rank}"
        videos = self._videos if local_bad else "(non-finite values on another rank)"
        message = f"non-finite loss or gradients at {where}; batch videos: {videos}"
        if self.policy == "raise" or self.skips >= self.max_skips:
            budget = "" if self.policy == "raise" else f" after {self.skips} skipped steps"
            raise FloatingPointError(
                f"{message}{budget} (model.nonfinite={self.policy!r}, "
                f"model.max_nonfinite_skips={self.max_skips})"
            )
        log.warning("skipping the update: %s", message)
        optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without gradients untouched
        if self._buffers is not None:
            with torch.no_grad():
                for b, saved in zip(pl_module.buffers(), self._buffers, strict=True):
                    b.copy_(saved)
        self.skips += 1

    def state_dict(self) -> dict[str, int]:
        """The skip count (the per-step bookkeeping is empty between steps, when checkpoints are written)."""
        return {"skips": self.skips}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the skip count."""
        self.skips = int(state_dict["skips"])

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Read the count of a checkpoint written by the module itself (``load_state_dict`` runs after)."""
        if LEGACY_CHECKPOINT_KEY in checkpoint:
            self.skips = int(checkpoint[LEGACY_CHECKPOINT_KEY])
