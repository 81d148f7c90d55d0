"""Zero-shot k-NN label propagation through a video (SiamMAE Sec. 4 / Table 4b, DINO, CRW).

Pure tensor functions, no I/O. For target frame t the context is frame 0 (ground-truth labels) plus the last
`queue_length` *predicted* frames (soft labels); every query cell takes the top-k most similar context cells
jointly over all context frames, restricted to a spatial neighbourhood, weights them by a softmax over cos/tau
and averages their labels. See `callbacks/local_affinity.py` for how the affinity is computed without ever
materialising the (context*N) x N matrix, and README "Label propagation" for the protocol choices.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.local_affinity import FrameContext, frame_plan, propagate_tiles

PresetName = Literal["davis", "vip", "jhmdb", "dino", "crw"]


@dataclass(frozen=True)
class PropagationConfig:
    """Every knob of k-NN label propagation; defaults are SiamMAE Table 4b's DAVIS setting.

    Attributes:
        topk: neighbours kept per query cell, jointly over all context frames (Table 4b: 7 DAVIS/JHMDB,
            10 VIP).
        queue_length: number of previous *predicted* frames in the context besides frame 0 (Table 4b: 20).
        radius: neighbourhood radius in feature cells (Table 4b "neighborhood size": 20 DAVIS/JHMDB, 8 VIP).
        temperature: tau in exp(cos/tau). SiamMAE does not state it; 0.1 is DINO's hard-coded value, which
            SiamMAE's DINO-style flags (topk, n_last_frames, size_mask_neighborhood) point to.
        window: "square" (DINO, Chebyshev |dy|,|dx| <= r), "circle" (VFS, dy^2 + dx^2 <= r^2) or
            "circle_open" (CRW ``MaskedAttention``, dy^2 + dx^2 < r^2).
        window_first_frame: restrict frame 0 to the neighbourhood too (DINO: yes; CRW: no).
        ties: "keep" every candidate tied with the k-th value (DINO ``aff[aff < kth] = 0``) or "exact" k
            (``torch.topk``: CRW, VFS).
        context: "dino" (frame 0 once + the last ``queue_length`` predictions) or "crw" (videowalk
            ``test.py``: the video is front-padded with ``queue_length`` copies of frame 0, so the windowed
            queue holds frames t-m .. t-1 clamped to 0, and frame 0 is also the unrestricted long memory).
        soft_first_frame: bilinear (CRW) instead of nearest (DINO) downsampling of the first-frame labels;
            read by the caller of `downsample_labels` (protocols use their ``label_downsample``).
        minmax_norm: per-channel min-max rescaling after upsampling, before argmax (DINO "norm_mask").
        chunk_size: query cells per tile (tile side = floor(sqrt(chunk_size))); trades speed for memory only.
    """

    topk: int = 7
    queue_length: int = 20
    radius: float = 20.0
    temperature: float = 0.1
    window: Literal["square", "circle", "circle_open"] = "square"
    window_first_frame: bool = True
    ties: Literal["keep", "exact"] = "keep"
    context: Literal["dino", "crw"] = "dino"
    soft_first_frame: bool = False
    minmax_norm: bool = True
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.queue_length < 0:
            raise ValueError(f"queue_length must be >= 0, got {self.queue_length}")
        if not self.radius >= 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.window not in ("square", "circle", "circle_open"):
            raise ValueError(f"window must be 'square', 'circle' or 'circle_open', got {self.window!r}")
        if self.ties not in ("keep", "exact"):
            raise ValueError(f"ties must be 'keep' or 'exact', got {self.ties!r}")
        if self.context not in ("dino", "crw"):
            raise ValueError(f"context must be 'dino' or 'crw', got {self.context!r}")
        if self.context == "crw" and self.window_first_frame:
            raise ValueError("context='crw' searches frame 0 over the whole grid: window_first_frame=False")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @classmethod
    def preset(cls, name: PresetName) -> PropagationConfig:
        """Propagation knobs only (the full protocols are ``callbacks.protocols``); kept for the study/demo.

        "davis"/"vip"/"jhmdb" use DINO semantics (square window on all frames, hard first frame, min-max,
        tau 0.1) with Table 4b's (k, queue, radius) and exactly-k top-k (corrmae's pre-protocol behaviour).
        "dino" is `eval_video_segmentation.py`'s defaults (ties kept). "crw" is videowalk's DAVIS command
        (T 0.05, k 10, 20 padded frames, open radius-12 circle, frame 0 unrestricted, bilinear first-frame
        labels, no min-max).
        """
        davis = cls(ties="exact")
        presets = {
            "davis": davis,
            "vip": replace(davis, topk=10, radius=8.0),
            "jhmdb": replace(davis, minmax_norm=False),  # keypoints are decoded from the soft grid maps
            "dino": replace(davis, topk=5, queue_length=7, radius=12.0, ties="keep"),
            "crw": cls(
                topk=10,
                queue_length=20,
                radius=12.0,
                temperature=0.05,
                window="circle_open",
                window_first_frame=False,
                ties="exact",
                context="crw",
                soft_first_frame=True,
                minmax_norm=False,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return presets[name]


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


# ---------------------------------------------------------------------------------- label encoding / decoding


def labels_onehot(mask: Tensor, num_labels: int | None = None) -> Tensor:
    """Integer label map (H, W) -> float one-hot (K, H, W), K = num_labels or max id + 1 (DINO)."""
    num = int(mask.max()) + 1 if num_labels is None else num_labels
    if mask.min() < 0 or mask.max() >= num:
        raise ValueError(f"label ids must lie in [0, {num}), got [{int(mask.min())}, {int(mask.max())}]")
    return F.one_hot(mask.long(), num).permute(2, 0, 1).float()  # (K, H, W)


def pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for PIL's NEAREST resize along one axis, bit-exact.

    PIL walks the output with a float64 accumulator x = s/2, s/2 + s, ... (s = n_in / n_out) and takes
    floor(x); the closed form floor((i + 0.5) * s) (torch "nearest-exact") differs on a few columns,
    e.g. one of 854 for DINO's 832 -> 854 upsampling, so the accumulation is reproduced (numpy's cumsum is
    sequential).
    """
    steps = np.full(n_out, n_in / n_out)
    steps[0] *= 0.5
    return np.minimum(np.floor(np.cumsum(steps)).astype(np.int64), n_in - 1)


def pil_nearest_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize the last two dims of x (..., H, W) to `size` like PIL NEAREST (any dtype, any device)."""
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], size
    ys = torch.from_numpy(pil_nearest_index(h_in, h_out)).to(x.device)
    xs = torch.from_numpy(pil_nearest_index(w_in, w_out)).to(x.device)
    return x.index_select(-2, ys).index_select(-1, xs)


def downsample_labels(mask_onehot: Tensor, stride: int, soft: bool = False) -> Tensor:
    """First-frame labels (K, H, W) at pixel resolution -> (K, H // stride, W // stride) on the feature grid.

    Hard (DINO): PIL nearest (picks pixel s*i + s//2), so labels stay one-hot and a small object can vanish.
    Soft (CRW): bilinear, align_corners=False, like cv2.resize INTER_LINEAR.
    """
    size = (mask_onehot.shape[-2] // stride, mask_onehot.shape[-1] // stride)
    if not soft:
        return pil_nearest_resize(mask_onehot.float(), size)
    return F.interpolate(mask_onehot[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def _upsample(soft: Tensor, stride: int, minmax: bool) -> Tensor:
    """(K, h, w) -> (K, h*stride, w*stride) bilinear (DINO), then optional per-channel min-max (norm_mask)."""
    up = F.interpolate(soft[None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    if minmax:
        lo = up.amin(dim=(1, 2), keepdim=True)
        hi = up.amax(dim=(1, 2), keepdim=True)
        # DINO rescales channels whose max > 0; a constant channel would divide by 0 there, we leave it as is.
        scale = torch.where((hi > 0) & (hi > lo), hi - lo, torch.ones_like(hi))
        shift = torch.where((hi > 0) & (hi > lo), lo, torch.zeros_like(lo))
        up = (up - shift) / scale
    return up


def labels_to_pixels(
    soft: Tensor, stride: int, size: tuple[int, int] | None = None, minmax: bool = True
) -> Tensor:
    """Soft grid labels (K, h, w) -> (K, H, W): bilinear x stride, min-max, nearest to a different `size`."""
    up = _upsample(soft, stride, minmax)
    if size is not None and tuple(size) != tuple(up.shape[-2:]):
        up = pil_nearest_resize(up, tuple(size))
    return up


def predict_mask_resized(soft: Tensor, size: tuple[int, int]) -> Tensor:
    """CRW ``dump_predictions``: one bilinear resize of the soft map (K, h, w) straight to ``size``, argmax.

    cv2.resize INTER_LINEAR on float32 samples at (i + 0.5) * in / out - 0.5 with edge clamping, which is
    ``F.interpolate(..., align_corners=False)``; no min-max normalisation (``--norm_mask`` is off by default).
    """
    up = F.interpolate(soft[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
    return up.argmax(dim=0)


def predict_mask(
    soft: Tensor, stride: int, size: tuple[int, int] | None = None, minmax: bool = True
) -> Tensor:
    """Soft grid labels (K, h, w) -> label-index map (H, W) int64: argmax, PIL-style nearest to `size`."""
    pred = _upsample(soft, stride, minmax).argmax(dim=0)  # (h*s, w*s)
    if size is not None and tuple(size) != tuple(pred.shape):
        pred = pil_nearest_resize(pred, tuple(size))
    return pred
