"""The analytic FLOP counts behind the MFU of `make bench` agree with torch FlopCounterMode."""

import pytest
import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules import SiamMAE
from tests.bench.flops import (
    self_block_flops,
    siammae_forward_flops,
    siammae_shape,
    siammae_step_flops,
    vit_forward_flops,
)

TINY = dict(
    img_size=64, patch_size=16, embed_dim=48, depth=2, num_heads=3, decoder_dim=32, decoder_depth=2,
    decoder_num_heads=4,
)  # fmt: skip


def counted_forward_flops(model: torch.nn.Module, *args) -> int:
    """FLOPs FlopCounterMode sees in one forward; SDPA runs in its math backend, whose bmm's are counted."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"decoder_mode": "cross"},
        {"decoder_mode": "joint"},
        {"encoder_mode": "joint", "mask_ratio": 0.75},
        {"symmetric_masking": True, "mask_ratio": 0.5},
    ],
    ids=["cross_self", "cross", "joint_decoder", "joint_encoder", "symmetric"],
)
def test_siammae_forward_flops_match_counter(kw):
    model = SiamMAE(**{**TINY, **kw})
    frames = torch.randn(3, 2, 3, 64, 64)
    expected = siammae_forward_flops(3, **siammae_shape(model))
    assert counted_forward_flops(model, frames, torch.Generator().manual_seed(0)) == expected


def test_siammae_vits16_default_forward_flops_match_counter():
    """The benchmarked configuration itself (ViT-S/16, 224, 95 % mask, cross_self 512x8), batch 1."""
    model = SiamMAE(log_images_every_n_steps=0)
    shape = siammae_shape(model)
    assert shape["embed_dim"] == 384 and shape["depth"] == 12 and shape["decoder_dim"] == 512
    counted = counted_forward_flops(model, torch.randn(1, 2, 3, 224, 224), torch.Generator().manual_seed(0))
    assert counted == siammae_forward_flops(1, **shape)
    assert siammae_step_flops(8, **shape) == 24 * counted
    # Order of magnitude a reader can check by hand: ~9 GFLOP frame-1 encoder + ~14 GFLOP decoder per pair.
    assert 2.0e10 < counted < 2.8e10


def test_timm_vit_forward_flops_match_counter():
    model = timm.create_model("vit_small_patch16_224", pretrained=False)
    counted = counted_forward_flops(model, torch.randn(2, 3, 224, 224))
    assert counted == vit_forward_flops(2)


def test_block_flops_formula_by_hand():
    # qkv 6nd^2 + attention 4n^2d + proj 2nd^2 + MLP 16nd^2 = 24nd^2 + 4n^2d
    n, d = 197, 384
    assert self_block_flops(n, d) == 24 * n * d * d + 4 * n * n * d
