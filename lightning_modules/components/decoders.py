"""SiamMAE decoders (paper §3 "Decoder", Table 2b): ``cross_self``, ``cross`` and ``joint``.

Every attention is ``torch.nn.functional.scaled_dot_product_attention``. Blocks are pre-norm (ViT/MAE).
The decoder embeds both frames' encoder outputs to the full token set (linear projection, [MASK] tokens at the
removed positions, fixed 2-D sin-cos position embedding), mixes them, and predicts p*p*3 pixels per patch of
frame 2.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from lightning_modules.components.pos_embed import sincos_2d
from lightning_modules.components.vit import init_mae_weights

DecoderMode = Literal["cross_self", "cross", "joint"]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, D) -> (B, heads, N, D/heads)."""
    B, N, D = x.shape
    return x.reshape(B, N, num_heads, D // num_heads).transpose(1, 2)  # (B, nh, N, dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, heads, N, dh) -> (B, N, heads*dh)."""
    B, nh, N, dh = x.shape
    return x.transpose(1, 2).reshape(B, N, nh * dh)  # (B, N, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention (SDPA)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, N, D)
        out = F.scaled_dot_product_attention(*(split_heads(t, self.num_heads) for t in (q, k, v)))
        return self.proj(merge_heads(out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x`` (frame 2), keys/values from ``context`` (frame 1).

    The softmax(q k^T) here is the affinity between frame-2 and frame-1 tokens, which is why the paper
    relates it to the affinity matrix used for label propagation.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Attend from x (B, N, D) to context (B, M, D); returns (B, N, D)."""
        k, v = self.kv(context).chunk(2, dim=-1)  # 2 x (B, M, D)
        q = split_heads(self.q(x), self.num_heads)  # (B, nh, N, dh)
        k, v = split_heads(k, self.num_heads), split_heads(v, self.num_heads)  # (B, nh, M, dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, dh)
        return self.proj(merge_heads(out))


class SelfBlock(nn.Module):
    """Pre-norm Transformer block: self-attention, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), SelfAttention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D); ``context`` is ignored (uniform block interface)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    """Pre-norm decoder block: cross-attention to frame 1, [self-attention among frame 2], MLP.

    Without self-attention it is the ``cross`` decoder's block; with it, the ``cross_self`` block (the
    Transformer decoder block of Vaswani et al., with frame-1 tokens as the memory).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, self_attention: bool = False):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, num_heads)
        self.norm_self = nn.LayerNorm(dim, eps=1e-6) if self_attention else None
        self.attn = SelfAttention(dim, num_heads) if self_attention else None
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Update frame-2 tokens x (B, N, D) from frame-1 tokens context (B, M, D); returns (B, N, D)."""
        x = x + self.cross(self.norm_q(x), self.norm_kv(context))
        if self.attn is not None:
            x = x + self.attn(self.norm_self(x))
        return x + self.mlp(self.norm2(x))


class SiamDecoder(nn.Module):
    """Decoder from the two frames' encoder outputs to frame-2 pixel predictions.

    Args:
        encoder_dim: encoder width.
        patch_size: p (predictions are p*p*3 per patch).
        grid: training patch grid (h, w) for the fixed decoder position embedding.
        mode: ``cross_self`` (default, Table 2b best), ``cross`` or ``joint``.
        dim: decoder width (MAE default 512).
        depth: number of blocks (MAE default 8).
        num_heads: attention heads (MAE default 16).
        mlp_ratio: MLP hidden width / dim.
        in_chans: image channels.
    """

    def __init__(
        self,
        encoder_dim: int,
        patch_size: int,
        grid: tuple[int, int],
        mode: DecoderMode = "cross_self",
        dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
    ):
        super().__init__()
        if mode not in ("cross_self", "cross", "joint"):
            raise ValueError(f"unknown decoder mode {mode!r}")
        self.mode, self.grid = mode, tuple(grid)
        self.decoder_embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_2d(dim, self.grid).unsqueeze(0)  # (1, 1+L, dim)
        self.decoder_pos_embed = nn.Parameter(pos, requires_grad=False)
        if mode == "joint":
            blocks = [SelfBlock(dim, num_heads, mlp_ratio) for _ in range(depth)]
        else:
            blocks = [CrossBlock(dim, num_heads, mlp_ratio, mode == "cross_self") for _ in range(depth)]
        self.blocks = nn.ModuleList(blocks)
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dim, patch_size**2 * in_chans)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def pos_embed(self, grid: tuple[int, int]) -> Tensor:
        """(1, 1+h*w, dim) fixed sin-cos position embedding (recomputed for a non-training grid)."""
        if tuple(grid) == self.grid:
            return self.decoder_pos_embed
        return sincos_2d(self.decoder_pos_embed.shape[-1], grid).unsqueeze(0).to(self.decoder_pos_embed)

    def embed(self, x: Tensor, ids_restore: Tensor, grid: tuple[int, int]) -> Tensor:
        """Project encoder output and fill removed positions with [MASK] (MAE ``forward_decoder`` head).

        Args:
            x: (B, 1 + L_keep, E) encoder output, [CLS] first.
            ids_restore: (B, L) from ``random_masking``.
            grid: (h, w).

        Returns:
            (B, 1 + L, dim) full token set in grid order, with position embeddings.
        """
        x = self.decoder_embed(x)  # (B, 1+L_keep, dim)
        B, n, dim = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(B, L + 1 - n, dim)  # (B, L-L_keep, dim)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # (B, L, dim) shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(B, L, dim))  # (B, L, dim) grid order
        return torch.cat([x[:, :1], x_], dim=1) + self.pos_embed(grid)  # (B, 1+L, dim)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Predict frame-2 patches.

        Args:
            x1: (B, 1+L, dim) embedded frame-1 tokens (from :meth:`embed`).
            x2: (B, 1+L, dim) embedded frame-2 tokens.

        Returns:
            (B, L, p*p*3) pixel predictions for every frame-2 patch ([CLS] removed).
        """
        if self.mode == "joint":
            n1 = x1.shape[1]
            x = torch.cat([x1, x2], dim=1)  # (B, 2(1+L), dim): both frames' full token sets
            for blk in self.blocks:
                x = blk(x)
            x2 = x[:, n1:]  # (B, 1+L, dim)
        else:
            for blk in self.blocks:
                x2 = blk(x2, x1)
        return self.decoder_pred(self.decoder_norm(x2))[:, 1:]  # (B, L, p*p*3)
