"""Windowed k-NN affinity: the top-k source cells of every query cell, computed one query tile at a time.

The dense formulation (DINO ``eval_video_segmentation.py``) builds a (context*N) x N affinity per target
frame: 3 GiB for ViT-S/8 at 480p with 21 context frames. Here the query grid is cut into square tiles; a tile
only correlates with the source region its neighbourhood window can reach (the tile grown by the window
radius), so memory is O(tile * context * region) and the matmul skips everything outside the window. Inside
the region the exact window is enforced with a -inf logit, the logit-space twin of DINO's multiply-by-zero
after exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

WindowShape = Literal["square", "circle", "circle_open"]


@dataclass(frozen=True)
class Tile:
    """A rectangle of query cells and the source region its windows can reach (half-open row/col ranges)."""

    qy: tuple[int, int]
    qx: tuple[int, int]
    sy: tuple[int, int]
    sx: tuple[int, int]

    def num_queries(self) -> int:
        """Number of query cells in the tile."""
        return (self.qy[1] - self.qy[0]) * (self.qx[1] - self.qx[0])


def window_reach(radius: float, grid: tuple[int, int]) -> int:
    """Largest integer row/col offset a window of `radius` can reach on `grid` (same for both shapes)."""
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    h, w = grid
    return int(min(math.floor(radius), max(h, w)))


def grid_tiles(grid: tuple[int, int], tile: int, reach: int) -> list[Tile]:
    """Cut an h x w query grid into tile x tile blocks, each with its source region grown by `reach` cells."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    h, w = grid
    tiles = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            sy = (max(0, y0 - reach), min(h, y1 + reach))
            sx = (max(0, x0 - reach), min(w, x1 + reach))
            tiles.append(Tile((y0, y1), (x0, x1), sy, sx))
    return tiles


def _cell_coords(ys: tuple[int, int], xs: tuple[int, int], device: torch.device) -> Tensor:
    """Row/col coordinates of a rectangle of cells in row-major order: (n, 2) int64."""
    yy, xx = torch.meshgrid(
        torch.arange(*ys, device=device), torch.arange(*xs, device=device), indexing="ij"
    )  # each (ry, rx)
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)  # (n, 2)


def neighbourhood_mask(
    query_yx: Tensor, source_yx: Tensor, radius: float, window: WindowShape = "square"
) -> Tensor:
    """Which sources lie in each query's neighbourhood.

    Square (DINO): |dy| <= r and |dx| <= r. Circle: dy^2 + dx^2 <= r^2. Open circle (CRW's
    ``MaskedAttention``): dy^2 + dx^2 < r^2, so radius 12 keeps 437 cells where the closed circle keeps 441.

    Args:
        query_yx: (n_q, 2) integer grid coordinates of the queries.
        source_yx: (n_s, 2) integer grid coordinates of the sources.
        radius: neighbourhood radius in feature cells.
        window: "square" or "circle".

    Returns:
        (n_q, n_s) bool, True where the source is inside the query's window.
    """
    d = (query_yx[:, None, :] - source_yx[None, :, :]).abs()  # (n_q, n_s, 2)
    if window == "square":
        return (d <= radius).all(dim=-1)
    if window == "circle":
        return (d * d).sum(dim=-1) <= radius * radius
    if window == "circle_open":
        return (d * d).sum(dim=-1) < radius * radius
    raise ValueError(f"window must be 'square', 'circle' or 'circle_open', got {window!r}")


def tile_mask(tile: Tile, radius: float, window: WindowShape, device: torch.device) -> Tensor:
    """Neighbourhood mask between a tile's queries and its source region: (n_q, n_s) bool."""
    q = _cell_coords(tile.qy, tile.qx, device)
    s = _cell_coords(tile.sy, tile.sx, device)
    return neighbourhood_mask(q, s, radius, window)


def blocked_topk(logits: Tensor, k: int, block: int = 32) -> tuple[Tensor, Tensor]:
    """Exact top-k along dim 0, computed from per-block maxima.

    The k largest rows of a column lie in the k blocks with the largest block maxima: an element outside
    them is beaten by those k maxima, which are k distinct elements. So one cheap max-reduction pass plus a
    top-k over k*block candidates replaces a top-k over all rows (ties at the k-th value aside).

    Args:
        logits: (S, n) scores, S a multiple of `block` (pad with -inf), rows are candidates.
        k: number of rows kept per column.
        block: rows per block.

    Returns:
        values (k, n) in descending order and their row indices (k, n) into `logits`.
    """
    s, n = logits.shape
    k = min(k, s)
    if s % block or s <= k * block:  # nothing to gain, or not padded: plain top-k
        return logits.topk(k, dim=0)
    maxima = logits.view(s // block, block, n).amax(dim=1)  # (S/block, n)
    top_blocks = maxima.topk(k, dim=0).indices  # (k, n)
    offsets = torch.arange(block, device=logits.device)[None, :, None]  # (1, block, 1)
    rows = (top_blocks[:, None, :] * block + offsets).reshape(k * block, n)  # candidate rows per column
    values, pick = logits.gather(0, rows).topk(k, dim=0)  # (k, n)
    return values, rows.gather(0, pick)


def topk_keep_ties(logits: Tensor, k: int, block: int = 32) -> tuple[Tensor, Tensor]:
    """Top-k along dim 0 that also keeps every row tied with the k-th value (DINO's ``aff < kth = 0``).

    Rows past the k-th that are not tied come back as -inf (weight 0 after the softmax). The search widens
    (k, 2k, 8k, ...) until the last row fetched is below the k-th value in every column, so the tie set is
    complete however many duplicates a column has (e.g. a static scene repeats a frame exactly).

    Returns:
        values (k', n), k' >= k, descending, -inf beyond each column's tie set, and their row indices.
    """
    s = logits.shape[0]
    k = min(k, s)
    fetch = min(2 * k, s)
    while True:
        values, index = blocked_topk(logits, fetch, block)
        kth = values[k - 1]  # (n,)
        if fetch == s or not bool((values[-1] == kth).any()):
            break
        fetch = min(4 * fetch, s)
    return values.masked_fill(values < kth, -math.inf), index


_BLOCK = 32  # candidate rows per block in `blocked_topk`
Plan = list[tuple[Tile, "Tensor | None"]]


def frame_plan(
    grid: tuple[int, int], chunk_size: int, radius: float, window: WindowShape, device: torch.device
) -> Plan:
    """Query tiles (side floor(sqrt(chunk_size))) and their outside-window masks (n_s, n_q) or None."""
    tiles = grid_tiles(grid, max(1, math.isqrt(chunk_size)), window_reach(radius, grid))
    plan = []
    for tile in tiles:
        outside = ~tile_mask(tile, radius, window, device).T  # (n_s, n_q)
        plan.append((tile, outside if bool(outside.any()) else None))
    return plan


@dataclass
class FrameContext:
    """Context frames in the layout the tiles read.

    `ring_feats` (h, w, S, D) / `ring_labels` (h, w, S, K) hold the windowed context frames with the frame
    axis innermost, so a tile's source region (ry, rx, S, D) is a plain (ry, rx*S, D) view and one bmm scores
    it against the tile's queries. Only slots < `n_valid` are filled; the queue is a ring (top-k ignores the
    order of candidates). `free_*` (N, D) / (N, K) is the reference frame when it is searched over the whole
    grid (CRW), else None.
    """

    ring_feats: Tensor
    ring_labels: Tensor
    n_valid: int
    free_feats: Tensor | None = None
    free_labels: Tensor | None = None
    padded: bool = False

    @classmethod
    def for_video(
        cls, feats0: Tensor, labels0: Tensor, queue_length: int, window_first: bool, pad: bool = False
    ) -> FrameContext:
        """Queue + reference frame: feats0 (h, w, D), labels0 (h, w, K).

        ``pad`` (CRW ``test.py``): the queue starts full of copies of frame 0, so target t sees frames
        t - m .. t - 1 with negative indices clamped to 0; requires ``window_first=False`` (frame 0 is then
        also the unrestricted long-term memory).
        """
        if pad and window_first:
            raise ValueError("a padded (CRW) queue needs window_first=False: frame 0 is the free long memory")
        (h, w, d), k, first = feats0.shape, labels0.shape[-1], int(window_first)
        # Zeros, not empty: unfilled slots can be picked with weight 0, and 0 * NaN garbage would be NaN.
        ctx = cls(
            feats0.new_zeros(h, w, first + queue_length, d),
            labels0.new_zeros(h, w, first + queue_length, k),
            first,
        )
        if window_first:
            ctx.ring_feats[:, :, 0], ctx.ring_labels[:, :, 0] = feats0, labels0
        else:
            ctx.free_feats, ctx.free_labels = feats0.reshape(h * w, d), labels0.reshape(h * w, k)
        if pad and queue_length:
            ctx.ring_feats[:] = feats0[:, :, None]
            ctx.ring_labels[:] = labels0[:, :, None]
            ctx.n_valid, ctx.padded = queue_length, True
        return ctx

    @classmethod
    def from_frames(cls, ctx_feats: Tensor, ctx_labels: Tensor, window_first: bool) -> FrameContext:
        """A full context from (C, D, h, w) features and (C, K, h, w) labels, reference frame first."""
        c, d, h, w = ctx_feats.shape
        first = 0 if window_first else 1  # frames [first:] live in the ring
        ctx = cls(
            ctx_feats[first:].permute(2, 3, 0, 1).contiguous(),  # (h, w, S, D)
            ctx_labels[first:].permute(2, 3, 0, 1).contiguous(),  # (h, w, S, K)
            c - first,
        )
        if not window_first:
            ctx.free_feats = ctx_feats[0].reshape(d, h * w).T  # (N, D)
            ctx.free_labels = ctx_labels[0].reshape(-1, h * w).T  # (N, K)
        return ctx

    def push(self, feats: Tensor, labels: Tensor, t: int) -> None:
        """Queue predicted frame t >= 1: feats (h, w, D), labels (h, w, K); evicts frame t - queue_length."""
        first = 0 if self.free_feats is not None else 1
        m = self.ring_feats.shape[2] - first
        if m:
            slot = first + (t - 1) % m
            self.ring_feats[:, :, slot], self.ring_labels[:, :, slot] = feats, labels
            self.n_valid = first + (m if self.padded else min(t, m))


def propagate_tiles(
    query: Tensor, ctx: FrameContext, plan: Plan, topk: int, temperature: float, keep_ties: bool = False
) -> Tensor:
    """One target frame, tile by tile: query (h, w, D) -> soft labels (h, w, K).

    ``keep_ties``: DINO's rule (every candidate tied with the k-th is kept); else exactly k (CRW, VFS).
    """
    h, w, d = query.shape
    slots = ctx.ring_feats.shape[2]
    n_free = 0 if ctx.free_feats is None else h * w
    out = query.new_empty(h, w, ctx.ring_labels.shape[-1])
    for tile, outside in plan:
        (y0, y1), (x0, x1), (sy0, sy1), (sx0, sx1) = tile.qy, tile.qx, tile.sy, tile.sx
        ry, rx, n_q = sy1 - sy0, sx1 - sx0, tile.num_queries()
        q_t = query[y0:y1, x0:x1].reshape(n_q, d).T  # (D, n_q)
        n_rows = n_free + ry * rx * slots
        logits = query.new_empty(-(-n_rows // _BLOCK) * _BLOCK, n_q)  # candidates in rows, padded
        logits[n_rows:] = -math.inf
        if n_free:
            torch.mm(ctx.free_feats, q_t, out=logits[:n_free])
        if slots:
            keys = ctx.ring_feats[sy0:sy1, sx0:sx1].view(ry, rx * slots, d)  # no copy: slots are innermost
            win = logits[n_free:n_rows].view(ry, rx * slots, n_q)
            torch.bmm(keys, q_t.expand(ry, d, n_q), out=win)  # (ry, rx*S, n_q) cosines
            win = win.view(ry * rx, slots, n_q)
            win[:, ctx.n_valid :] = -math.inf  # queue slots not filled yet
            if outside is not None:
                win.masked_fill_(outside[:, None, :], -math.inf)
        select = topk_keep_ties if keep_ties else blocked_topk
        values, index = select(logits, min(topk, n_rows), _BLOCK)  # (k, n_q), jointly over frames
        weights = torch.softmax(values / temperature, dim=0)  # (k, n_q)
        src = _candidate_labels(index, ctx, tile, n_free)  # (k, n_q, K)
        out[y0:y1, x0:x1] = torch.einsum("kq,kqc->qc", weights, src).reshape(y1 - y0, x1 - x0, -1)
    return out


def _candidate_labels(index: Tensor, ctx: FrameContext, tile: Tile, n_free: int) -> Tensor:
    """Labels of candidate rows `index` (k, n_q) -> (k, n_q, K): free-frame cell or (y, x, slot)."""
    slots, rx = ctx.ring_labels.shape[2], tile.sx[1] - tile.sx[0]
    r = (index - n_free).clamp_min(0)  # row in the windowed block, laid out (y, x, slot) over the region
    cell, slot = r // max(slots, 1), r % max(slots, 1)
    y, x = tile.sy[0] + cell // rx, tile.sx[0] + cell % rx
    ring = ctx.ring_labels[y.clamp_max(tile.sy[1] - 1), x, slot] if slots else None
    if not n_free:
        return ring
    free = ctx.free_labels[index.clamp_max(n_free - 1)]
    return torch.where((index < n_free)[..., None], free, ring) if slots else free
