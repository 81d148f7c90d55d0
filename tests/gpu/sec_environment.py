"""Section 5, run first: the machine, the library versions, and the measured peaks every MFU is divided by."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

import torch

from tests.gpu.harness import Context, matmul_peak, time_calls


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _driver() -> str:
    """The NVIDIA driver version from nvidia-smi (None without one)."""
    if shutil.which("nvidia-smi") is None:
        return "n/a (no nvidia-smi)"
    q = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        return subprocess.run(q, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError) as e:
        return f"n/a ({type(e).__name__})"


def machine(ctx: Context) -> None:
    """GPU, driver, versions, cores and shared memory (DataLoader workers pass batches through /dev/shm)."""
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        ctx.add("GPU", "name", props.name)
        ctx.add("GPU", "memory", round(props.total_memory / 2**30, 1), "GiB")
        ctx.add("GPU", "multiprocessors", props.multi_processor_count)
        ctx.add("GPU", "compute capability", f"{props.major}.{props.minor}")
        ctx.add("GPU", "driver", _driver())
        ctx.add("torch", "CUDA runtime", torch.version.cuda)
        ctx.add("torch", "cuDNN", torch.backends.cudnn.version())
    else:
        ctx.add("GPU", "name", "none: no CUDA device, tiny sizes on CPU")
    ctx.add("python", "version", platform.python_version(), note=sys.executable)
    for dist in ("torch", "lightning", "timm", "torchmetrics", "pillow", "numpy"):
        ctx.add(dist, "version", _version(dist))
    ctx.add(
        "CPU", "cores visible", len(os.sched_getaffinity(0)), note=platform.processor() or platform.machine()
    )
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    ctx.add("CPU", "/dev/shm size", None if shm is None else round(shm.total / 2**30, 1), "GiB")


def peaks(ctx: Context) -> None:
    """Matmul peaks (bf16, TF32, fp32) and device copy bandwidth, measured now, in this process."""
    n, iters = ctx.sizes.peak_n, ctx.sizes.peak_iters
    with ctx.item("bf16 matmul peak"):
        bf16 = matmul_peak(ctx.device, torch.bfloat16, n, iters)
        ctx.shared["bf16_peak"] = bf16
        ctx.add("bf16 matmul peak", f"{n}^3 random", bf16 / 1e12, "TFLOP/s", "MFU denominator")
    if ctx.cuda:
        with ctx.item("TF32 matmul peak"):
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                tf32 = matmul_peak(ctx.device, torch.float32, n, iters)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = prev
            ctx.add("TF32 matmul peak", f"{n}^3 random", tf32 / 1e12, "TFLOP/s")
    with ctx.item("fp32 matmul peak"):
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            fp32 = matmul_peak(ctx.device, torch.float32, n // 2 if ctx.cuda else n, iters)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        ctx.shared["fp32_peak"] = fp32
        ctx.add("fp32 matmul peak", "no TF32", fp32 / 1e12, "TFLOP/s")
    with ctx.item("device copy bandwidth"):
        numel = (2**30 if ctx.cuda else 2**24) // 4  # 1 GiB on the GPU, 16 MiB on CPU
        src = torch.empty(numel, device=ctx.device)
        dst = torch.empty_like(src)
        r = time_calls(lambda: dst.copy_(src), ctx.device, warmup=2, iters=10, budget=10.0)
        ctx.add("device copy", "read + write", 2 * src.nbytes / r["median_s"] / 1e9, "GB/s")


def run(ctx: Context) -> None:
    """Environment rows and the peaks."""
    machine(ctx)
    peaks(ctx)
    ctx.note(
        "Peaks are medians of timed products on random data after warm-up, measured in this run; "
        "MFU elsewhere in this report divides achieved matmul FLOP/s by the bf16 peak."
    )
