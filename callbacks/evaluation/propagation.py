"""Zero-shot k-NN label propagation through a video (SiamMAE Sec. 4 / Table 4b, DINO, CRW).

Pure tensor functions, no I/O. For target frame t the context is frame 0 (ground-truth labels) plus the last
`queue_length` *predicted* frames (soft labels); every query cell takes the top-k most similar context cells
jointly over all context frames, restricted to a spatial neighbourhood, weights them by a softmax over cos/tau
and averages their labels. See ``callbacks.evaluation.local_affinity`` for how the affinity is computed
without ever materialising the (context*N) x N matrix, and README "Label propagation" for the protocol
choices.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from callbacks.evaluation.local_affinity import FrameContext, frame_plan, propagate_tiles
from callbacks.evaluation.settings import PropagationConfig


def context_indices(t: int, queue_length: int, context: str = "dino") -> list[int]:
    """Context frames of target t: frame 0 plus the last `queue_length` predicted frames.

    "dino" never repeats frame 0; "crw" always has 1 + queue_length entries, frames t-m .. t-1 clamped to 0.
    """
    if context == "crw":
        return [0, *(max(0, i) for i in range(t - queue_length, t))]
    return [0, *range(max(1, t - queue_length), t)]


def _check_inputs(feats: Tensor, labels: Tensor) -> None:
    if feats.ndim != 4:
        raise ValueError(f"feats must be (T, D, h, w), got shape {tuple(feats.shape)}")
    if labels.ndim != 3 or labels.shape[-2:] != feats.shape[-2:]:
        raise ValueError(
            f"labels must be (K, h, w) with h, w = {tuple(feats.shape[-2:])}, got {tuple(labels.shape)}"
        )


def propagate_frame(query: Tensor, ctx_feats: Tensor, ctx_labels: Tensor, cfg: PropagationConfig) -> Tensor:
    """Label one target frame from its context; context frame 0 is the reference (see `window_first_frame`).

    Args:
        query: (D, h, w) L2-normalised target features.
        ctx_feats: (C, D, h, w) L2-normalised context features, reference frame first.
        ctx_labels: (C, K, h, w) context labels.
        cfg: propagation settings.

    Returns:
        (K, h, w) soft labels; every cell is a convex combination of context labels.
    """
    _check_inputs(ctx_feats, ctx_labels[0])
    plan = frame_plan(tuple(query.shape[-2:]), cfg.chunk_size, cfg.radius, cfg.window, query.device)
    ctx = FrameContext.from_frames(ctx_feats, ctx_labels, cfg.window_first_frame)
    query = query.permute(1, 2, 0).contiguous()  # (h, w, D)
    out = propagate_tiles(query, ctx, plan, cfg.topk, cfg.temperature, cfg.ties == "keep")
    return out.permute(2, 0, 1)  # (K, h, w)


def propagate_stream(
    frames: Iterable[Tensor], first_labels: Tensor, cfg: PropagationConfig | None = None
) -> Iterator[Tensor]:
    """Propagate frame-0 labels by k-NN in feature space, one frame at a time.

    Only the context (frame 0 and the last ``queue_length`` predictions) is held, so memory does not grow
    with the video's length (evaluation streams frames, propagation, PNGs and J/F through this).

    Args:
        frames: (D, h, w) features per frame, frame 0 first, L2-normalised along D.
        first_labels: (K, h, w) float labels of frame 0 at feature resolution (see `downsample_labels`).
        cfg: propagation settings; default SiamMAE's DAVIS setting.

    Yields:
        (K, h, w) soft labels: frame 0's are `first_labels`, frame t > 0's are predicted from frame 0 and the
        predictions of frames max(1, t - queue_length) .. t-1 (``context="crw"``: t - queue_length .. t-1,
        indices below 0 being copies of frame 0).
    """
    cfg = cfg or PropagationConfig()
    frames = iter(frames)
    feats0 = next(frames)
    _check_inputs(feats0[None], first_labels)
    yield first_labels
    ctx = FrameContext.for_video(
        feats0.permute(1, 2, 0), first_labels.permute(1, 2, 0), cfg.queue_length, cfg.window_first_frame,
        cfg.context == "crw",
    )  # fmt: skip
    plan = frame_plan(tuple(feats0.shape[-2:]), cfg.chunk_size, cfg.radius, cfg.window, feats0.device)
    for t, feats in enumerate(frames, start=1):
        query = feats.permute(1, 2, 0).contiguous()  # (h, w, D)
        out = propagate_tiles(query, ctx, plan, cfg.topk, cfg.temperature, cfg.ties == "keep")  # (h, w, K)
        ctx.push(query, out, t)
        yield out.permute(2, 0, 1)  # (K, h, w)


def propagate_video(feats: Tensor, first_labels: Tensor, cfg: PropagationConfig | None = None) -> Tensor:
    """`propagate_stream` over a whole video: (T, D, h, w) features -> (T, K, h, w) soft labels."""
    _check_inputs(feats, first_labels)
    return torch.stack(list(propagate_stream(feats.unbind(0), first_labels, cfg)))  # (T, K, h, w)
