"""One VideoMAC branch: a sparse ConvNet encoder and the FCMAE-style decoder (VideoMAC Fig. 3)."""

import torch
from torch import Tensor, nn

from lightning_modules.components.conv_decoder import ConvDecoder
from lightning_modules.components.encoders import EncoderVariant, InitScheme, build_encoder, is_official
from lightning_modules.components.sparse_backends import SparseBackend
from lightning_modules.components.visualize import reconstruction_panels, tile


class MaskedConvAutoencoder(nn.Module):
    """Sparse encoder + conv decoder; the online network and (as an EMA copy) the target network.

    Args:
        encoder_name: timm ResNet / ConvNeXt(-V2) name.
        sparse_backend: ``dense_masked`` (pure PyTorch) or ``minkowski`` (optional, import-gated).
        patch_size: mask patch size p; must equal the encoder's total stride (32).
        decoder_dim: decoder width; decoder_depth: decoder blocks; decoder_grn: ConvNeXt-V2 decoder blocks.
        drop_path_rate: encoder stochastic depth; grn_batch_global: MinkowskiEngine-style batch GRN.
        pretrained: start the encoder from timm's pretrained weights (timm variant).
        encoder_variant: ``official`` (the authors' encoders) or ``timm``.
        init: ``official`` (the official std-1 quirk, official encoders only) or ``standard`` (std 0.02).
    """

    def __init__(
        self,
        encoder_name: str,
        sparse_backend: SparseBackend = "dense_masked",
        patch_size: int = 32,
        decoder_dim: int = 512,
        decoder_depth: int = 1,
        decoder_grn: bool = True,
        drop_path_rate: float = 0.0,
        grn_batch_global: bool = False,
        pretrained: bool = False,
        encoder_variant: EncoderVariant = "timm",
        init: InitScheme = "standard",
    ):
        super().__init__()
        self.encoder = build_encoder(
            encoder_name, encoder_variant, sparse_backend, 32, drop_path_rate, grn_batch_global, pretrained
        )
        if patch_size != self.encoder.reduction:
            # One decoder cell per patch, as in FCMAE/VideoMAC (32-px patches = the encoder's total stride).
            raise ValueError(
                f"mask_patch_size must equal the encoder stride {self.encoder.reduction}, got {patch_size}"
            )
        self.patch_size = patch_size
        self.decoder = ConvDecoder(
            self.encoder.num_features, decoder_dim, decoder_depth, patch_size, 3, decoder_grn
        )
        self.init_weights(init)

    def init_weights(self, scheme: InitScheme) -> None:
        """Initialise as the official code (``official``, notes §2.2) or with std 0.02 (``standard``).

        ``official`` re-initialises encoder and decoder as ``VideoMAC.apply(_init_weights_*)`` does; timm
        encoders keep timm's own initialisation under ``standard``.
        """
        if not is_official(self.encoder):
            if scheme == "official":
                raise ValueError(
                    "init 'official' reproduces the official encoders' initialisation; the timm encoders "
                    "have no such counterpart: use init 'standard' with encoder_variant 'timm'"
                )
            return  # timm's encoder init + the decoder's constructor init (std 0.02) = the standard scheme
        self.encoder.init_weights(scheme)
        family = "resnet" if "resnet" in type(self.encoder).__name__.lower() else "convnext"
        self.decoder.init_weights(scheme, family)

    def forward_encoder(self, imgs: Tensor, mask: Tensor | None) -> Tensor:
        """(B, 3, H, W) and mask (B, 1, h, w) (1 = masked) -> (B, C, h, w) features, zero at masked cells."""
        return self.encoder(imgs, mask)

    def forward_decoder(self, feats: Tensor, mask: Tensor | None) -> Tensor:
        """(B, C, h, w) features -> (B, L, p*p*3) predicted patches (mask token at masked cells)."""
        return self.decoder(feats, mask)

    def forward(self, imgs: Tensor, mask: Tensor | None) -> Tensor:
        """Predict every patch of ``imgs`` from its visible patches: (B, 3, H, W) -> (B, L, p*p*3)."""
        return self.forward_decoder(self.forward_encoder(imgs, mask), mask)


def mac_reconstruction_grid(
    frames: Tensor,
    pred_o: Tensor,
    pred_t: Tensor,
    mask_o: Tensor,
    mask_t: Tensor,
    patch_size: int,
    norm_pix: bool,
) -> Tensor:
    """VideoMAC Fig. 8-style picture, one row per pair: input | masked | reconstruction, frame t then t+1.

    Reconstructions paste the visible patches back; normalised-pixel predictions are shown with each target
    patch's own mean/std (display only).

    Args:
        frames: (B, 2, 3, H, W) ImageNet-normalised pair.
        pred_o: (B, L, p*p*3) online prediction of frame t.
        pred_t: (B, L, p*p*3) target prediction of frame t+1.
        mask_o: (B, L) mask of frame t, 1 = masked.
        mask_t: (B, L) mask of frame t+1.
        patch_size: p.
        norm_pix: predictions are in normalised-pixel units.

    Returns:
        (3, H', W') image in [0, 1].
    """
    cols = []
    for f, pred, mask in ((frames[:, 0], pred_o, mask_o), (frames[:, 1], pred_t, mask_t)):
        cols += reconstruction_panels(f, pred, mask, patch_size, norm_pix)  # input | masked | reconstruction
    return tile(torch.stack(cols, dim=1))  # (B rows, 6 cols)
