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

from lightning_modules.base import VideoSSLModule
from lightning_modules.components.ema import make_ema_copy, update_ema
from lightning_modules.components.encoders import EncoderVariant, InitScheme, build_encoder
from lightning_modules.components.losses import masked_consistency, masked_mse
from lightning_modules.components.mac import MaskedConvAutoencoder
from lightning_modules.components.masking import random_patch_mask
from lightning_modules.components.patches import patchify
from lightning_modules.components.schedules import momentum_at
from lightning_modules.components.sparse_backends import SparseBackend
from lightning_modules.components.visualize import mac_reconstruction_grid


def check_feature_args(mask_ratio: float, feature_stage: int, feature_stride: int) -> None:
    """Raise a ``ValueError`` for a mask ratio or feature choice VideoMAC cannot run."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if feature_stage not in (1, 2, 3, 4):
        raise ValueError(f"feature_stage must be 1..4, got {feature_stage}")
    if feature_stride not in (8, 16, 32):
        raise ValueError(f"feature_stride must be 8, 16 or 32, got {feature_stride}")


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
        sparse_backend: ``dense_masked``, the pure-PyTorch masked-dense emulation (the only backend).
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
        base_lr: lr per 256 samples (1e-3 -> 2e-3 at batch 512). warmup_epochs: linear warm-up length
            (AdamW + warm-up/cosine, VideoMAC §4.1).
        channels_last: NHWC memory format (faster convs on GPU).
        **kwargs: the optimisation, logging, compile (the online encoder and decoder), mask-seed and
            non-finite arguments of ``VideoSSLModule``.
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
        warmup_epochs: float = 10,
        channels_last: bool = False,
        **kwargs,
    ):
        super().__init__(base_lr=base_lr, warmup_epochs=warmup_epochs, **kwargs)
        check_feature_args(mask_ratio, feature_stage, feature_stride)
        self.online = MaskedConvAutoencoder(
            encoder_name, sparse_backend, mask_patch_size, decoder_dim, decoder_depth, decoder_grn,
            drop_path_rate, grn_batch_global, pretrained, encoder_variant, init,
        )  # fmt: skip
        self.target = self._ema_target()
        self._dilated_encoders: dict[int, nn.Module] = {}  # weightless (meta), by stride: no state dict
        if self.feature_stride != 2 ** (feature_stage + 1):
            self.dilated_encoder()  # e.g. the official ConvNeXt has no dilated variant: say so now

    def _ema_target(self) -> MaskedConvAutoencoder:
        """The EMA copy of the online network, which DDP ignores (no gradient sync, no broadcast).

        The target is a registered submodule (checkpointed, moved with the module), but it is excluded from
        the optimiser (``trainable_module``) and from DDP.
        """
        target = make_ema_copy(self.online)
        names = [f"target.{n}" for n, _ in [*target.named_parameters(), *target.named_buffers()]]
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, names)
        return target

    # ----------------------------------------------------------------- model (paper verbs)
    def patchify(self, imgs: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3) with p = ``mask_patch_size``."""
        return patchify(imgs, self.hparams.mask_patch_size)

    def random_masking(self, batch: int, grid: tuple[int, int], generator: torch.Generator | None, device):
        """Patch masks (B, 1, h, w) for frame t and frame t+1 (1 = masked); identical when symmetric."""
        ratio = self.hparams.mask_ratio
        mask_o = random_patch_mask(batch, grid, ratio, device, generator)
        if self.hparams.symmetric_masking:
            return mask_o, mask_o
        return mask_o, random_patch_mask(batch, grid, ratio, device, generator)

    def forward_encoder(self, branch: MaskedConvAutoencoder, imgs: Tensor, mask: Tensor | None) -> Tensor:
        """Sparse ConvNet encoder of ``branch`` (online or target) on the visible patches (§3.2).

        (B, 3, H, W) and mask (B, 1, h, w), 1 = masked -> (B, C, h, w) features, zero at masked cells.
        """
        return branch.encoder(imgs, mask)

    def forward_decoder(self, branch: MaskedConvAutoencoder, latent: Tensor, mask: Tensor | None) -> Tensor:
        """Mask tokens at the masked cells, then ``branch``'s ConvNeXt decoder: -> (B, L, p*p*3) patches."""
        return branch.decoder(latent, mask)

    def forward_loss(self, f_t: Tensor, f_t1: Tensor, pred_o: Tensor, pred_t: Tensor, mask_o, mask_t) -> dict:
        """L_o, L_t, L_c (VideoMAC Eqs. 1-3) on masked patches; masks are (B, L) with 1 = masked.

        L_c compares the two predictions position by position on the online network's masked patches (with
        symmetric masking the paper's sum over M1 x M2 is exactly this), the target prediction detached.
        """
        hp = self.hparams
        loss_o = masked_mse(pred_o, self.patchify(f_t), mask_o, hp.norm_pix_loss)
        loss_t = masked_mse(pred_t, self.patchify(f_t1), mask_t, hp.norm_pix_loss).detach()
        loss_c = masked_consistency(pred_o, pred_t, mask_o)
        total = loss_o + hp.target_loss_weight * loss_t + hp.consistency_weight * loss_c
        return {"loss": total, "loss_online": loss_o, "loss_target": loss_t, "loss_consistency": loss_c}

    def forward(self, frames: Tensor, generator: torch.Generator | None = None):
        """Frames (B, 2, 3, H, W) -> (losses dict, pred_o, pred_t, mask_o, mask_t) with masks (B, L)."""
        f_t, f_t1 = frames[:, 0], frames[:, 1]
        if self.hparams.channels_last:
            f_t, f_t1 = (f.contiguous(memory_format=torch.channels_last) for f in (f_t, f_t1))
        p = self.hparams.mask_patch_size
        grid = (f_t.shape[-2] // p, f_t.shape[-1] // p)
        mask_o, mask_t = self.random_masking(f_t.shape[0], grid, generator, f_t.device)  # (B, 1, h, w) each
        online, target = self.online, self.target
        pred_o = self.forward_decoder(online, self.forward_encoder(online, f_t, mask_o), mask_o)
        with torch.no_grad():  # the target is an EMA of the online network: no gradients
            pred_t = self.forward_decoder(target, self.forward_encoder(target, f_t1, mask_t), mask_t)
        mask_o, mask_t = mask_o.flatten(1), mask_t.flatten(1)  # (B, 1, h, w) -> (B, L)
        return self.forward_loss(f_t, f_t1, pred_o, pred_t, mask_o, mask_t), pred_o, pred_t, mask_o, mask_t

    # ----------------------------------------------------------------- evaluation contract
    @property
    def feature_stride(self) -> int:
        """Stride of ``extract_features``: the stage's own 2**(s+1), capped by ``hparams.feature_stride``.

        Below the stage's own stride, the ``feature_stride`` argument dilates the last stages.
        """
        return min(2 ** (self.hparams.feature_stage + 1), self.hparams.feature_stride)

    def extract_features(self, frames: Tensor) -> Tensor:
        """Dense (unmasked) features of the chosen encoder and stage: (B, 3, H, W) -> (B, C, H/s, W/s)."""
        hp = self.hparams
        encoder = (self.online if hp.feature_source == "online" else self.target).encoder
        if hp.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        if self.feature_stride == 2 ** (hp.feature_stage + 1):
            return encoder(frames, None, hp.feature_stage)
        # Dilated variant (timm's output_stride rule, also for the official ResNet): same weights, so run a
        # weightless encoder on this encoder's tensors; nothing is copied and it can never go stale.
        tensors = {**dict(encoder.named_parameters()), **dict(encoder.named_buffers())}
        dilated = self.dilated_encoder().train(encoder.training)
        return functional_call(dilated, tensors, (frames,), {"stage": hp.feature_stage})

    def dilated_encoder(self) -> nn.Module:
        """Weightless (meta) encoder at ``hparams.feature_stride``, built once (raises if unsupported)."""
        hp = self.hparams
        if hp.feature_stride not in self._dilated_encoders:
            with torch.device("meta"):
                encoder = build_encoder(hp.encoder_name, hp.encoder_variant, output_stride=hp.feature_stride)
            self._dilated_encoders[hp.feature_stride] = encoder
        return self._dilated_encoders[hp.feature_stride]

    # ----------------------------------------------------------------- training
    def trainable_module(self) -> nn.Module:
        """Only the online network is optimised; the target follows by EMA."""
        return self.online

    def configure_model(self) -> None:
        """Memory format and optional in-place compilation (state-dict names are unchanged)."""
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile_model:
            self.online.encoder.compile()
            self.online.decoder.compile()

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
        hp = self.hparams
        return momentum_at(step, total, hp.ema_momentum, hp.ema_final_momentum, hp.ema_schedule)

    def on_train_start(self) -> None:
        """Under DDP, start every rank's target from rank 0's (tests/system/test_ddp_training.py checks it).

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
        k, hp = self.hparams.num_log_samples, self.hparams
        grid = mac_reconstruction_grid(
            frames[:k], pred_o[:k], pred_t[:k], mask_o[:k], mask_t[:k], hp.mask_patch_size, hp.norm_pix_loss
        )
        writer.add_image("train/reconstruction", grid.cpu(), self.global_step)
