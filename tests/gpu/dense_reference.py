"""DINO-style dense label propagation for one target frame, written for the check (device-agnostic).

The op sequence of DINO's ``eval_video_segmentation.py`` (re-written, not copied): the full (context x N) x N
affinity, exp(cos / tau), times the neighbourhood window, top-k over all context sources jointly, zero below
the k-th, column-normalise, one matmul with the context labels. It materialises the whole affinity, which is
what the tiled kernel (callbacks/evaluation/local_affinity.py) avoids.
"""

from __future__ import annotations

import torch
from torch import Tensor

from callbacks.evaluation.settings import PropagationConfig


def dense_window(grid: tuple[int, int], cfg: PropagationConfig, device: torch.device) -> Tensor:
    """(N_src, N_query) float window mask, built once per video as DINO caches it."""
    h, w = grid
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    yx = torch.stack([yy.flatten(), xx.flatten()], 1)  # (N, 2)
    diff = (yx[:, None] - yx[None]).abs()  # (N_src, N_q, 2)
    if cfg.window == "square":
        inside = (diff <= cfg.radius).all(-1)
    else:
        inside = (diff * diff).sum(-1) <= cfg.radius**2
    return inside.float()


def dense_frame(
    query: Tensor, ctx_feats: Tensor, ctx_labels: Tensor, window: Tensor, cfg: PropagationConfig
) -> Tensor:
    """query (D, h, w), ctx_feats (C, D, h, w), ctx_labels (C, K, h, w), window (N, N) -> (K, h, w).

    Window on every context frame (DINO semantics; ``window_first_frame=True`` presets only).
    """
    c, d, h, w = ctx_feats.shape
    n = h * w
    tgt = query.reshape(d, n).T  # (N_q, D)
    aff = torch.exp(torch.matmul(tgt, ctx_feats.reshape(c, d, n)) / cfg.temperature)  # (C, N_q, N_src)
    aff = aff * window.T  # zero outside the neighbourhood
    aff = aff.transpose(2, 1).reshape(c * n, n)  # (C*N_src, N_q): sources in rows
    kth = aff.topk(cfg.topk, dim=0).values[-1]  # (N_q,) k-th largest per query
    aff = torch.where(aff < kth, torch.zeros_like(aff), aff)
    aff = aff / aff.sum(0, keepdim=True)
    labels = ctx_labels.reshape(c, -1, n).permute(1, 0, 2).reshape(-1, c * n)  # (K, C*N)
    return (labels @ aff).reshape(-1, h, w)
