"""SiamMAE (Gupta et al., NeurIPS 2023): siamese masked autoencoder on frame pairs.

Frame 1 is seen whole, frame 2 through a few visible patches (asymmetric masking, 95%); a shared ViT encodes
each frame, a cross-self decoder lets frame-2 tokens attend to frame-1 tokens and reconstructs frame 2.
Method names follow MAE: patchify, random_masking, forward_encoder, forward_decoder, forward_loss, forward.
"""

import time
from typing import Literal

import torch
from torch import Tensor

from lightning_modules.base import VideoSSLModule
from lightning_modules.components import masking, patches, vit
from lightning_modules.components.decoders import DecoderMode, SiamDecoder
from lightning_modules.components.losses import masked_mse
from lightning_modules.components.masking import KeepRule, MaskPattern
from lightning_modules.components.visualize import attention_grid, reconstruction_grid

EncoderMode = Literal["siamese", "joint"]


def check_masking(
    mask_ratio: float, mask_pattern: MaskPattern, keep_rule: KeepRule, encoder_mode: str
) -> None:
    """Raise a ``ValueError`` for a masking setup SiamMAE cannot run, before any weights are built."""
    if mask_pattern == "grid" and mask_ratio not in (0.5, 0.75):
        raise ValueError(f"mask_pattern='grid' supports mask_ratio 0.5 or 0.75, got {mask_ratio}")
    if encoder_mode not in ("siamese", "joint"):
        raise ValueError(f"unknown encoder_mode {encoder_mode!r}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if keep_rule not in ("floor", "round"):
        raise ValueError(f"keep rule must be 'floor' or 'round', got {keep_rule!r}")


class SiamMAE(VideoSSLModule):
    """SiamMAE pre-training system. Defaults follow the paper (§3, Table 4a); Tables 2/3 are init args.

    Args:
        encoder_name: timm ViT name (``vit_small_patch16_224``, ``vit_small_patch8_224``, ...).
        img_size: training crop size (must match the data's ``image_size``).
        patch_size: override the model's patch size (tiny test models).
        embed_dim: override the encoder width (tiny test models).
        depth: override the encoder depth (tiny test models).
        num_heads: override the encoder heads (tiny test models).
        mask_ratio: fraction of frame-2 patches removed (paper 0.95).
        mask_pattern: ``random`` (uniform per sample, exact count) or ``grid`` (Table 2c; ratio 0.5 or 0.75).
        keep_rule: kept tokens per frame for ``random``: ``floor`` = MAE's ``int(L * (1 - r))`` (9 of 196 at
            0.95; SiamMAE builds on MAE's code), ``round`` = 10 of 196.
        symmetric_masking: mask frame 1 at ``mask_ratio`` too (Table 2a/2c); default frame 1 is unmasked.
        encoder_mode: ``siamese`` (each frame alone through the shared ViT) or ``joint`` (visible tokens of
            both frames in one pass), Table 2b.
        decoder_mode: ``cross_self`` | ``cross`` | ``joint`` (Table 2b).
        decoder_dim: decoder width (MAE's 512; the paper does not state SiamMAE's).
        decoder_depth: decoder blocks (MAE's 8).
        decoder_num_heads: decoder heads (MAE's 16).
        norm_pix_loss: regress per-patch normalised pixels (MAE, paper §3).
        feature_layer: number of encoder blocks used by ``extract_features`` (None = all, then final norm).
        pos_embed_resize: position embeddings at non-training sizes: ``interpolate``, ``dino`` (DINO's
            ``interpolate_pos_encoding``) or ``recompute``; evaluation protocols override it while they run.
        **kwargs: the optimisation (MAE's recipe: base_lr 1.5e-4, warm-up 40 epochs), logging, compile
            (encoder and decoder blocks), mask-seed and non-finite arguments of ``VideoSSLModule``.
    """

    def __init__(
        self,
        encoder_name: str = "vit_small_patch16_224",
        img_size: int = 224,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mask_ratio: float = 0.95,
        mask_pattern: MaskPattern = "random",
        keep_rule: KeepRule = "floor",
        symmetric_masking: bool = False,
        encoder_mode: EncoderMode = "siamese",
        decoder_mode: DecoderMode = "cross_self",
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        norm_pix_loss: bool = True,
        feature_layer: int | None = None,
        pos_embed_resize: vit.PosEmbedResize = "interpolate",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_masking(mask_ratio, mask_pattern, keep_rule, encoder_mode)
        overrides = dict(patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
        self.encoder = vit.build_vit(encoder_name, img_size, **{k: v for k, v in overrides.items() if v})
        self.patch_size = vit.patch_size_of(self.encoder)  # the built ViT's patch (the override, if given)
        grid = tuple(self.encoder.patch_embed.grid_size)
        dims = (self.encoder.embed_dim, self.patch_size, grid)
        self.decoder = SiamDecoder(*dims, decoder_mode, decoder_dim, decoder_depth, decoder_num_heads)
        # Plain attributes, not read from hparams: the evaluation protocols and the layer study change them
        # on a trained model while they run.
        self.feature_layer, self.pos_embed_resize = feature_layer, pos_embed_resize
        self._vis_frames: Tensor | None = None  # fixed sample for the attention maps, set on first log
        self._epoch_start = 0.0

    # ----------------------------------------------------------------- model (MAE verbs)
    def patchify(self, imgs: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3)."""
        return patches.patchify(imgs, self.patch_size)

    def random_masking(self, x: Tensor, mask_ratio: float, grid: tuple[int, int], generator=None):
        """Drop tokens (MAE): x_visible (B, L_keep, D), mask (B, L) 1 = removed, ids_restore (B, L)."""
        hp = self.hparams
        return masking.random_masking(x, mask_ratio, grid, hp.mask_pattern, generator, hp.keep_rule)

    def forward_encoder(self, f1: Tensor, f2: Tensor, generator: torch.Generator | None = None):
        """Encode the two frames (§3 "Masking", "Encoder").

        Args:
            f1: (B, 3, H, W) earlier frame.
            f2: (B, 3, H, W) later frame.
            generator: RNG for the masks.

        Returns:
            latent1 (B, 1+L1_keep, D), latent2 (B, 1+L2_keep, D), ids_restore1 (B, L), ids_restore2 (B, L),
            mask2 (B, L) 1 = removed, grid (h, w).
        """
        enc, hp = self.encoder, self.hparams
        x1, grid = vit.embed_tokens(enc, f1, self.pos_embed_resize)  # (B, L, D)
        x2, _ = vit.embed_tokens(enc, f2, self.pos_embed_resize)
        ratio1 = hp.mask_ratio if hp.symmetric_masking else 0.0  # asymmetric: frame 1 is seen whole
        x1, _, ids1 = self.random_masking(x1, ratio1, grid, generator)
        x2, mask2, ids2 = self.random_masking(x2, hp.mask_ratio, grid, generator)
        if hp.encoder_mode == "siamese":
            latent1 = vit.encode_tokens(enc, vit.prepend_cls(enc, x1))  # (B, 1+L1_keep, D)
            latent2 = vit.encode_tokens(enc, vit.prepend_cls(enc, x2))  # (B, 1+L2_keep, D)
        else:  # joint: one pass over both frames' visible tokens; no temporal embedding (paper §3)
            n1 = x1.shape[1]
            h = vit.encode_tokens(enc, vit.prepend_cls(enc, torch.cat([x1, x2], dim=1)))  # (B, 1+n1+n2, D)
            latent1 = h[:, : 1 + n1]  # [CLS] + frame-1 tokens
            latent2 = torch.cat([h[:, :1], h[:, 1 + n1 :]], dim=1)  # shared [CLS] + frame-2 tokens
        return latent1, latent2, ids1, ids2, mask2, grid

    def forward_decoder(self, latent1: Tensor, ids1: Tensor, latent2: Tensor, ids2: Tensor, grid) -> Tensor:
        """Embed both frames to full token sets and predict frame-2 patches: (B, L, p*p*3)."""
        x1 = self.decoder.embed(latent1, ids1, grid)  # (B, 1+L, Dd)
        x2 = self.decoder.embed(latent2, ids2, grid)  # (B, 1+L, Dd)
        return self.decoder(x1, x2)

    def forward_loss(self, f2: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """L2 on (normalised) pixels of the masked frame-2 patches only (§3, MAE ``forward_loss``)."""
        return masked_mse(pred.float(), self.patchify(f2).float(), mask, self.hparams.norm_pix_loss)

    def forward(self, frames: Tensor, generator: torch.Generator | None = None):
        """Loss on a frame pair: frames (B, 2, 3, H, W) -> (loss, pred (B, L, p*p*3), mask (B, L))."""
        f1, f2 = frames[:, 0], frames[:, 1]
        latent1, latent2, ids1, ids2, mask, grid = self.forward_encoder(f1, f2, generator)
        pred = self.forward_decoder(latent1, ids1, latent2, ids2, grid)
        return self.forward_loss(f2, pred, mask), pred, mask

    # ----------------------------------------------------------------- evaluation contract
    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised -> (B, D, H/p, W/p) patch tokens after the final norm."""
        return vit.extract_patch_features(self.encoder, frames, self.feature_layer, self.pos_embed_resize)

    @property
    def feature_stride(self) -> int:
        """Patch size p."""
        return self.patch_size

    def load_encoder_state_dict(self, state: dict, strict: bool = True):
        """Load encoder weights saved by timm, by this class, or a Lightning checkpoint's ``state_dict``.

        Accepts keys in timm naming, or prefixed ``encoder.`` / ``model.``; drops classifier ``head.*`` and
        resamples ``pos_embed`` to this model's grid if it differs.
        """
        state = state.get("state_dict", state.get("model", state))
        if any(k.startswith("encoder.") for k in state):
            state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.encoder.pos_embed.shape:
            side = int(round((pos.shape[1] - 1) ** 0.5))
            state["pos_embed"] = vit.resample_pos_embed(pos, (side, side), self.encoder.patch_embed.grid_size)
        return self.encoder.load_state_dict(state, strict=strict)

    # ----------------------------------------------------------------- training
    def configure_model(self) -> None:
        """Optionally compile the blocks in place (module names, hence checkpoints, stay unchanged)."""
        if self.hparams.compile_model:
            for blk in [*self.encoder.blocks, *self.decoder.blocks]:
                blk.compile()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """One SiamMAE step on ``batch['frames']`` (B, 2, 3, H, W)."""
        frames = batch["frames"]
        loss, pred, mask = self(frames, self.mask_generator(batch_idx, frames.device))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=frames.shape[0])
        lr = self.optimizers().param_groups[0]["lr"]
        self.log("train/lr", lr, on_step=True, batch_size=frames.shape[0])
        if self.images_due(batch_idx):
            self.log_images(frames, pred, mask)
        return loss

    def on_train_epoch_start(self) -> None:
        """Start the epoch timer."""
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self) -> None:
        """Log wall-clock seconds per epoch."""
        self.log("train/epoch_time_s", time.monotonic() - self._epoch_start, sync_dist=False)

    # ----------------------------------------------------------------- TensorBoard images
    @torch.no_grad()
    def log_images(self, frames: Tensor, pred: Tensor, mask: Tensor) -> None:
        """Fig. 2-style reconstruction grid for this batch and Fig. 5 [CLS] attention on a fixed sample."""
        writer = self.tensorboard()
        if writer is None:
            return
        k, norm_pix = self.hparams.num_log_samples, self.hparams.norm_pix_loss
        grid = reconstruction_grid(
            frames[:k, 0], frames[:k, 1], pred[:k], mask[:k], self.patch_size, norm_pix
        )
        writer.add_image("train/reconstruction", grid.cpu(), self.global_step)
        if self._vis_frames is None:
            self._vis_frames = frames[:k, 1].detach().clone()
            legend = "columns: frame 1 | masked frame 2 | reconstruction (visible patches pasted back"
            if norm_pix:
                legend += "; prediction de-normalised with each target patch's own mean/std"
            writer.add_text("train/reconstruction_legend", legend + ") | frame 2", self.global_step)
        attn = vit.cls_attention_maps(self.encoder, self._vis_frames.to(frames.device), self.pos_embed_resize)
        picture = attention_grid(self._vis_frames.cpu(), attn.cpu())
        writer.add_image("train/cls_attention", picture, self.global_step)
