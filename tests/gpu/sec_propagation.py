"""Section 3: propagation on the device at real DAVIS sizes.

The project's tiled kernel (callbacks/evaluation/local_affinity.py) against DINO's dense ops on the same
device (time/frame, peak memory, agreement), the tile size that wins there, fp32 vs TF32 vs bf16 affinities
(argmax agreement on a video with known motion), and the estimated wall time of DAVIS-2017 val and of a full
eval-all, features included (decoding, I/O and metrics excluded).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from callbacks.evaluation.local_affinity import FrameContext, frame_plan, propagate_tiles
from callbacks.evaluation.propagation import propagate_video
from callbacks.evaluation.settings import PropagationConfig
from lightning_modules.siammae import SiamMAE
from tests.gpu.dense_reference import dense_frame, dense_window
from tests.gpu.harness import Context, free_memory, peak_memory, time_calls
from tests.gpu.sizes import PropSetting

CONTEXT = 21  # frame 0 + a full queue of 20


def random_context(grid, dim: int, labels: int, device: torch.device):
    """L2-normalised query (D,h,w), context features (C,D,h,w) and soft labels (C,K,h,w)."""
    g = torch.Generator(device=device).manual_seed(0)
    feats = F.normalize(torch.randn(CONTEXT + 1, dim, *grid, device=device, generator=g), dim=1)
    lab = torch.rand(CONTEXT, labels, *grid, device=device, generator=g)
    return feats[0], feats[1:], lab / lab.sum(1, keepdim=True)


def tiled_frame(query, ctx_feats, ctx_labels, cfg: PropagationConfig):
    """Per-frame state as ``propagate_video`` builds it, and a closure doing one steady-state frame."""
    plan = frame_plan(tuple(query.shape[-2:]), cfg.chunk_size, cfg.radius, cfg.window, query.device)
    ctx = FrameContext.from_frames(ctx_feats, ctx_labels, cfg.window_first_frame)
    q = query.permute(1, 2, 0).contiguous()  # (h, w, D)

    def step():
        out = propagate_tiles(q, ctx, plan, cfg.topk, cfg.temperature)
        ctx.push(q, out, ctx.ring_feats.shape[2])  # overwrite one slot, as in a video's steady state
        return out

    return step


def time_tiled(ctx: Context, s: PropSetting, cfg: PropagationConfig, budget: float) -> dict:
    """Seconds per frame and peak memory of the tiled kernel."""
    query, feats, labels = random_context(s.grid, s.dim, s.labels, ctx.device)
    with torch.no_grad(), peak_memory(ctx.device) as mem:
        r = time_calls(tiled_frame(query, feats, labels, cfg), ctx.device, 2, 8, budget)
    return {**r, "peak_mib": mem["peak_mib"]}


def kernel_rows(ctx: Context, s: PropSetting) -> None:
    """Tiled vs dense on one grid (DAVIS rows), or tiled alone (the estimate's other benchmarks)."""
    cfg = PropagationConfig.preset(s.preset)
    item = f"{s.label} {s.grid[0]}x{s.grid[1]}, D {s.dim}, C {CONTEXT}, r {cfg.radius:g}, k {cfg.topk}"
    tiled = time_tiled(ctx, s, cfg, budget=min(8.0, ctx.left() / 6))
    ctx.shared.setdefault("prop_s", {})[s.label] = tiled["median_s"]
    ctx.add(item, "tiled time/frame", tiled["median_s"] * 1e3, "ms", f"chunk_size {cfg.chunk_size}")
    ctx.add(item, "tiled peak memory", tiled["peak_mib"], "MiB")
    if not s.dense:
        return
    query, feats, labels = random_context(s.grid, s.dim, s.labels, ctx.device)
    with torch.no_grad():
        window = dense_window(s.grid, cfg, ctx.device)
        with peak_memory(ctx.device) as mem:
            r = time_calls(
                lambda: dense_frame(query, feats, labels, window, cfg),
                ctx.device,
                1,
                3,
                min(10.0, ctx.left() / 4),
            )
        ours = tiled_frame(query, feats, labels, cfg)().permute(2, 0, 1)  # first call: the full context
        cell_diff = (ours - dense_frame(query, feats, labels, window, cfg)).abs().amax(0)  # (h, w)
    ctx.add(item, "dense (DINO ops) time/frame", r["median_s"] * 1e3, "ms")
    ctx.add(item, "dense peak memory", mem["peak_mib"], "MiB")
    ctx.add(item, "speed-up tiled vs dense", r["median_s"] / tiled["median_s"], "x")
    ctx.add(item, "max |tiled - dense| soft labels", float(cell_diff.max()))
    ctx.add(item, "cells where tiled = dense (1e-4)", float((cell_diff <= 1e-4).float().mean()),
            note="same algorithm: a cell may differ only at a tie of the k-th cosine")  # fmt: skip
    winner = "tiled" if tiled["median_s"] <= r["median_s"] else "DENSE (tiled loses here)"
    ctx.add(item, "faster on this device", winner)
    if float((cell_diff <= 1e-4).float().mean()) < 0.99:
        raise AssertionError(
            f"tiled and dense propagation disagree on this device (max {float(cell_diff.max())})"
        )


def chunk_rows(ctx: Context, s: PropSetting) -> None:
    """Tile size (``chunk_size``, speed/memory only) on the device: fewer, larger tiles = fewer launches."""
    base = PropagationConfig.preset(s.preset)
    best = None
    for chunk in ctx.sizes.chunk_sizes:
        r = time_tiled(ctx, s, replace(base, chunk_size=chunk), budget=min(6.0, ctx.left() / 8))
        item = f"{s.label} tiled, chunk_size {chunk} ({int(chunk**0.5)}x{int(chunk**0.5)} tiles)"
        ctx.add(item, "time/frame", r["median_s"] * 1e3, "ms")
        ctx.add(item, "peak memory", r["peak_mib"], "MiB")
        best = min(best or (r["median_s"], chunk), (r["median_s"], chunk))
    ctx.add(f"{s.label} tiled", "fastest chunk_size here", best[1], note=f"{best[0] * 1e3:.3g} ms/frame")


def moving_video(frames: int, grid, dim: int, labels: int, device: torch.device):
    """Features and labels of a scene translating by (t // 2, t) cells: (T, D, h, w) and (T, h, w) ids."""
    h, w = grid
    g = torch.Generator(device=device).manual_seed(3)
    H, W = h + frames, w + frames
    coarse = torch.randn(1, dim, H // 3 + 2, W // 3 + 2, device=device, generator=g)
    canvas = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)[0]
    canvas = canvas + 0.3 * torch.randn(dim, H, W, device=device, generator=g)
    ids = torch.randint(labels, (1, 1, H // 6 + 1, W // 6 + 1), device=device, generator=g).float()
    ids = F.interpolate(ids, size=(H, W), mode="nearest")[0, 0].long()
    feats = torch.stack([canvas[:, t // 2 : t // 2 + h, t : t + w] for t in range(frames)])
    truth = torch.stack([ids[t // 2 : t // 2 + h, t : t + w] for t in range(frames)])
    return F.normalize(feats, dim=1), truth


def agreement_rows(ctx: Context, s: PropSetting) -> None:
    """fp32 vs TF32 vs bf16 affinities over a whole (short) video: argmax agreement, accuracy vs truth."""
    cfg = PropagationConfig.preset(s.preset)
    feats, truth = moving_video(ctx.sizes.agreement_frames, s.grid, s.dim, s.labels, ctx.device)
    first = F.one_hot(truth[0], s.labels).permute(2, 0, 1).float()  # (K, h, w)
    preds = {}
    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        with torch.no_grad():
            for name, dtype, tf32 in (
                ("fp32", torch.float32, False),
                ("TF32", torch.float32, True),
                ("bf16", torch.bfloat16, False),
            ):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                soft = propagate_video(feats.to(dtype), first.to(dtype), cfg)
                preds[name] = soft.float().argmax(1)[1:]  # (T-1, h, w), frame 0 is given
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    item = f"{s.label} video, {ctx.sizes.agreement_frames} frames, known motion"
    for name in ("TF32", "bf16"):
        agree = float((preds[name] == preds["fp32"]).float().mean())
        ctx.add(
            item,
            f"argmax agreement {name} vs fp32",
            agree,
            note="" if ctx.cuda or name != "TF32" else "no TF32 on CPU",
        )
    for name, p in preds.items():
        ctx.add(item, f"accuracy vs truth ({name})", float((p == truth[1:]).float().mean()))


def feature_seconds(ctx: Context, vit: str, image: tuple[int, int]) -> float:
    """Seconds per frame of ``extract_features`` (fp32, as the evaluation runs it) at an evaluation size."""
    cache = ctx.shared.setdefault("feature_models", {})
    if vit not in cache:
        cache[vit] = SiamMAE(encoder_name=vit, log_images_every_n_steps=0).to(ctx.device).eval()
    model = cache[vit]
    x = torch.randn(ctx.sizes.feature_batch, 3, *image, device=ctx.device)
    with torch.no_grad():
        r = time_calls(lambda: model.extract_features(x), ctx.device, 1, 3, budget=min(6.0, ctx.left() / 8))
    return r["median_s"] / ctx.sizes.feature_batch


def estimate_rows(ctx: Context) -> None:
    """Wall time of DAVIS-2017 val and of eval-all (DAVIS + VIP + JHMDB): frames x (features + kernel)."""
    totals: dict[str, float] = {}
    for s in ctx.sizes.propagation:
        prop = ctx.shared.get("prop_s", {}).get(s.label)
        if prop is None:
            continue
        feat = feature_seconds(ctx, s.vit, s.image)
        per_frame = feat + prop
        model = s.vit.replace("vit_small_patch", "ViT-S/").replace("_224", "")
        ctx.add(
            f"estimate {s.label}", "features time/frame", feat * 1e3, "ms", f"{s.image[0]}x{s.image[1]}, fp32"
        )
        ctx.add(f"estimate {s.label}", f"wall time, {s.frames} frames", s.frames * per_frame / 60, "min")
        totals[model] = totals.get(model, 0.0) + s.frames * per_frame
    for model, seconds in totals.items():
        ctx.add(f"estimate eval-all {model}", "wall time (benchmarks measured above)", seconds / 60, "min")
    ctx.shared.pop("feature_models", None)


def run(ctx: Context) -> None:
    """Kernel comparisons first (the section's point), then tile sizes, precisions and the estimates."""
    for s in ctx.sizes.propagation:
        with ctx.item(f"{s.label} kernels", min_left=3.0) as go:
            if go:
                kernel_rows(ctx, s)
        free_memory()
    first = ctx.sizes.propagation[0]
    with ctx.item(f"{first.label} chunk sizes", min_left=5.0) as go:
        if go:
            chunk_rows(ctx, first)
    with ctx.item(f"{first.label} precisions", min_left=5.0) as go:
        if go:
            agreement_rows(ctx, first)
    with ctx.item("estimates", min_left=5.0) as go:
        if go:
            estimate_rows(ctx)
    ctx.note(
        "Random L2-normalised features for the kernel timings (a full context of 21 frames); the tiled "
        "kernel's peak memory is above its inputs. Decoding, resizing, metrics and I/O are not in the "
        "estimates."
    )
