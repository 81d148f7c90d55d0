"""SiamMAE ViT-S/16 training-step speed on CPU (fp32): MFU, cost relative to plain timm, compile, optimiser.

Everything is measured side by side in one process on ``THREADS`` threads, in interleaved rounds (peak matmul,
SiamMAE step, timm step, ...), so background load hits all columns alike; each figure is the median over the
rounds, warm-up excluded.

- MFU = analytic matmul FLOPs of a step (``tests/bench/flops.py``: forward x 3) / step time / peak, with the
  peak measured here as a large fp32 ``torch.matmul`` on the same threads.
- timm: ``vit_small_patch16_224`` forward + backward on one whole frame (batch 8, no optimiser). The SiamMAE
  step does ~2.6x its FLOPs (frame-1 encoder ~ the timm forward, plus a 512-wide 8-block cross-self decoder
  over 197 + 197 tokens); the target asks the step to cost no more than 1.1x that FLOP ratio.
- ``compile_model=True`` (each encoder/decoder block ``torch.compile``-d) vs eager; the compile warm-up is
  reported in the row name. Set ``CORRMAE_BENCH_COMPILE=0`` to skip it (it costs about a minute).
- The step's optimiser is the one ``SiamMAE.configure_optimizers`` builds; a separate row times AdamW's
  for-loop implementation (PyTorch's CPU default) against ``fused=True``.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable

import timm
import torch

from lightning_modules import SiamMAE
from lightning_modules.components.optim import param_groups_weight_decay
from tests.bench.flops import siammae_shape, siammae_step_flops, vit_forward_flops
from tests.gpu.models import configured_optimizer

THREADS = int(os.environ.get("CORRMAE_BENCH_THREADS", "2"))  # ratios measured side by side are what matter
BATCH, IMG = 8, 224
ROUNDS = 3  # timed rounds after one warm-up round
PEAK_N = 3072  # square fp32 matmul used as the machine's peak (54 GFLOP)


# ---------------------------------------------------------------- timing helpers
def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_peak_step(n: int = PEAK_N) -> Callable[[], object]:
    """A closure doing one n x n x n fp32 matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.matmul(a, b)


def make_optimizer(model: SiamMAE, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW over the decay / no-decay groups, for-loop (CPU default) or ``fused``."""
    groups = param_groups_weight_decay(model, model.hparams.weight_decay, model.no_weight_decay_names())
    return torch.optim.AdamW(groups, lr=1e-4, betas=tuple(model.hparams.betas), fused=fused or None)


def siammae_model(**kw) -> SiamMAE:
    """The benchmarked SiamMAE: ViT-S/16, 224, 95 % mask, cross_self decoder 512 x 8 x 16 (defaults)."""
    torch.manual_seed(0)
    model = SiamMAE(img_size=IMG, log_images_every_n_steps=0, **kw)
    model.configure_model()  # compiles the blocks when compile_model=True (what the Trainer calls)
    return model


def siammae_step(model: SiamMAE, opt: torch.optim.Optimizer, frames: torch.Tensor) -> Callable[[], object]:
    """One training step as ``SiamMAE.training_step`` + Lightning's optimiser step do it (no logging)."""

    def step():
        loss, _, _ = model(frames, torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timm_step(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], object]:
    """Forward + backward of a plain timm classifier on whole frames (no optimiser)."""

    def step():
        model.zero_grad(set_to_none=True)
        model(images).logsumexp(-1).mean().backward()

    return step


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds per call of each function, run in alternating rounds after one warm-up round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            t = timed(fn)
            if r:
                times[name].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------- measurements
@functools.cache
def measure_core() -> dict[str, float]:
    """Peak matmul FLOP/s, SiamMAE step seconds and timm fwd+bwd seconds, side by side (cached per process,
    so ``bench_loading`` reuses the step time)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model = siammae_model()
        frames = torch.randn(BATCH, 2, 3, IMG, IMG)
        vit = timm.create_model("vit_small_patch16_224", pretrained=False)
        fns = {
            "peak": matmul_peak_step(),
            "siammae": siammae_step(model, configured_optimizer(model, BATCH), frames),
            "timm": timm_step(vit, frames[:, 0]),
        }
        t = interleaved_medians(fns)
        return {
            "peak_flops": 2 * PEAK_N**3 / t["peak"],
            "siammae_s": t["siammae"],
            "timm_s": t["timm"],
            "siammae_flops": float(siammae_step_flops(BATCH, **siammae_shape(model))),
            "timm_flops": 3.0 * vit_forward_flops(BATCH),
        }
    finally:
        torch.set_num_threads(prev)


def measure_compiled() -> dict[str, float]:
    """Eager vs ``compile_model=True`` step seconds, and the compile warm-up (first step) seconds."""
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        frames = torch.randn(BATCH, 2, 3, IMG, IMG)
        eager, compiled = siammae_model(), siammae_model(compile_model=True)
        step_c = siammae_step(compiled, configured_optimizer(compiled, BATCH), frames)
        warmup = timed(step_c)  # compilation happens here
        step_e = siammae_step(eager, configured_optimizer(eager, BATCH), frames)
        t = interleaved_medians({"eager": step_e, "compiled": step_c})
        return {"warmup_s": warmup, **t}
    finally:
        torch.set_num_threads(prev)


def measure_optimizer() -> dict[str, float]:
    """AdamW step seconds on SiamMAE's 56 M parameters: for-loop (current default on CPU) vs fused."""
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model = siammae_model()
        for p in model.parameters():
            p.grad = torch.randn_like(p) if p.requires_grad else None
        loop, fused = make_optimizer(model), make_optimizer(model, fused=True)
        return interleaved_medians({"loop": loop.step, "fused": fused.step}, rounds=5)
    finally:
        torch.set_num_threads(prev)


def rows() -> list[dict]:
    """MFU, SiamMAE vs timm, compiled vs eager, AdamW for-loop vs fused."""
    c = measure_core()
    achieved = c["siammae_flops"] / c["siammae_s"]
    timm_achieved = c["timm_flops"] / c["timm_s"]
    flop_ratio = c["siammae_flops"] / c["timm_flops"]
    tag = f"ViT-S/16 {IMG}px batch {BATCH}, CPU fp32, {THREADS} threads"
    out = [
        {
            "benchmark": f"SiamMAE train step MFU ({tag}; {c['siammae_flops'] / 1e9:.0f} GFLOP/step, "
            f"{c['siammae_s']:.2f} s/step)",
            "a_name": "achieved GFLOP/s",
            "a_value": achieved / 1e9,
            "b_name": f"peak GFLOP/s (fp32 matmul {PEAK_N}^3)",
            "b_value": c["peak_flops"] / 1e9,
            "unit": "GFLOP/s",
            "ratio": achieved / c["peak_flops"],
            "target": ">= 0.5",
        },
        {
            "benchmark": f"timm vit_small_patch16_224 fwd+bwd MFU (1 frame, {tag})",
            "a_name": "achieved GFLOP/s",
            "a_value": timm_achieved / 1e9,
            "b_name": "peak GFLOP/s",
            "b_value": c["peak_flops"] / 1e9,
            "unit": "GFLOP/s",
            "ratio": timm_achieved / c["peak_flops"],
            "target": None,
        },
        {
            "benchmark": f"SiamMAE step vs timm ViT-S/16 fwd+bwd on 1 frame ({tag}; "
            f"FLOP ratio {flop_ratio:.2f})",
            "a_name": "timm fwd+bwd",
            "a_value": c["timm_s"],
            "b_name": "SiamMAE step",
            "b_value": c["siammae_s"],
            "unit": "s",
            "ratio": c["siammae_s"] / c["timm_s"],
            "target": f"<= {1.1 * flop_ratio:.2f}",
        },
    ]
    opt = measure_optimizer()
    out.append(
        {
            "benchmark": f"AdamW step on SiamMAE's 56 M params ({THREADS} threads): for-loop (CPU default) "
            "vs fused",
            "a_name": "for-loop",
            "a_value": opt["loop"],
            "b_name": "fused=True",
            "b_value": opt["fused"],
            "unit": "s",
            "ratio": opt["fused"] / opt["loop"],
            "target": None,
        }
    )
    if os.environ.get("CORRMAE_BENCH_COMPILE", "1") != "0":
        comp = measure_compiled()
        out.append(
            {
                "benchmark": f"SiamMAE step, compile_model=True vs eager ({tag}; compile warm-up "
                f"{comp['warmup_s']:.0f} s)",
                "a_name": "eager",
                "a_value": comp["eager"],
                "b_name": "compiled",
                "b_value": comp["compiled"],
                "unit": "s",
                "ratio": comp["compiled"] / comp["eager"],
                "target": None,
            }
        )
    return out
