"""``LabelPropagationCallback``: zero-shot DAVIS / VIP / JHMDB evaluation at epoch checkpoints, DDP-sharded.

When it runs. Pre-training usually has no validation loop, so the evaluation runs in ``on_train_epoch_end``;
if the trainer does run validation in that epoch it runs in ``on_validation_epoch_end`` instead (skipping the
sanity check), because Lightning calls ``on_train_epoch_end`` *after* validation and a ``ModelCheckpoint``
saving at validation end would otherwise miss the metric. Either way the metric is logged before any
``ModelCheckpoint`` of the same epoch saves (Lightning runs checkpoint callbacks last), so
``ModelCheckpoint(monitor="val/davis_JF", mode="max", every_n_epochs=N)`` works when N equals this
callback's ``every_n_epochs``. The last epoch is always evaluated (``at_fit_end``).

DDP. ``callbacks.evaluation.sharded`` shards the videos and merges the records exactly, so every rank
logs the identical value (no ``sync_dist``).
"""

from typing import Literal

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from callbacks.evaluation.benchmarks import get_benchmark
from callbacks.evaluation.protocols import ProtocolName, describe, get_protocol
from callbacks.evaluation.settings import BenchmarkName, override
from callbacks.evaluation.sharded import broadcast_buffers, evaluate_sharded


class LabelPropagationCallback(Callback):
    """Zero-shot label-propagation evaluation of ``pl_module.extract_features`` during training.

    Args:
        benchmark: which benchmark ``root`` holds, in its official layout.
        root: benchmark directory (``DAVIS``, ``VIP`` or ``JHMDB``); checked when evaluation first runs.
        split: DAVIS split file stem (``val``; ``tune`` on the generated benchmark); ignored otherwise.
        every_n_epochs: evaluate after every N-th epoch.
        at_fit_end: also evaluate after the last epoch.
        short_side: DAVIS evaluation short side (protocol 480; None = native size, for small demo data).
            VIP (560x560) and JHMDB (320x320) use their protocol's fixed square size.
        protocol: evaluation protocol (``callbacks.evaluation.protocols``: siammae, dino, crw, legacy).
        width_rule: override the protocol's DAVIS long-side rule (``dino64`` | ``stride``).
        topk: override the protocol's top-k.
        queue_length: override the protocol's queue length.
        radius: override the protocol's neighbourhood radius.
        temperature: override the protocol's softmax temperature.
        overrides: any other protocol knob by name (e.g. ``{"ties": "exact", "frame_resize": "float"}``).
        max_videos: evaluate only the first N videos of the split (quick monitoring).
        log_images: log propagated frames overlaid on the video to TensorBoard (paper Fig. 3).
        num_image_frames: frames in that picture.
        batch_frames: frames per ``extract_features`` call.
        name: metric prefix, ``val/<name>_JF`` (default: the benchmark), so that two instances (e.g. two
            DAVIS-format benchmarks) log apart.
        at_fit_start: also evaluate before the first step (logged at step 0: the initialisation's score).
    """

    def __init__(
        self,
        benchmark: BenchmarkName = "davis",
        root: str = "data/DAVIS",
        split: str = "val",
        every_n_epochs: int = 1,
        at_fit_end: bool = True,
        short_side: int | None = 480,
        protocol: ProtocolName = "siammae",
        width_rule: Literal["stride", "dino64"] | None = None,
        topk: int | None = None,
        queue_length: int | None = None,
        radius: float | None = None,
        temperature: float | None = None,
        overrides: dict | None = None,
        max_videos: int | None = None,
        log_images: bool = True,
        num_image_frames: int = 4,
        batch_frames: int = 8,
        name: str | None = None,
        at_fit_start: bool = False,
    ):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.benchmark, self.name, self.at_fit_start = benchmark, name or benchmark, at_fit_start
        self.root, self.split, self.max_videos = root, split, max_videos
        self.every_n_epochs, self.at_fit_end = every_n_epochs, at_fit_end
        self.short_side = short_side
        knobs = {"width_rule": width_rule, "topk": topk, "queue_length": queue_length, "radius": radius,
                 "temperature": temperature, **(overrides or {})}  # fmt: skip
        self.cfg = override(get_protocol(protocol, benchmark), **knobs)
        self.protocol_name = describe(self.cfg)
        self.log_images, self.num_image_frames, self.batch_frames = log_images, num_image_frames, batch_frames
        self._videos: list | None = None
        self._done_epoch = -1
        self.last_scores: dict[str, float] = {}

    def _due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        # runs bounded by max_steps end inside an epoch budget: their last epoch is the one reaching it
        last |= trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        return (epoch + 1) % self.every_n_epochs == 0 or (self.at_fit_end and last)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """With ``at_fit_start``, score the initial weights (not on resume) and log them at step 0."""
        if self.at_fit_start and trainer.global_step == 0:
            scores = self.run(trainer, pl_module, log=False)
            for logger in trainer.loggers:  # self.log here would be merged into epoch 0's end
                logger.log_metrics({f"val/{self.name}_{k}": v for k, v in scores.items()}, step=0)
            self._done_epoch = -1

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate here when validation runs this epoch (see the module docstring)."""
        if trainer.sanity_checking or not trainer.training:
            return
        if self._due(trainer) and self._done_epoch != trainer.current_epoch:
            self.run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate here when no validation ran this epoch."""
        if self._due(trainer) and self._done_epoch != trainer.current_epoch:
            self.run(trainer, pl_module)

    def videos(self) -> list:
        """The benchmark's videos (indexed once)."""
        if self._videos is None:
            self._videos = get_benchmark(self.benchmark).load(self.root, self.split, self.max_videos)
        return self._videos

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool = True) -> dict[str, float]:
        """Evaluate on this rank's shard, merge all ranks, log ``val/<name>_*`` on every rank."""
        self._done_epoch = trainer.current_epoch
        broadcast_buffers(pl_module)
        was_training = pl_module.training
        pl_module.eval()
        try:
            result = evaluate_sharded(
                get_benchmark(self.benchmark), pl_module, self.videos(), self.cfg, rank=trainer.global_rank,
                world_size=trainer.world_size, short_side=self.short_side, device=pl_module.device,
                batch_frames=self.batch_frames, preview=self.num_image_frames if self.log_images else 0,
            )  # fmt: skip
        finally:
            pl_module.train(was_training)
        self.last_scores = result.scores
        for name, value in result.scores.items() if log else ():
            pl_module.log(f"val/{self.name}_{name}", value, on_epoch=True, sync_dist=False)
        rank_zero_info(
            f"epoch {trainer.current_epoch}: {self.name} [{self.protocol_name}] "
            + ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
        )
        if result.previews and trainer.is_global_zero:
            self._log_preview(trainer, result.previews[0])
        return result.scores

    def _log_preview(self, trainer: L.Trainer, frames: np.ndarray) -> None:
        """One row of overlaid frames (N, H, W, 3) uint8 as a TensorBoard image."""
        row = np.concatenate(list(frames), axis=1)  # (H, N*W, 3)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    f"val/{self.name}_propagation", row, trainer.global_step, dataformats="HWC"
                )

    @property
    def state_key(self) -> str:
        """One checkpoint entry per ``name`` (the default keeps the class-name key of old checkpoints)."""
        return super().state_key if self.name == self.benchmark else self._generate_state_key(name=self.name)

    def state_dict(self) -> dict:
        """Nothing to persist across resumes except the last scores (for information)."""
        return {"last_scores": dict(self.last_scores)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the last scores."""
        self.last_scores = dict(state_dict.get("last_scores", {}))
