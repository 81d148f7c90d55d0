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

WindowShape = Literal["square", "circle"]


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

    def num_sources(self) -> int:
        """Number of source cells in the region (per context frame)."""
        return (self.sy[1] - self.sy[0]) * (self.sx[1] - self.sx[0])


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

    Square (DINO): |dy| <= r and |dx| <= r. Circle: dy^2 + dx^2 <= r^2 (inclusive; CRW's strict
    `dist < 12` is the same cell set as `dist <= 11.99`).

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
    raise ValueError(f"window must be 'square' or 'circle', got {window!r}")


def tile_mask(tile: Tile, radius: float, window: WindowShape, device: torch.device) -> Tensor:
    """Neighbourhood mask between a tile's queries and its source region: (n_q, n_s) bool."""
    q = _cell_coords(tile.qy, tile.qx, device)
    s = _cell_coords(tile.sy, tile.sx, device)
    return neighbourhood_mask(q, s, radius, window)
