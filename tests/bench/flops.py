"""Analytic matmul FLOP counts of a SiamMAE training step and a plain ViT, from the model shapes.

Convention (PaLM/Chinchilla MFU): only matrix products are counted, 2 FLOPs per multiply-add (Linear, the
patch-embedding convolution, the two attention products q k^T and a v). LayerNorm, softmax, GELU, the loss
and the optimiser update are element-wise and not counted. A training step is 3x the forward (the backward
computes a gradient for the input and one for the weights of every product); this slightly over-counts the
patch embedding, whose input needs no gradient (< 0.5 % of a ViT-S/16 SiamMAE step).

``tests/bench/test_flops.py`` checks the forward counts against ``torch.utils.flop_counter.FlopCounterMode``
on the real modules (with SDPA in its math backend, since the CPU flash kernel is not counted by the counter).
"""

from __future__ import annotations

from lightning_modules.components.masking import num_visible


def attention_flops(nq: int, nkv: int, dim: int) -> int:
    """q k^T and softmax(.) v for ``nq`` queries over ``nkv`` keys of total width ``dim`` (all heads)."""
    return 2 * 2 * nq * nkv * dim


def mlp_flops(n: int, dim: int, mlp_ratio: float) -> int:
    """fc1 + fc2 of a Transformer MLP on ``n`` tokens (hidden width ``int(dim * mlp_ratio)``, as timm)."""
    return 2 * 2 * n * dim * int(dim * mlp_ratio)


def self_block_flops(n: int, dim: int, mlp_ratio: float = 4.0) -> int:
    """Pre-norm self-attention block on ``n`` tokens: qkv, attention, proj, MLP."""
    return (
        2 * n * dim * 3 * dim + attention_flops(n, n, dim) + 2 * n * dim * dim + mlp_flops(n, dim, mlp_ratio)
    )


def cross_block_flops(
    nq: int, nkv: int, dim: int, mlp_ratio: float = 4.0, self_attention: bool = True
) -> int:
    """SiamMAE decoder block: cross-attention (q from ``nq`` frame-2 tokens, kv from ``nkv`` frame-1
    tokens), optional self-attention among the frame-2 tokens, MLP."""
    cross = 2 * nq * dim * dim + 2 * nkv * dim * 2 * dim + attention_flops(nq, nkv, dim) + 2 * nq * dim * dim
    selfattn = 2 * nq * dim * 3 * dim + attention_flops(nq, nq, dim) + 2 * nq * dim * dim
    return cross + (selfattn if self_attention else 0) + mlp_flops(nq, dim, mlp_ratio)


def siammae_forward_flops(
    batch: int = 8,
    img_size: int = 224,
    patch_size: int = 16,
    embed_dim: int = 384,
    depth: int = 12,
    mlp_ratio: float = 4.0,
    mask_ratio: float = 0.95,
    symmetric_masking: bool = False,
    encoder_mode: str = "siamese",
    decoder_mode: str = "cross_self",
    decoder_dim: int = 512,
    decoder_depth: int = 8,
    decoder_mlp_ratio: float = 4.0,
    in_chans: int = 3,
    keep_rule: str = "floor",
) -> int:
    """Matmul FLOPs of one ``SiamMAE.forward`` on a batch of frame pairs (defaults: ViT-S/16, paper setup).

    Encoder: patch embedding of both whole frames (masking drops tokens after it), then the blocks on
    frame 1's 1 + L1_keep tokens and frame 2's 1 + L2_keep tokens (siamese) or on 1 + L1_keep + L2_keep
    tokens (joint). Decoder: ``decoder_embed`` of both latents, ``decoder_depth`` blocks with 1 + L queries
    (frame 2, [MASK] tokens filled in) over 1 + L keys (frame 1), and the pixel head on 1 + L tokens.
    """
    L = (img_size // patch_size) ** 2
    patch_dim = patch_size * patch_size * in_chans
    n1 = 1 + num_visible(L, mask_ratio if symmetric_masking else 0.0, keep_rule)  # [CLS] + visible frame 1
    n2 = 1 + num_visible(L, mask_ratio, keep_rule)
    embed = 2 * 2 * L * patch_dim * embed_dim  # both frames, whole
    if encoder_mode == "siamese":
        encoder = depth * (
            self_block_flops(n1, embed_dim, mlp_ratio) + self_block_flops(n2, embed_dim, mlp_ratio)
        )
    elif encoder_mode == "joint":
        encoder = depth * self_block_flops(n1 + n2 - 1, embed_dim, mlp_ratio)
    else:
        raise ValueError(f"unknown encoder_mode {encoder_mode!r}")
    n = 1 + L  # decoder tokens per frame
    dec_embed = 2 * (n1 + n2) * embed_dim * decoder_dim
    if decoder_mode == "joint":
        blocks = decoder_depth * self_block_flops(2 * n, decoder_dim, decoder_mlp_ratio)
    elif decoder_mode in ("cross_self", "cross"):
        blk = cross_block_flops(n, n, decoder_dim, decoder_mlp_ratio, decoder_mode == "cross_self")
        blocks = decoder_depth * blk
    else:
        raise ValueError(f"unknown decoder_mode {decoder_mode!r}")
    head = 2 * n * decoder_dim * patch_dim
    return batch * (embed + encoder + dec_embed + blocks + head)


def siammae_step_flops(batch: int = 8, **shape) -> int:
    """Matmul FLOPs of one SiamMAE training step (forward + backward = 3x forward); see the module doc."""
    return 3 * siammae_forward_flops(batch, **shape)


def vit_forward_flops(
    batch: int = 8,
    img_size: int = 224,
    patch_size: int = 16,
    embed_dim: int = 384,
    depth: int = 12,
    mlp_ratio: float = 4.0,
    num_classes: int = 1000,
    in_chans: int = 3,
) -> int:
    """Matmul FLOPs of a plain timm ViT forward on whole images (patch embed, 1 + L tokens, [CLS] head)."""
    L = (img_size // patch_size) ** 2
    embed = 2 * L * patch_size * patch_size * in_chans * embed_dim
    return batch * (
        embed + depth * self_block_flops(1 + L, embed_dim, mlp_ratio) + 2 * embed_dim * num_classes
    )


def siammae_shape(model) -> dict:
    """The keyword arguments of :func:`siammae_forward_flops` read from a built ``SiamMAE`` model."""
    enc, dec = model.encoder, model.decoder
    blk = enc.blocks[0]
    return dict(
        img_size=int(enc.patch_embed.img_size[0]),
        patch_size=model.patch_size,
        embed_dim=enc.embed_dim,
        depth=len(enc.blocks),
        mlp_ratio=blk.mlp.fc1.out_features / enc.embed_dim,
        mask_ratio=model.hparams.mask_ratio,
        symmetric_masking=model.hparams.symmetric_masking,
        keep_rule=model.hparams.keep_rule,
        encoder_mode=model.hparams.encoder_mode,
        decoder_mode=dec.mode,
        decoder_dim=dec.decoder_embed.out_features,
        decoder_depth=len(dec.blocks),
        decoder_mlp_ratio=dec.blocks[0].mlp.fc1.out_features / dec.decoder_embed.out_features,
    )


# ----------------------------------------------------------------- VideoMAC encoders (counted, not analytic)
def videomac_encoder_macs(model_name: str, variant: str, img_size: int = 224) -> int:
    """Multiply-accumulates of one dense encoder forward (conv + Linear), counted by ``FlopCounterMode``.

    The papers' "FLOPs" (ResNet-50 4.1 G) are these MACs; LayerNorm, GRN and GELU are not counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lightning_modules.components.encoders import build_encoder

    encoder = build_encoder(model_name, variant).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 3, img_size, img_size))
    return counter.get_total_flops() // 2
