"""SiamMAE encoder: a plain timm ``VisionTransformer`` used MAE style (masked tokens dropped before blocks).

The encoder *is* the timm model (no wrapper), so ``encoder.state_dict()`` has timm's parameter names and loads
into ``timm.create_model(name, num_classes=0)`` with ``strict=True``. What SiamMAE changes is written into it:
fixed 2-D sin-cos position embeddings (frozen), MAE weight init, and SDPA attention. The forward pass lives in
the pure functions below (``embed_tokens`` -> ``random_masking`` -> ``prepend_cls`` -> ``encode_tokens``).
"""

from typing import Literal

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from lightning_modules.components.pos_embed import dino_interpolate_pos_embed, resample_pos_embed, sincos_2d

PosEmbedResize = Literal["interpolate", "recompute", "dino"]


def init_mae_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform Linear (bias 0), LayerNorm (1, 0) (MAE ``_init_weights``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_vit(
    model_name: str = "vit_small_patch16_224", img_size: int = 224, **timm_kwargs
) -> VisionTransformer:
    """Create a timm ViT prepared for SiamMAE pre-training.

    Args:
        model_name: any timm ``VisionTransformer`` with a [CLS] token and a class-inclusive ``pos_embed``
            (``vit_small_patch16_224``, ``vit_small_patch8_224``, ...).
        img_size: training resolution (sets the stored position-embedding grid).
        **timm_kwargs: forwarded to ``timm.create_model`` (e.g. ``embed_dim``, ``depth``, ``num_heads``,
            ``patch_size`` for the tiny test model).

    Returns:
        The timm model with ``num_classes=0``, ``dynamic_img_size=True``, frozen sin-cos ``pos_embed``.
    """
    vit = timm.create_model(
        model_name, pretrained=False, img_size=img_size, num_classes=0, dynamic_img_size=True, **timm_kwargs
    )
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"{model_name!r} is not a timm VisionTransformer ({type(vit).__name__})")
    if vit.cls_token is None or vit.reg_token is not None or vit.no_embed_class:
        raise ValueError(f"{model_name!r}: SiamMAE needs exactly one [CLS] token with a pos_embed slot")
    init_mae_weights(vit)
    w = vit.patch_embed.proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # MAE: init the patch conv like a Linear layer
    nn.init.normal_(vit.cls_token, std=0.02)
    grid = vit.patch_embed.grid_size
    vit.pos_embed.data.copy_(sincos_2d(vit.embed_dim, grid).unsqueeze(0))  # (1, 1+L, D)
    vit.pos_embed.requires_grad_(False)  # fixed, as in MAE/SiamMAE (no temporal embedding either)
    for blk in vit.blocks:
        blk.attn.fused_attn = True  # always torch SDPA (flash / memory-efficient kernels on GPU)
    return vit


def patch_size_of(vit: VisionTransformer) -> int:
    """Square patch size p of a timm ViT."""
    return int(vit.patch_embed.patch_size[0])


def pos_embed_for(
    vit: VisionTransformer, grid: tuple[int, int], mode: PosEmbedResize = "interpolate"
) -> Tensor:
    """Position embedding for a patch grid, (1, 1 + h*w, D).

    At the training grid this is the stored table. Elsewhere (480p evaluation) it is bicubically resampled
    to the grid size (``interpolate``), resampled by DINO's scale-factor rule (``dino``,
    ``interpolate_pos_encoding``; what DINO's evaluation feeds its ViTs), or recomputed as sin-cos for the
    new grid (``recompute``; exact only for sin-cos-trained weights, it extrapolates positions).
    """
    train_grid = tuple(vit.patch_embed.grid_size)
    if tuple(grid) == train_grid:
        return vit.pos_embed
    if mode == "dino":
        return dino_interpolate_pos_embed(vit.pos_embed, grid, num_prefix=1)
    if mode == "recompute":
        return sincos_2d(vit.embed_dim, grid).unsqueeze(0).to(vit.pos_embed)
    if mode == "interpolate":
        return resample_pos_embed(vit.pos_embed, train_grid, grid, num_prefix=1)
    raise ValueError(f"unknown pos-embed resize mode {mode!r}")


def embed_tokens(
    vit: VisionTransformer, imgs: Tensor, pos_mode: PosEmbedResize = "interpolate"
) -> tuple[Tensor, tuple[int, int]]:
    """Patch-embed images and add patch position embeddings (no [CLS] yet, so masking can drop tokens).

    Args:
        vit: encoder.
        imgs: (B, 3, H, W), H and W divisible by p.
        pos_mode: how to adapt the position embedding to a new grid.

    Returns:
        tokens (B, L, D) and grid (h, w).
    """
    p = patch_size_of(vit)
    if imgs.shape[-2] % p or imgs.shape[-1] % p:
        raise ValueError(f"input size {tuple(imgs.shape[-2:])} is not divisible by patch size {p}")
    grid = (imgs.shape[-2] // p, imgs.shape[-1] // p)
    x = vit.patch_embed(imgs)  # (B, h, w, D) with dynamic_img_size, else (B, L, D)
    x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, L, D)
    return x + pos_embed_for(vit, grid, pos_mode)[:, 1:], grid


def prepend_cls(vit: VisionTransformer, x: Tensor) -> Tensor:
    """Prepend the [CLS] token (plus its zero position slot): (B, N, D) -> (B, 1+N, D)."""
    cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
    return torch.cat([cls, x], dim=1)


def encode_tokens(vit: VisionTransformer, x: Tensor, depth: int | None = None) -> Tensor:
    """Transformer blocks then the final norm.

    Args:
        vit: encoder.
        x: (B, N, D) tokens (with [CLS]).
        depth: run only the first ``depth`` blocks (then norm), for intermediate-layer features.

    Returns:
        (B, N, D).
    """
    x = vit.norm_pre(x)
    blocks = vit.blocks if depth is None else vit.blocks[:depth]
    for blk in blocks:
        x = blk(x)
    return vit.norm(x)


def extract_patch_features(
    vit: VisionTransformer, imgs: Tensor, depth: int | None = None, pos_mode: PosEmbedResize = "interpolate"
) -> Tensor:
    """Dense features: patch tokens after the final norm, [CLS] dropped.

    Args:
        vit: encoder.
        imgs: (B, 3, H, W) ImageNet-normalised, any size divisible by p.
        depth: number of blocks to run (None = all).
        pos_mode: position-embedding adaptation for non-training sizes.

    Returns:
        (B, D, H/p, W/p).
    """
    x, (h, w) = embed_tokens(vit, imgs, pos_mode)
    x = encode_tokens(vit, prepend_cls(vit, x), depth)[:, 1:]  # (B, L, D)
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # (B, D, h, w)


@torch.no_grad()
def cls_attention_maps(
    vit: VisionTransformer, imgs: Tensor, pos_mode: PosEmbedResize = "interpolate"
) -> Tensor:
    """Last-layer self-attention of the [CLS] query over the patches, per head (SiamMAE Fig. 5, DINO Fig. 1).

    Args:
        vit: encoder.
        imgs: (B, 3, H, W).
        pos_mode: position-embedding adaptation.

    Returns:
        (B, heads, h, w) attention weights (each head sums to <= 1 over the patches; the rest is on [CLS]).
    """
    x, (h, w) = embed_tokens(vit, imgs, pos_mode)
    x = vit.norm_pre(prepend_cls(vit, x))
    for blk in vit.blocks[:-1]:
        x = blk(x)
    attn = vit.blocks[-1].attn
    B, N, _ = x.shape
    y = vit.blocks[-1].norm1(x)
    qkv = attn.qkv(y).reshape(B, N, 3, attn.num_heads, attn.head_dim)  # (B, N, 3, nh, dh)
    qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, nh, N, dh)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    logits = (q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)  # (B, nh, 1, N)
    weights = F.softmax(logits, dim=-1)[:, :, 0, 1:]  # (B, nh, L): drop the [CLS] key
    return weights.reshape(B, attn.num_heads, h, w)  # (B, nh, h, w)
