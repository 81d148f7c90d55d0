"""VideoMAC training-step time on CPU: masked-dense sparse encoder vs the same dense network without masking.

The only difference between the two columns is the mask passed to the encoders (the decoder, losses, EMA and
optimiser step are identical), so the ratio is the overhead of the sparse emulation (aim: <= 1.3x).
The official encoders (the authors' LN/GELU ResNet-50 and ConvNeXt-V2-S) get rows of their own, plus
one row per paper encoder comparing the official and timm variants' MACs at 224 px (counted, not timed).
"""

from __future__ import annotations

import time

import torch

from lightning_modules import VideoMAC
from lightning_modules.components.ema import update_ema
from tests.bench.flops import videomac_encoder_macs

# (encoder, variant, image size, batch); the big official encoders at batch 4 to keep `make bench` short.
SETTINGS = (
    ("resnet18", "timm", 224, 8),
    ("convnextv2_atto", "timm", 224, 8),
    ("resnet50", "official", 224, 4),
    ("convnextv2_small", "official", 224, 4),
)


def train_step(model: VideoMAC, opt: torch.optim.Optimizer, frames: torch.Tensor, sparse: bool) -> None:
    """One full VideoMAC step; ``sparse=False`` hands the encoders no mask (plain dense network)."""
    g = torch.Generator().manual_seed(0)
    f_t, f_t1 = frames[:, 0], frames[:, 1]
    grid = (f_t.shape[-2] // 32, f_t.shape[-1] // 32)
    mask_o, mask_t = model.random_masking(f_t.shape[0], grid, g, f_t.device)
    enc_mask_o, enc_mask_t = (mask_o, mask_t) if sparse else (None, None)
    online, target = model.online, model.target
    pred_o = model.forward_decoder(online, model.forward_encoder(online, f_t, enc_mask_o), mask_o)
    with torch.no_grad():
        pred_t = model.forward_decoder(target, model.forward_encoder(target, f_t1, enc_mask_t), mask_t)
    losses = model.forward_loss(f_t, f_t1, pred_o, pred_t, mask_o.flatten(1), mask_t.flatten(1))
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    update_ema(model.target, model.online, 0.996, buffers="keep")


def measure(name: str, variant: str, size: int, batch: int, sparse: bool, repeats: int = 3) -> float:
    """Median seconds per training step (after one warm-up step)."""
    torch.manual_seed(0)
    init = "official" if variant == "official" else "standard"
    model = VideoMAC(encoder_name=name, encoder_variant=variant, init=init, log_images_every_n_steps=0)
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
    for name, variant, size, batch in SETTINGS:
        dense = measure(name, variant, size, batch, sparse=False)
        masked = measure(name, variant, size, batch, sparse=True)
        out.append(
            {
                "benchmark": f"VideoMAC train step {variant} {name} {size}px batch {batch} (CPU fp32)",
                "a_name": "dense (no mask)",
                "a_value": dense,
                "b_name": "masked-dense sparse",
                "b_value": masked,
                "unit": "s",
                "ratio": masked / dense,
                "target": "<= 1.3",
            }
        )
    for name in ("resnet18", "resnet50", "convnextv2_tiny", "convnextv2_small"):
        timm_macs, official_macs = (videomac_encoder_macs(name, v) for v in ("timm", "official"))
        out.append(
            {
                "benchmark": f"VideoMAC encoder {name} dense forward at 224 px: GMACs",
                "a_name": "timm",
                "a_value": timm_macs / 1e9,
                "b_name": "official",
                "b_value": official_macs / 1e9,
                "unit": "GMAC",
                "ratio": official_macs / timm_macs,
            }
        )
    return out
