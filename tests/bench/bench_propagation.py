"""Label propagation: tiled windowed top-k (ours) vs the dense DINO-style reference, one target frame.

Both run the same work: one target frame against a full context (frame 0 + 20 queued frames = 21), fp32,
2 threads, random L2-normalised features (D 384) and 4 label channels. Each measurement runs in a fresh
subprocess. Time is the best of a few repeats. Peak memory is the growth of the process's resident set during
the call: inputs are built first, then the kernel's peak-RSS counter is reset (Linux `/proc/self/clear_refs`
"5") and VmHWM - VmRSS(before) is read afterwards (page-accurate, includes every torch CPU allocation).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

from callbacks.evaluation.local_affinity import FrameContext, frame_plan, propagate_tiles
from callbacks.evaluation.settings import PropagationConfig

SETTINGS = (  # name, grid, stride, time target (ratio), memory target (ratio)
    ("ViT-S/8 DAVIS 60x104", (60, 104), ">= 10", ">= 5"),
    ("ViT-S/16 DAVIS 30x52", (30, 52), ">= 4", None),
)
CONTEXT, DIM, LABELS = 21, 384, 4


def dense_window(grid: tuple[int, int], cfg: PropagationConfig) -> torch.Tensor:
    """(N_src, N_query) bool neighbourhood mask; built once per video, as DINO caches it."""
    h, w = grid
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yx = torch.stack([yy.flatten(), xx.flatten()], 1)  # (N, 2)
    diff = (yx[:, None] - yx[None]).abs()  # (N_src, N_q, 2)
    if cfg.window == "square":
        return (diff <= cfg.radius).all(-1)
    return (diff**2).sum(-1) <= cfg.radius**2


def dino_propagate_frame(query, ctx_feats, ctx_labels, mask, cfg: PropagationConfig):
    """The dense reference as DINO's `eval_video_segmentation.py` computes it (its op sequence, re-written).

    query (D,h,w), ctx_feats (C,D,h,w), ctx_labels (C,K,h,w), mask (N_src,N_q) -> (K,h,w): exp of the full
    affinity, times the window, a transposed (C*N) x N copy, top-k along the sources, zero below the k-th,
    column-normalise, one matmul with the labels.
    """
    c, d, h, w = ctx_feats.shape
    n = h * w
    tgt = query.reshape(d, n).T  # (N_q, D)
    aff = torch.exp(torch.matmul(tgt, ctx_feats.reshape(c, d, n)) / cfg.temperature)  # (C, N_q, N_src)
    aff = aff * mask.T  # window
    aff = aff.transpose(2, 1).reshape(-1, n)  # (C*N_src, N_q)
    kth = aff.topk(cfg.topk, dim=0).values.min(dim=0).values  # (N_q,)
    aff[aff < kth] = 0
    aff = aff / aff.sum(0, keepdim=True)
    labels = ctx_labels.reshape(c, -1, n).permute(1, 0, 2).reshape(-1, c * n)  # (K, C*N)
    return (labels @ aff).reshape(-1, h, w)


def lean_dense_propagate_frame(query, ctx_feats, ctx_labels, mask, cfg: PropagationConfig):
    """The same dense algorithm written lean: in place, no transposed copy (sources-major from the matmul)."""
    c, d, h, w = ctx_feats.shape
    n = h * w
    keys = ctx_feats.reshape(c, d, n).transpose(1, 2)  # (C, N_src, D)
    aff = torch.matmul(keys, query.reshape(d, n))  # (C, N_src, N_q)
    aff.div_(cfg.temperature).exp_().mul_(mask)
    aff = aff.view(c * n, n)  # sources in rows
    kth = aff.topk(cfg.topk, dim=0).values[-1]  # (N_q,)
    aff.masked_fill_(aff < kth, 0.0)
    aff.div_(aff.sum(0, keepdim=True))
    labels = ctx_labels.reshape(c, -1, n).permute(1, 0, 2).reshape(-1, c * n)  # (K, C*N)
    return (labels @ aff).reshape(-1, h, w)


def fast_step(query, ctx: FrameContext, plan, cfg: PropagationConfig):
    """What `propagate_video` does per frame: channels-last query, tiled propagation, queue push."""
    q = query.permute(1, 2, 0).contiguous()  # (h, w, D)
    out = propagate_tiles(q, ctx, plan, cfg.topk, cfg.temperature)
    ctx.push(q, out, ctx.ring_feats.shape[2])  # overwrite one slot, like the steady state of a video
    return out


def _inputs(grid: tuple[int, int]):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(CONTEXT + 1, DIM, *grid, generator=g)
    feats.div_(feats.norm(dim=1, keepdim=True))
    labels = torch.rand(CONTEXT, LABELS, *grid, generator=g)
    labels.div_(labels.sum(1, keepdim=True))
    return feats[0], feats[1:], labels


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(method: str, grid: tuple[int, int], repeats: int) -> dict:
    """Runs inside the subprocess: time and peak resident growth of one method."""
    torch.set_num_threads(2)
    cfg = PropagationConfig.preset("davis")
    query, ctx_feats, ctx_labels = _inputs(grid)
    with torch.no_grad():
        # Per-video state is built before timing: DINO's mask, our tile plan and context layout.
        if method == "fast":
            plan = frame_plan(grid, cfg.chunk_size, cfg.radius, cfg.window, query.device)
            ctx = FrameContext.from_frames(ctx_feats, ctx_labels, cfg.window_first_frame)
            fn = lambda: fast_step(query, ctx, plan, cfg)  # noqa: E731
        else:
            mask = dense_window(grid, cfg)
            dense = dino_propagate_frame if method == "dino" else lean_dense_propagate_frame
            fn = lambda: dense(query, ctx_feats, ctx_labels, mask, cfg)  # noqa: E731
        rss0 = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        peak = _status_kb("VmHWM") - rss0
    return {"seconds": min(times), "peak_mib": peak / 1024}


def measure(method: str, grid: tuple[int, int], repeats: int) -> dict:
    """Run `_child` in a fresh interpreter (so peak RSS belongs to this measurement only)."""
    code = (
        "import json,sys; from tests.bench.bench_propagation import _child; "
        f"print(json.dumps(_child({method!r}, {tuple(grid)!r}, {repeats})))"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _row(benchmark: str, ref: str, a: float, b: float, unit: str, target: str | None) -> dict:
    return {
        "benchmark": benchmark,
        "a_name": ref,
        "a_value": a,
        "b_name": "tiled (ours)",
        "b_value": b,
        "unit": unit,
        "ratio": a / max(b, 1e-9),
        "target": target,
    }


def rows() -> list[dict]:
    """Time per frame and peak memory: DINO's dense op sequence (targets) and a lean dense vs ours."""
    out = []
    for name, grid, time_target, mem_target in SETTINGS:
        big = math.prod(grid) > 4000
        fast = measure("fast", grid, repeats=2 if big else 5)
        label = f"propagation {name}, C={CONTEXT} D={DIM} r=20 k=7"
        for method, ref, targets in (
            ("dino", "dense (DINO ops)", (time_target, mem_target)),
            ("lean", "dense (lean, in place)", (None, None)),
        ):
            dense = measure(method, grid, repeats=1 if big else 3)
            out.append(_row(f"{label}: time/frame", ref, dense["seconds"], fast["seconds"], "s", targets[0]))
            out.append(
                _row(f"{label}: peak memory", ref, dense["peak_mib"], fast["peak_mib"], "MiB", targets[1])
            )
    return out


if __name__ == "__main__":
    print(json.dumps(rows(), indent=1))
