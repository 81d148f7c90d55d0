"""VideoMAC (Pei et al., CVPR 2024): masked video modelling with sparse ConvNets, online + EMA target.

Per step (VideoMAC §3, Fig. 3): one random 32-px patch mask per pair, shared by both frames (symmetric,
Table 3d); the online network reconstructs frame t, the EMA target reconstructs frame t+1; losses
L_o (online vs frame t), L_t (target vs frame t+1) and L_c (online vs stop-grad target prediction on masked
patches), total L_o + L_t + gamma * L_c (Eq. 3). The target has no gradients, so L_t only enters the logged
total (as in the official code); the optimiser sees grad(L_o + gamma * L_c).
"""

from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lightning_modules.base import NonFinite, VideoSSLModule
from lightning_modules.components.ema import make_ema_copy, update_ema
from lightning_modules.components.encoders import EncoderVariant, InitScheme, build_encoder
from lightning_modules.components.losses import masked_consistency, masked_mse
from lightning_modules.components.mac import MaskedConvAutoencoder, mac_reconstruction_grid
from lightning_modules.components.masking import random_patch_mask
from lightning_modules.components.patches import patchify
from lightning_modules.components.schedules import momentum_at
from lightning_modules.components.sparse_backends import SparseBackend


class VideoMAC(VideoSSLModule):
    """VideoMAC pre-training system.

    Args:
        encoder_name: ``resnet18`` / ``resnet50`` / ``convnextv2_tiny`` / ``convnextv2_small`` (any timm
            ResNet or ConvNeXt name with the timm variant).
        encoder_variant: ``official`` = the authors' encoders (LN/GELU patchify-stem ResNet; ConvNeXt-V2 with
            per-stage norms; their converted checkpoints load strictly) or ``timm`` (BatchNorm ResNet, timm
            ConvNeXt-V2). The paper configs use ``official``.
        init: ``official`` = the official code's initialisation (trunc-normal std 1 on depthwise, Linear and
            dense Conv2d weights, inherited from FCMAE; official encoders only) or ``standard`` (std 0.02).
        sparse_backend: ``dense_masked`` (pure PyTorch emulation) or ``minkowski`` (optional package).
        pretrained: start from timm's pretrained weights (off: the paper pre-trains from scratch).
        drop_path_rate: encoder stochastic depth (0 in the official scripts).
        grn_batch_global: encoder GRN statistic over the whole batch (MinkowskiEngine) vs per sample.
        mask_ratio: fraction of patches masked (0.75, Table 4f).
        mask_patch_size: mask patch size in pixels (32 = encoder stride, 7x7 grid at 224).
        symmetric_masking: same mask for both frames (Table 3d); False draws an independent second mask.
        decoder_dim: decoder width (512, Table 3c); decoder_depth: ConvNeXt blocks (1, Table 3b).
        decoder_grn: ConvNeXt-V2 decoder blocks (GRN), as the official code.
        norm_pix_loss: per-patch normalised pixel targets (always on in the official code).
        consistency_weight: gamma in Eq. 3 (1.0, Table 4e).
        target_loss_weight: weight of L_t in the logged total; L_t carries no gradient (see module docstring).
        ema_momentum: base EMA momentum (0.996). ema_final_momentum: end of the cosine schedule.
        ema_schedule: ``constant`` (what the official code effectively runs) or ``cosine`` (its intent).
        feature_source: ``online`` (the official export) or ``target`` encoder for ``extract_features``.
        feature_stage: encoder stage for features (4 = last, stride 32: the paper's 7x7 at 224).
        feature_stride: 32, 16 or 8; below the stage's own stride, timm's dilated ``output_stride``.
        base_lr: lr per 256 samples (1e-3 -> 2e-3 at batch 512). weight_decay, betas, warmup_epochs,
            min_lr_ratio: AdamW + warm-up/cosine (VideoMAC §4.1).
        channels_last: NHWC memory format (faster convs on GPU).
        compile_model: ``torch.compile`` the online network's forward.
        log_images_every_n_steps: reconstruction grids (Fig. 8 style) every N optimiser steps; 0 = never.
        num_log_samples: rows in the reconstruction grid.
        mask_seed: mask RNG seed; None = the run's ``seed_everything`` seed.
        nonfinite: a step with a non-finite loss or gradient is skipped (``skip``) or stops training
            (``raise``), naming the batch's videos (see ``VideoSSLModule``).
        max_nonfinite_skips: skipped steps allowed over the run before raising anyway.
    """

    def __init__(
        self,
        encoder_name: str = "convnextv2_small",
        encoder_variant: EncoderVariant = "timm",
        init: InitScheme = "standard",
        sparse_backend: SparseBackend = "dense_masked",
        pretrained: bool = False,
        drop_path_rate: float = 0.0,
        grn_batch_global: bool = False,
        mask_ratio: float = 0.75,
        mask_patch_size: int = 32,
        symmetric_masking: bool = True,
        decoder_dim: int = 512,
        decoder_depth: int = 1,
        decoder_grn: bool = True,
        norm_pix_loss: bool = True,
        consistency_weight: float = 1.0,
        target_loss_weight: float = 1.0,
        ema_momentum: float = 0.996,
        ema_final_momentum: float = 1.0,
        ema_schedule: Literal["constant", "cosine"] = "constant",
        feature_source: Literal["online", "target"] = "online",
        feature_stage: int = 4,
        feature_stride: Literal[8, 16, 32] = 32,
        base_lr: float = 1e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 10,
        min_lr_ratio: float = 0.0,
        channels_last: bool = False,
        compile_model: bool = False,
        log_images_every_n_steps: int = 500,
        num_log_samples: int = 4,
        mask_seed: int | None = None,
        nonfinite: NonFinite = "skip",
        max_nonfinite_skips: int = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if feature_stage not in (1, 2, 3, 4):
            raise ValueError(f"feature_stage must be 1..4, got {feature_stage}")
        if feature_stride not in (8, 16, 32):
            raise ValueError(f"feature_stride must be 8, 16 or 32, got {feature_stride}")
        self.encoder_name, self.encoder_variant, self.sparse_backend = (
            encoder_name,
            encoder_variant,
            sparse_backend,
        )
        self.mask_ratio, self.patch_size, self.symmetric_masking = (
            mask_ratio,
            mask_patch_size,
            symmetric_masking,
        )
        self.norm_pix_loss = norm_pix_loss
        self.consistency_weight, self.target_loss_weight = consistency_weight, target_loss_weight
        self.ema_momentum, self.ema_final_momentum, self.ema_schedule = (
            ema_momentum,
            ema_final_momentum,
            ema_schedule,
        )
        self.feature_source, self.feature_stage, self.output_stride = (
            feature_source,
            feature_stage,
            feature_stride,
        )
        self.base_lr, self.weight_decay, self.betas = base_lr, weight_decay, tuple(betas)
        self.warmup_epochs, self.min_lr_ratio = warmup_epochs, min_lr_ratio
        self.channels_last, self.compile_model = channels_last, compile_model
        self.log_images_every_n_steps, self.num_log_samples = log_images_every_n_steps, num_log_samples
        self.mask_seed = mask_seed
        self.set_fault_policy(nonfinite, max_nonfinite_skips)

        self.online = MaskedConvAutoencoder(
            encoder_name, sparse_backend, mask_patch_size, decoder_dim, decoder_depth, decoder_grn,
            drop_path_rate, grn_batch_global, pretrained, encoder_variant, init,
        )  # fmt: skip
        # The target is a registered submodule (checkpointed, moved with the module) but it is excluded from
        # the optimiser (trainable_module) and DDP ignores its parameters and buffers (no sync/broadcast).
        self.target = make_ema_copy(self.online)
        names = [f"target.{n}" for n, _ in [*self.target.named_parameters(), *self.target.named_buffers()]]
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, names)
        self._aux: dict = {}  # unregistered helpers: compiled forward, dilated feature skeletons
        if self.feature_stride != 2 ** (feature_stage + 1):
            self.dilated_skeleton()  # e.g. the official ConvNeXt has no dilated variant: say so now

    # ----------------------------------------------------------------- model (paper verbs)
    def patchify(self, imgs: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3)."""
        return patchify(imgs, self.patch_size)

    def random_masking(self, batch: int, grid: tuple[int, int], generator: torch.Generator | None, device):
        """Patch masks (B, 1, h, w) for frame t and frame t+1 (1 = masked); identical when symmetric."""
        mask_o = random_patch_mask(batch, grid, self.mask_ratio, device, generator)
        if self.symmetric_masking:
            return mask_o, mask_o
        return mask_o, random_patch_mask(batch, grid, self.mask_ratio, device, generator)

    def forward_loss(self, f_t: Tensor, f_t1: Tensor, pred_o: Tensor, pred_t: Tensor, mask_o, mask_t) -> dict:
        """L_o, L_t, L_c (VideoMAC Eqs. 1-3) on masked patches; masks are (B, L) with 1 = masked.

        L_c compares the two predictions position by position on the online network's masked patches (with
        symmetric masking the paper's sum over M1 x M2 is exactly this), the target prediction detached.
        """
        loss_o = masked_mse(pred_o, self.patchify(f_t), mask_o, self.norm_pix_loss)
        loss_t = masked_mse(pred_t, self.patchify(f_t1), mask_t, self.norm_pix_loss).detach()
        loss_c = masked_consistency(pred_o, pred_t, mask_o)
        total = loss_o + self.target_loss_weight * loss_t + self.consistency_weight * loss_c
        return {"loss": total, "loss_online": loss_o, "loss_target": loss_t, "loss_consistency": loss_c}

    def forward(self, frames: Tensor, generator: torch.Generator | None = None):
        """Frames (B, 2, 3, H, W) -> (losses dict, pred_o, pred_t, mask_o, mask_t) with masks (B, L)."""
        f_t, f_t1 = frames[:, 0], frames[:, 1]
        if self.channels_last:
            f_t, f_t1 = (f.contiguous(memory_format=torch.channels_last) for f in (f_t, f_t1))
        grid = (f_t.shape[-2] // self.patch_size, f_t.shape[-1] // self.patch_size)
        mask_o, mask_t = self.random_masking(f_t.shape[0], grid, generator, f_t.device)
        pred_o = self._aux.get("online_compiled", self.online)(f_t, mask_o)
        with torch.no_grad():
            pred_t = self.target(f_t1, mask_t)
        mask_o, mask_t = mask_o.flatten(1), mask_t.flatten(1)  # (B, L)
        return self.forward_loss(f_t, f_t1, pred_o, pred_t, mask_o, mask_t), pred_o, pred_t, mask_o, mask_t

    # ----------------------------------------------------------------- evaluation contract
    @property
    def feature_stride(self) -> int:
        """Stride of ``extract_features``: the stage's own stride 2**(s+1), capped by ``output_stride``."""
        return min(2 ** (self.feature_stage + 1), self.output_stride)

    def extract_features(self, frames: Tensor) -> Tensor:
        """Dense (unmasked) features of the chosen encoder and stage: (B, 3, H, W) -> (B, C, H/s, W/s)."""
        encoder = (self.online if self.feature_source == "online" else self.target).encoder
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        if self.feature_stride == 2 ** (self.feature_stage + 1):
            return encoder(frames, None, self.feature_stage)
        # Dilated variant (timm's output_stride rule, also for the official ResNet): same weights, so run a
        # weightless skeleton on this encoder's tensors; nothing is copied and it can never go stale.
        tensors = {**dict(encoder.named_parameters()), **dict(encoder.named_buffers())}
        skeleton = self.dilated_skeleton().train(encoder.training)
        return functional_call(skeleton, tensors, (frames,), {"stage": self.feature_stage})

    def dilated_skeleton(self) -> nn.Module:
        """Weightless (meta) encoder at ``feature_stride``, built once (raises early if unsupported)."""
        key = f"dilated_{self.output_stride}"
        if key not in self._aux:
            with torch.device("meta"):
                self._aux[key] = build_encoder(
                    self.encoder_name, self.encoder_variant, output_stride=self.output_stride
                )
        return self._aux[key]

    # ----------------------------------------------------------------- training
    def trainable_module(self) -> nn.Module:
        """Only the online network is optimised; the target follows by EMA."""
        return self.online

    def configure_model(self) -> None:
        """Memory format and optional compilation (state-dict names are unchanged)."""
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.compile_model and "online_compiled" not in self._aux:
            self._aux["online_compiled"] = torch.compile(self.online)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """One VideoMAC step on ``batch['frames']`` (B, 2, 3, H, W)."""
        frames = batch["frames"]
        losses, pred_o, pred_t, mask_o, mask_t = self(frames, self.mask_generator(batch_idx, frames.device))
        bs = frames.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        for name in ("loss_online", "loss_target", "loss_consistency"):
            self.log(f"train/{name}", losses[name], on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, batch_size=bs)
        if self.images_due(batch_idx):
            self.log_images(frames, pred_o, pred_t, mask_o, mask_t)
        return losses["loss"]

    def ema_momentum_at(self, step: int) -> float:
        """EMA momentum after optimiser step ``step`` (pure function of the step)."""
        total = int(self.trainer.estimated_stepping_batches) if self._trainer else 1
        return momentum_at(step, total, self.ema_momentum, self.ema_final_momentum, self.ema_schedule)

    def on_train_start(self) -> None:
        """Under DDP, start every rank's target from rank 0's (tests/test_ddp_training.py checks it).

        DDP broadcasts only the online network (the target is excluded from DDP), so ranks initialised with
        different seeds would otherwise keep different EMA targets for the whole run.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in [*self.target.parameters(), *self.target.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Optimiser step, then the EMA update (once per real step, not per accumulation micro-batch).

        Part of the step itself, so a checkpoint written after this batch (callbacks run before the
        module's ``on_train_batch_end``) already holds the updated target: an exact resume needs that.
        Target buffers (BatchNorm running stats) are kept: the target runs in train mode and estimates them
        from its own (frame t+1) visible-site statistics, as MoCo/BYOL key encoders do.
        """
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        m = self.ema_momentum_at(self.global_step)  # steps done before this one (counter not yet advanced)
        update_ema(self.target, self.online, m, buffers="keep")
        self.log("train/ema_momentum", m, on_step=True, batch_size=1)

    # ----------------------------------------------------------------- TensorBoard images
    @torch.no_grad()
    def log_images(
        self, frames: Tensor, pred_o: Tensor, pred_t: Tensor, mask_o: Tensor, mask_t: Tensor
    ) -> None:
        """Fig. 8-style grid: per row frame t | masked | reconstruction, then the same for frame t+1."""
        writer = self.tensorboard()
        if writer is None:
            return
        k = self.num_log_samples
        grid = mac_reconstruction_grid(
            frames[:k], pred_o[:k], pred_t[:k], mask_o[:k], mask_t[:k], self.patch_size, self.norm_pix_loss
        )
        writer.add_image("train/reconstruction", grid.cpu(), self.global_step)
