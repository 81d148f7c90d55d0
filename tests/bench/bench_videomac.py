"""VideoMAC training-step time on CPU: masked-dense sparse encoder vs the same dense network without masking.

The only difference between the two columns is the mask passed to the encoders (the decoder, losses, EMA and
optimiser step are identical), so the ratio is the overhead of the sparse emulation (issue 4: aim <= 1.3x).
"""

from __future__ import annotations

import time

import torch

from lightning_modules import VideoMAC
from lightning_modules.components.ema import update_ema

SETTINGS = (("resnet18", 224, 8), ("convnextv2_atto", 224, 8))  # (encoder, image size, batch)


def train_step(model: VideoMAC, opt: torch.optim.Optimizer, frames: torch.Tensor, sparse: bool) -> None:
    """One full VideoMAC step; ``sparse=False`` hands the encoders no mask (plain dense network)."""
    g = torch.Generator().manual_seed(0)
    f_t, f_t1 = frames[:, 0], frames[:, 1]
    grid = (f_t.shape[-2] // 32, f_t.shape[-1] // 32)
    mask_o, mask_t = model.random_masking(f_t.shape[0], grid, g, f_t.device)
    enc_mask_o, enc_mask_t = (mask_o, mask_t) if sparse else (None, None)
    pred_o = model.online.forward_decoder(model.online.forward_encoder(f_t, enc_mask_o), mask_o)
    with torch.no_grad():
        pred_t = model.target.forward_decoder(model.target.forward_encoder(f_t1, enc_mask_t), mask_t)
    losses = model.forward_loss(f_t, f_t1, pred_o, pred_t, mask_o.flatten(1), mask_t.flatten(1))
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    update_ema(model.target, model.online, 0.996, buffers="keep")


def measure(name: str, size: int, batch: int, sparse: bool, repeats: int = 3) -> float:
    """Median seconds per training step (after one warm-up step)."""
    torch.manual_seed(0)
    model = VideoMAC(encoder_name=name, log_images_every_n_steps=0)
    opt = torch.optim.AdamW(model.trainable_module().parameters(), lr=1e-4)
    frames = torch.randn(batch, 2, 3, size, size)
    train_step(model, opt, frames, sparse)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step(model, opt, frames, sparse)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def rows() -> list[dict]:
    """One row per encoder: dense step time vs masked-dense step time, ratio = masked / dense."""
    out = []
    for name, size, batch in SETTINGS:
        dense = measure(name, size, batch, sparse=False)
        masked = measure(name, size, batch, sparse=True)
        out.append(
            {
                "benchmark": f"VideoMAC train step {name} {size}px batch {batch} (CPU fp32)",
                "a_name": "dense (no mask)",
                "a_value": dense,
                "b_name": "masked-dense sparse",
                "b_value": masked,
                "unit": "s",
                "ratio": masked / dense,
                "target": "<= 1.3",
            }
        )
    return out
