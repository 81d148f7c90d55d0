"""Zero-shot k-NN label propagation through a video (SiamMAE Sec. 4 / Table 4b, DINO, CRW).

Pure tensor functions, no I/O. For target frame t the context is frame 0 (ground-truth labels) plus the last
`queue_length` *predicted* frames (soft labels); every query cell takes the top-k most similar context cells
jointly over all context frames, restricted to a spatial neighbourhood, weights them by a softmax over cos/tau
and averages their labels. See `callbacks/local_affinity.py` for how the affinity is computed without ever
materialising the (context*N) x N matrix, and README "Label propagation" for the protocol choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.local_affinity import (
    Tile,
    grid_tiles,
    tile_mask,
    window_reach,
)

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
        window: "square" (DINO, Chebyshev |dy|,|dx| <= r) or "circle" (CRW/VFS, dy^2 + dx^2 <= r^2).
        window_first_frame: restrict frame 0 to the neighbourhood too (DINO: yes; CRW: no).
        soft_first_frame: bilinear (CRW) instead of nearest (DINO) downsampling of the first-frame labels;
            read by the caller of `downsample_labels`.
        minmax_norm: per-channel min-max rescaling after upsampling, before argmax (DINO "norm_mask").
        chunk_size: query cells per tile (tile side = floor(sqrt(chunk_size))); trades speed for memory only.
    """

    topk: int = 7
    queue_length: int = 20
    radius: float = 20.0
    temperature: float = 0.1
    window: Literal["square", "circle"] = "square"
    window_first_frame: bool = True
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
        if self.window not in ("square", "circle"):
            raise ValueError(f"window must be 'square' or 'circle', got {self.window!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @classmethod
    def preset(cls, name: PresetName) -> PropagationConfig:
        """Named settings: SiamMAE Table 4b per benchmark, DINO's script defaults, CRW's README DAVIS command.

        "davis"/"vip"/"jhmdb" use DINO semantics (square window on all frames, hard first frame, min-max,
        tau 0.1) with Table 4b's (k, queue, radius). "dino" is `eval_video_segmentation.py`'s defaults.
        "crw" is videowalk's DAVIS command (T 0.05, k 10, 20 frames, radius 12 circle, frame 0 unrestricted,
        bilinear first-frame labels, no min-max); CRW's strict `dist < 12` is the inclusive circle 11.99.
        """
        davis = cls()
        presets = {
            "davis": davis,
            "vip": replace(davis, topk=10, radius=8.0),
            "jhmdb": replace(davis, minmax_norm=False),  # keypoints are decoded from the soft grid maps
            "dino": replace(davis, topk=5, queue_length=7, radius=12.0),
            "crw": cls(
                topk=10,
                queue_length=20,
                radius=11.99,
                temperature=0.05,
                window="circle",
                window_first_frame=False,
                soft_first_frame=True,
                minmax_norm=False,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return presets[name]


def context_indices(t: int, queue_length: int) -> list[int]:
    """Context frames of target t: frame 0 plus the last `queue_length` predicted frames (never 0 twice)."""
    return [0, *range(max(1, t - queue_length), t)]


def _check_inputs(feats: Tensor, labels: Tensor) -> None:
    if feats.ndim != 4:
        raise ValueError(f"feats must be (T, D, h, w), got shape {tuple(feats.shape)}")
    if labels.ndim != 3 or labels.shape[-2:] != feats.shape[-2:]:
        raise ValueError(
            f"labels must be (K, h, w) with h, w = {tuple(feats.shape[-2:])}, got {tuple(labels.shape)}"
        )


def _frame_plan(
    grid: tuple[int, int], cfg: PropagationConfig, device: torch.device
) -> list[tuple[Tile, Tensor | None]]:
    """Query tiles and their *outside*-window masks (n_s, n_q), None when the window covers the region."""
    tiles = grid_tiles(grid, max(1, int(cfg.chunk_size**0.5)), window_reach(cfg.radius, grid))
    plan = []
    for tile in tiles:
        outside = ~tile_mask(tile, cfg.radius, cfg.window, device).T  # (n_s, n_q)
        plan.append((tile, outside if bool(outside.any()) else None))
    return plan


@dataclass
class _Context:
    """Context frames in the layout the tiles read.

    `ring_feats` (h, w, S, D) / `ring_labels` (h, w, S, K) hold the windowed context frames with the frame
    axis innermost, so a tile's source region (ry, rx, S, D) is a plain (ry, rx*S, D) view and a single bmm
    scores it against the tile's queries; only slots < `n_valid` are filled. `free_*` (N, D) / (N, K) is the
    reference frame when it is searched over the whole grid (CRW), else None.
    """

    ring_feats: Tensor
    ring_labels: Tensor
    n_valid: int
    free_feats: Tensor | None = None
    free_labels: Tensor | None = None


def _propagate_tiles(query: Tensor, ctx: _Context, plan: list[tuple[Tile, Tensor | None]], cfg) -> Tensor:
    """One target frame: query (h, w, D) -> soft labels (h, w, K), tile by tile."""
    h, w, d = query.shape
    slots = ctx.ring_feats.shape[2]
    n_free = 0 if ctx.free_feats is None else h * w
    out = query.new_empty(h, w, ctx.ring_labels.shape[-1])
    for tile, outside in plan:
        (y0, y1), (x0, x1), (sy0, sy1), (sx0, sx1) = tile.qy, tile.qx, tile.sy, tile.sx
        ry, rx, n_q = sy1 - sy0, sx1 - sx0, tile.num_queries()
        q_t = query[y0:y1, x0:x1].reshape(n_q, d).T  # (D, n_q)
        logits = query.new_empty(n_free + ry * rx * slots, n_q)  # candidates in rows
        if n_free:
            torch.mm(ctx.free_feats, q_t, out=logits[:n_free])
        if slots:
            keys = ctx.ring_feats[sy0:sy1, sx0:sx1].view(ry, rx * slots, d)  # no copy: slots are innermost
            win = logits[n_free:].view(ry, rx * slots, n_q)
            torch.bmm(keys, q_t.expand(ry, d, n_q), out=win)  # (ry, rx*S, n_q) cosines
            win = win.view(ry * rx, slots, n_q)
            win[:, ctx.n_valid :] = -math.inf  # queue slots not filled yet
            if outside is not None:
                win.masked_fill_(outside[:, None, :], -math.inf)
        values, index = logits.topk(min(cfg.topk, logits.shape[0]), dim=0)  # (k, n_q), joint over frames
        weights = torch.softmax(values / cfg.temperature, dim=0)  # (k, n_q)
        src = _candidate_labels(index, ctx, tile, n_free)  # (k, n_q, K)
        out[y0:y1, x0:x1] = torch.einsum("kq,kqc->qc", weights, src).reshape(y1 - y0, x1 - x0, -1)
    return out


def _candidate_labels(index: Tensor, ctx: _Context, tile: Tile, n_free: int) -> Tensor:
    """Labels of candidate rows `index` (k, n_q) -> (k, n_q, K): free-frame cell or (y, x, slot)."""
    slots, rx = ctx.ring_labels.shape[2], tile.sx[1] - tile.sx[0]
    r = (index - n_free).clamp_min(0)  # row in the windowed block, laid out (y, x, slot) over the region
    cell, slot = r // max(slots, 1), r % max(slots, 1)
    y, x = tile.sy[0] + cell // rx, tile.sx[0] + cell % rx
    if slots:
        ring = ctx.ring_labels[y.clamp_max(tile.sy[1] - 1), x, slot]
    if not n_free:
        return ring
    free = ctx.free_labels[index.clamp_max(n_free - 1)]
    return torch.where((index < n_free)[..., None], free, ring) if slots else free


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
    c, d, h, w = ctx_feats.shape
    first = 0 if cfg.window_first_frame else 1  # context frames [first:] live in the ring
    ctx = _Context(
        ring_feats=ctx_feats[first:].permute(2, 3, 0, 1).contiguous(),  # (h, w, S, D)
        ring_labels=ctx_labels[first:].permute(2, 3, 0, 1).contiguous(),  # (h, w, S, K)
        n_valid=c - first,
    )
    if first:
        ctx.free_feats = ctx_feats[0].reshape(d, h * w).T  # (N, D)
        ctx.free_labels = ctx_labels[0].reshape(-1, h * w).T  # (N, K)
    plan = _frame_plan((h, w), cfg, query.device)
    return _propagate_tiles(query.permute(1, 2, 0).contiguous(), ctx, plan, cfg).permute(2, 0, 1)  # (K, h, w)


def propagate_video(feats: Tensor, first_labels: Tensor, cfg: PropagationConfig | None = None) -> Tensor:
    """Propagate frame-0 labels through a video by k-NN in feature space.

    Args:
        feats: (T, D, h, w) features, L2-normalised along D.
        first_labels: (K, h, w) float labels of frame 0 at feature resolution (see `downsample_labels`).
        cfg: propagation settings; default SiamMAE's DAVIS setting.

    Returns:
        (T, K, h, w) soft labels; frame 0 is `first_labels`, frame t > 0 is predicted from frame 0 and the
        predictions of frames max(1, t - queue_length) .. t-1.
    """
    cfg = cfg or PropagationConfig()
    _check_inputs(feats, first_labels)
    t_len, d, h, w = feats.shape
    k, m, first = first_labels.shape[0], cfg.queue_length, int(cfg.window_first_frame)
    feats_hwd = feats.permute(0, 2, 3, 1).contiguous()  # (T, h, w, D)
    out = feats.new_empty(t_len, h, w, k)  # (T, h, w, K)
    out[0] = first_labels.permute(1, 2, 0)
    # Zeros, not empty: unfilled slots can be picked with weight 0 and 0 * NaN garbage would be NaN.
    ctx = _Context(feats.new_zeros(h, w, first + m, d), feats.new_zeros(h, w, first + m, k), first)
    if first:
        ctx.ring_feats[:, :, 0], ctx.ring_labels[:, :, 0] = feats_hwd[0], out[0]
    else:
        ctx.free_feats, ctx.free_labels = feats_hwd[0].view(h * w, d), out[0].view(h * w, k)
    plan = _frame_plan((h, w), cfg, feats.device)
    for t in range(1, t_len):
        if t >= 2 and m:  # frame t-1 replaces the oldest queued frame (top-k ignores the slot order)
            slot = first + (t - 2) % m
            ctx.ring_feats[:, :, slot], ctx.ring_labels[:, :, slot] = feats_hwd[t - 1], out[t - 1]
            ctx.n_valid = first + min(t - 1, m)
        out[t] = _propagate_tiles(feats_hwd[t], ctx, plan, cfg)
    return out.permute(0, 3, 1, 2).contiguous()  # (T, K, h, w)


# ---------------------------------------------------------------------------------- label encoding / decoding


def labels_onehot(mask: Tensor, num_labels: int | None = None) -> Tensor:
    """Integer label map (H, W) -> float one-hot (K, H, W), K = num_labels or max id + 1 (DINO)."""
    num = int(mask.max()) + 1 if num_labels is None else num_labels
    if mask.min() < 0 or mask.max() >= num:
        raise ValueError(f"label ids must lie in [0, {num}), got [{int(mask.min())}, {int(mask.max())}]")
    return F.one_hot(mask.long(), num).permute(2, 0, 1).float()  # (K, H, W)


def downsample_labels(mask_onehot: Tensor, stride: int, soft: bool = False) -> Tensor:
    """First-frame labels (K, H, W) at pixel resolution -> (K, H // stride, W // stride) on the feature grid.

    Hard (DINO): nearest with PIL's pixel-centre rule (picks pixel s*i + s//2), so labels stay one-hot and a
    small object can vanish. Soft (CRW): bilinear, align_corners=False, like cv2.resize INTER_LINEAR.
    """
    size = (mask_onehot.shape[-2] // stride, mask_onehot.shape[-1] // stride)
    mode = "bilinear" if soft else "nearest-exact"
    kwargs = {"align_corners": False} if soft else {}
    return F.interpolate(mask_onehot[None].float(), size=size, mode=mode, **kwargs)[0]


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
        up = F.interpolate(up[None], size=tuple(size), mode="nearest-exact")[0]
    return up


def predict_mask(
    soft: Tensor, stride: int, size: tuple[int, int] | None = None, minmax: bool = True
) -> Tensor:
    """Soft grid labels (K, h, w) -> label-index map (H, W) int64: argmax, PIL-style nearest to `size`."""
    pred = _upsample(soft, stride, minmax).argmax(dim=0)  # (h*s, w*s)
    if size is not None and tuple(size) != tuple(pred.shape):
        pred = F.interpolate(pred[None, None].float(), size=tuple(size), mode="nearest-exact")[0, 0].long()
    return pred
