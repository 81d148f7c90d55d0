"""Section 1: training steps.

SiamMAE ViT-S/16 and ViT-S/8 (paper decoder) under bf16 autocast with fused AdamW, eager and
``compile_model=True``; VideoMAC with masked-dense sparse emulation; a few real ``Trainer.fit`` steps
(bf16-mixed) of each method. Per row: pairs/s, step time, peak memory, MFU against the bf16 peak.

Batches start at the size in ``sizes.py`` and halve on CUDA out-of-memory, so each runs as large as fits.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from tests.gpu import models
from tests.gpu.harness import Context, free_memory, peak_memory, time_calls
from tests.gpu.sizes import MacSetting, SiamSetting


def _measure(ctx: Context, label: str, build, batch: int, img: int, bf16: bool, budget: float) -> dict:
    """Build, then time full training steps; halves the batch on CUDA OOM. Returns the figures."""
    while True:
        try:
            with peak_memory(ctx.device) as mem:
                model = build().to(ctx.device)
                opt = models.configured_optimizer(model, batch)
                frames = models.random_frames(batch, img, ctx.device)
                r = time_calls(
                    models.train_step(model, opt, frames, bf16), ctx.device, ctx.sizes.warmup,
                    ctx.sizes.iters, budget,
                )  # fmt: skip
            flops, how = models.step_flops(model, frames)
            return {**r, "batch": batch, "flops": flops, "flops_how": how, "peak_mib": mem["peak_mib"]}
        except torch.cuda.OutOfMemoryError:
            model = opt = frames = None
            free_memory()
            if batch <= 2:
                raise
            ctx.note(f"{label}: batch {batch} ran out of GPU memory; retried with {batch // 2}.")
            batch //= 2
        finally:
            model = opt = frames = None
            free_memory()


def _rows(ctx: Context, item: str, r: dict, bf16: bool) -> float:
    """Add the figures of one measurement; returns pairs/s."""
    pairs = r["batch"] / r["median_s"]
    achieved = r["flops"] / r["median_s"]
    peak = ctx.shared.get("bf16_peak")
    precision = "bf16 autocast" if bf16 else "fp32 (cuDNN TF32 allowed)"
    ctx.add(item, "batch", r["batch"], note=precision)
    ctx.add(item, "pairs/s", pairs, "pairs/s", f"median of {r['n']} steps")
    ctx.add(item, "step time", r["median_s"] * 1e3, "ms")
    ctx.add(item, "first step", r["first_s"], "s", "includes compilation / autotuning")
    ctx.add(item, "peak memory", None if r["peak_mib"] is None else r["peak_mib"] / 1024, "GiB")
    ctx.add(
        item, "achieved", achieved / 1e12, "TFLOP/s", f"{r['flops'] / 1e12:.3g} TFLOP/step, {r['flops_how']}"
    )
    ctx.add(item, "MFU", None if not peak else achieved / peak, "", "vs the bf16 matmul peak of this run")
    return pairs


def siammae_rows(ctx: Context, s: SiamSetting, compiled: bool) -> None:
    """One SiamMAE setting, eager or compiled blocks."""
    item = f"{s.label} {'compile_model=True' if compiled else 'eager'}"
    need = 45.0 if compiled and ctx.cuda else 5.0
    with ctx.item(item, min_left=need) as go:
        if not go:
            return
        img = s.kwargs.get("img_size", 224)
        budget = min(20.0, max(3.0, ctx.left() / 4))
        r = _measure(ctx, item, lambda: models.build_siammae(s.kwargs, compiled), s.batch, img, True, budget)
        pairs = _rows(ctx, item, r, bf16=True)
        if s is ctx.sizes.siammae[0]:  # the ViT-S/16 consumption that section 4 compares the loader with
            best = max(pairs, ctx.shared.get("siammae_pairs_per_s", 0.0))
            ctx.shared.update(siammae_pairs_per_s=best, siammae_batch=r["batch"])


def videomac_rows(ctx: Context, s: MacSetting) -> None:
    """One VideoMAC encoder, masked-dense emulation, eager."""
    item = f"{s.label} masked-dense eager"
    with ctx.item(item, min_left=5.0) as go:
        if not go:
            return
        budget = min(15.0, max(3.0, ctx.left() / 4))
        build = lambda: models.build_videomac(s.encoder, s.decoder_dim)  # noqa: E731
        r = _measure(ctx, item, build, s.batch, s.img, s.bf16, budget)
        _rows(ctx, item, r, s.bf16)


class _RandomPairs(Dataset):
    """Random frame pairs in the data module's item format (no decoding: this tests the step path)."""

    def __init__(self, n: int, img: int) -> None:
        self.n, self.img = n, img

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {
            "frames": torch.randn(2, 3, self.img, self.img, generator=g),
            "video": f"random/{i}",
            "index": i,
        }


def lightning_fit(ctx: Context, item: str, model, img: int) -> None:
    """A few real ``Trainer.fit`` steps, precision bf16-mixed: hooks, fault checks, EMA, device placement."""
    steps, batch = ctx.sizes.fit_steps, ctx.sizes.fit_batch
    ema = getattr(model, "target", None)
    before = None if ema is None else next(ema.parameters()).detach().clone()
    trainer = L.Trainer(
        accelerator="gpu" if ctx.cuda else "cpu", devices=1, precision="bf16-mixed", max_steps=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(model, DataLoader(_RandomPairs(steps * batch, img), batch_size=batch))
    wall = time.perf_counter() - t0
    loss = trainer.callback_metrics.get("train/loss_step")
    skips = trainer.callback_metrics.get("train/nonfinite_skips")
    ctx.add(
        item, "optimiser steps", trainer.global_step, note=f"batch {batch}, bf16-mixed, {wall:.1f} s wall"
    )
    ctx.add(
        item,
        "last loss",
        None if loss is None else float(loss),
        note="finite" if loss is not None and torch.isfinite(loss) else "NOT FINITE",
    )
    ctx.add(item, "non-finite skips", None if skips is None else int(skips))
    ctx.add(item, "parameters on", str(next(model.parameters()).device))
    if ema is not None:
        moved = not torch.equal(before.to(next(ema.parameters()).device), next(ema.parameters()))
        ctx.add(item, "EMA target updated", moved, note=f"target on {next(ema.parameters()).device}")
        if not moved:
            raise AssertionError("the EMA target did not change during Trainer.fit")
    if loss is None or not torch.isfinite(loss) or trainer.global_step != steps:
        raise AssertionError(f"Trainer.fit: {trainer.global_step} of {steps} steps, last loss {loss}")


def fit_rows(ctx: Context) -> None:
    """Trainer.fit smoke steps for SiamMAE (first setting) and VideoMAC (first setting)."""
    s, m = ctx.sizes.siammae[0], ctx.sizes.videomac[0]
    with ctx.item(f"Trainer.fit {s.label}", min_left=5.0) as go:
        if go:
            lightning_fit(
                ctx, f"Trainer.fit {s.label}", models.build_siammae(s.kwargs), s.kwargs.get("img_size", 224)
            )
    free_memory()
    with ctx.item(f"Trainer.fit {m.label}", min_left=5.0) as go:
        if go:
            lightning_fit(
                ctx, f"Trainer.fit {m.label}", models.build_videomac(m.encoder, m.decoder_dim), m.img
            )
    free_memory()


def run(ctx: Context) -> None:
    """Cheap, essential rows first; compilation (the slowest, most likely to hit the guard) last."""
    sizes = ctx.sizes
    siammae_rows(ctx, sizes.siammae[0], compiled=False)
    fit_rows(ctx)
    for s in sizes.videomac:
        videomac_rows(ctx, s)
    for s in sizes.siammae[1:]:
        siammae_rows(ctx, s, compiled=False)
    if ctx.shared.get("compile", sizes.compile):
        for s in sizes.siammae:
            siammae_rows(ctx, s, compiled=True)
    else:
        ctx.note(
            "compile_model=True rows skipped (--no-compile, the default on CPU: inductor's C++ build "
            "takes minutes there; tests/lightning_modules/test_siammae_compile.py covers compilation on CPU)."
        )
    ctx.note(
        "Step = forward under autocast, backward, fused AdamW step (configure_optimizers), and for VideoMAC "
        "the EMA update, on one random batch reused every step (no data loading: section 4 measures it)."
    )
