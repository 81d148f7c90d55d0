"""One VideoMAC branch: a sparse ConvNet encoder and the FCMAE-style decoder (VideoMAC Fig. 3)."""

from torch import nn

from lightning_modules.components.conv_decoder import ConvDecoder
from lightning_modules.components.encoders import EncoderVariant, InitScheme, build_encoder, is_official
from lightning_modules.components.sparse_backends import SparseBackend


class MaskedConvAutoencoder(nn.Module):
    """Sparse encoder + conv decoder; the online network and (as an EMA copy) the target network.

    A container: ``VideoMAC.forward_encoder`` / ``forward_decoder`` run its two parts, so that the system
    file reads in the paper's order.

    Args:
        encoder_name: timm ResNet / ConvNeXt(-V2) name.
        sparse_backend: ``dense_masked``, the pure-PyTorch masked-dense emulation (the only backend).
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
