"""Section 2: numerics. bf16 autocast loss and gradients against fp32 on the same batch and weights; which
SDPA kernel runs; VideoMAC's EMA update on the device against the CPU and against a float64 formula."""

from __future__ import annotations

import copy

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_modules.components.ema import update_ema
from tests.gpu import models
from tests.gpu.harness import Context, free_memory


class SdpaRecorder(TorchDispatchMode):
    """Records which aten scaled-dot-product-attention kernels a forward dispatches to."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        if "scaled_dot_product" in name:
            self.kernels[name] = self.kernels.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _no_tf32():
    """fp32 reference without TF32 (restored by the caller)."""
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return prev


def loss_and_grads(model, frames: torch.Tensor, bf16: bool) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradients of the trainable parameters (fp32 copies) for one batch."""
    model.zero_grad(set_to_none=True)
    loss = models.step_loss(model, frames, bf16)
    loss.backward()
    params = [p for p in model.trainable_module().parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().float().clone() for p in params]
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def compare_precisions(ctx: Context, item: str, build, batch: int, img: int) -> None:
    """bf16-autocast vs fp32 (TF32 off) loss and gradients from identical weights, batch and masks."""
    model = build().to(ctx.device)
    frames = models.random_frames(batch, img, ctx.device, seed=1)
    state = copy.deepcopy(model.state_dict())  # BatchNorm statistics move in the forward: restore between
    prev = _no_tf32()
    try:
        loss32, g32 = loss_and_grads(model, frames, bf16=False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    model.load_state_dict(state)
    loss16, g16 = loss_and_grads(model, frames, bf16=True)
    flat32, flat16 = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
    rel = float((flat16 - flat32).norm() / flat32.norm().clamp_min(1e-30))
    cos = float(torch.nn.functional.cosine_similarity(flat16, flat32, dim=0))
    per = [float((a - b).norm() / b.norm()) for a, b in zip(g16, g32, strict=True) if float(b.norm()) > 0]
    ctx.add(item, "loss fp32", loss32)
    ctx.add(item, "loss rel. error bf16", abs(loss16 - loss32) / max(abs(loss32), 1e-30))
    ctx.add(item, "grad rel. error bf16 (all params)", rel, note="||g_bf16 - g_fp32|| / ||g_fp32||")
    ctx.add(item, "grad cosine bf16 vs fp32", cos)
    ctx.add(item, "grad rel. error, worst tensor", max(per) if per else None, note=f"{len(per)} tensors")
    ctx.shared.setdefault("grad_rel", {})[item] = rel


def sdpa_kernels(ctx: Context) -> None:
    """Which attention kernel SiamMAE's encoder and decoder dispatch to, under bf16 autocast and fp32."""
    s = ctx.sizes.siammae[0]
    model = models.build_siammae(s.kwargs).to(ctx.device)
    frames = models.random_frames(2, s.kwargs.get("img_size", 224), ctx.device)
    for bf16 in (True, False):
        rec = SdpaRecorder()
        with torch.no_grad(), rec:
            models.step_loss(model, frames, bf16)
        found = ", ".join(f"{k} x{v}" for k, v in sorted(rec.kernels.items())) or "none recorded"
        ctx.add(f"SDPA kernel, {s.label} forward", "bf16 autocast" if bf16 else "fp32", found)


def ema_on_device(ctx: Context) -> None:
    """``update_ema`` (torch._foreach_lerp_) on the device vs the same on CPU vs a float64 reference."""
    m = ctx.sizes.videomac[0]
    model = models.build_videomac(m.encoder, m.decoder_dim)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an online network that differs from its target, as after some steps
        for p in model.online.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    cpu_t, cpu_o = copy.deepcopy(model.target), model.online
    dev_t, dev_o = copy.deepcopy(model.target).to(ctx.device), copy.deepcopy(model.online).to(ctx.device)
    ref = [p.detach().double() for p in model.target.parameters()]
    momentum, steps = 0.996, 10
    for _ in range(steps):
        update_ema(cpu_t, cpu_o, momentum, buffers="keep")
        update_ema(dev_t, dev_o, momentum, buffers="keep")
        ref = [
            momentum * r + (1 - momentum) * o.detach().double()
            for r, o in zip(ref, cpu_o.parameters(), strict=True)
        ]
    dev = [p.detach().cpu() for p in dev_t.parameters()]
    vs_cpu = max(float((a - b).abs().max()) for a, b in zip(dev, cpu_t.parameters(), strict=True))
    vs_ref = max(float((a.double() - r).abs().max()) for a, r in zip(dev, ref, strict=True))
    where = f"{m.label}, {steps} updates, m {momentum}"
    ctx.add("VideoMAC EMA update", f"max |{ctx.device.type} - CPU|", vs_cpu, note=where)
    ctx.add("VideoMAC EMA update", f"max |{ctx.device.type} - float64 formula|", vs_ref, note=where)
    ctx.add("VideoMAC EMA update", "target on", str(next(dev_t.parameters()).device))


def run(ctx: Context) -> None:
    """Precision comparisons for SiamMAE and both VideoMAC encoders, then SDPA and EMA."""
    sizes = ctx.sizes
    b = sizes.numerics_batch
    s = sizes.siammae[0]
    with ctx.item(f"{s.label} bf16 vs fp32"):
        compare_precisions(
            ctx,
            f"{s.label} bf16 vs fp32",
            lambda: models.build_siammae(s.kwargs),
            b,
            s.kwargs.get("img_size", 224),
        )
    free_memory()
    for m in sizes.videomac:
        with ctx.item(f"{m.label} bf16 vs fp32", min_left=3.0) as go:
            if go:
                build = lambda m=m: models.build_videomac(m.encoder, m.decoder_dim)  # noqa: E731
                compare_precisions(ctx, f"{m.label} bf16 vs fp32", build, b, m.img)
        free_memory()
    with ctx.item("SDPA kernels"):
        sdpa_kernels(ctx)
    with ctx.item("VideoMAC EMA update"):
        ema_on_device(ctx)
    ctx.note(
        "fp32 references run with TF32 off (matmul and cuDNN); masks come from the same seeded generator, "
        "BatchNorm statistics are restored between the two passes."
    )
