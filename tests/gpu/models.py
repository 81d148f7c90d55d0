"""The check's coupling to the project's models: building them, one training step, FLOPs per step.

Everything the check knows about SiamMAE / VideoMAC constructors and step internals is in this file, so a
change of those interfaces (e.g. the official VideoMAC variants) is adapted here only.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.components.ema import update_ema
from lightning_modules.siammae import SiamMAE
from lightning_modules.videomac import VideoMAC
from tests.bench.flops import siammae_shape, siammae_step_flops


def build_siammae(kwargs: dict, compile_model: bool = False) -> SiamMAE:
    """SiamMAE with the paper's decoder (defaults) unless ``kwargs`` override; blocks compiled on request."""
    torch.manual_seed(0)
    model = SiamMAE(log_images_every_n_steps=0, compile_model=compile_model, **kwargs)
    model.configure_model()  # what the Trainer calls: compiles the blocks in place when compile_model
    return model


def build_videomac(encoder: str, decoder_dim: int = 512, compile_model: bool = False) -> VideoMAC:
    """VideoMAC with masked-dense sparse emulation (``dense_masked``), mask ratio 0.75, 32-px patches."""
    torch.manual_seed(0)
    model = VideoMAC(
        encoder_name=encoder, sparse_backend="dense_masked", decoder_dim=decoder_dim,
        log_images_every_n_steps=0, compile_model=compile_model,
    )  # fmt: skip
    model.configure_model()
    return model


def configured_optimizer(model, batch: int) -> torch.optim.Optimizer:
    """The optimiser ``configure_optimizers`` builds (fused AdamW), via a stand-in trainer; params must
    already be on their device (fused AdamW is built per device)."""
    model._trainer = SimpleNamespace(  # only the attributes VideoSSLModule reads
        datamodule=SimpleNamespace(batch_size=batch), world_size=1, accumulate_grad_batches=1,
        estimated_stepping_batches=1000, max_epochs=1,
    )  # fmt: skip
    try:
        return model.configure_optimizers()["optimizer"]
    finally:
        model._trainer = None


def step_loss(model, frames: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The training loss of one batch under bf16 autocast (as ``precision: bf16-mixed``) or fp32."""
    g = torch.Generator(device=frames.device).manual_seed(0)  # the same masks every call
    with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(frames, g)
    return out[0]["loss"] if isinstance(model, VideoMAC) else out[0]


def train_step(model, opt: torch.optim.Optimizer, frames: torch.Tensor, bf16: bool) -> Callable[[], None]:
    """A closure doing one full step: forward, backward, optimiser step, and VideoMAC's EMA update."""

    def step() -> None:
        loss = step_loss(model, frames, bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if isinstance(model, VideoMAC):  # what VideoMAC.optimizer_step does after the optimiser step
            update_ema(model.target, model.online, model.hparams.ema_momentum, buffers="keep")

    return step


def step_flops(model, frames: torch.Tensor) -> tuple[float, str]:
    """Matmul/conv FLOPs of one training step, and how they were counted.

    SiamMAE: the analytic count of ``tests/bench/flops.py`` (forward x 3). VideoMAC: flops.py has no ConvNet
    count, so ``FlopCounterMode`` counts a real forward + backward on 2 samples, scaled to the batch; the
    masked-dense emulation executes dense convolutions, so these are the FLOPs the GPU runs.
    """
    batch = frames.shape[0]
    if isinstance(model, SiamMAE):
        return float(siammae_step_flops(batch, **siammae_shape(model))), "analytic (tests/bench/flops.py)"
    sample = frames[:2]
    counter = FlopCounterMode(display=False)
    with counter:
        step_loss(model, sample, bf16=False).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * batch / sample.shape[0], "FlopCounterMode fwd+bwd (dense convs)"


def random_frames(batch: int, img: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A batch of frame pairs (B, 2, 3, S, S), roughly ImageNet-normalised statistics."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(batch, 2, 3, img, img, device=device, generator=g)


def image_size(model) -> int:
    """Training crop side of a built model."""
    if isinstance(model, SiamMAE):
        return int(model.encoder.patch_embed.img_size[0])
    return 224
