"""The official VideoMAC encoders: equal to a direct MinkowskiEngine-semantics reference, dense == masked with
nothing masked, the mask follows the input size, exact parameter counts, dilation, and the official init."""

import pytest
import torch

from lightning_modules.components.encoders import build_encoder
from lightning_modules.components.official_checkpoints import load_official_weights
from lightning_modules.components.official_convnext import CONVNEXTS, VideoMACConvNeXtV2
from lightning_modules.components.official_resnet import VideoMACResNet
from lightning_modules.components.sparse import SparseMask
from tests.lightning_modules.components import minkowski_reference as ref

RESNET_DEPTHS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}


def block_mask(batch: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    """(B, 1, h, w) patch mask with 1 = masked; about half masked, at least one cell of each kind."""
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(batch, 1, *grid, generator=g) < 0.5).double()
    m[:, :, 0, 0], m[:, :, -1, -1] = 0.0, 1.0
    return m


@pytest.mark.parametrize(
    ("name", "size"),
    [("resnet18", (64, 96)), ("resnet18", (96, 64)), ("resnet50", (96, 64)), ("convnextv2_atto", (64, 96))],
)
def test_masked_encoder_equals_minkowski_reference_on_converted_weights(name, size):
    """ME-layout random weights -> the official conversion -> our masked dense encoder == direct sparse ME.

    This also proves the conversion (the reference reads the ME kernels directly, with ME's kernel order)
    and that the mask is upsampled to the input's own size (non-square, not 224)."""
    gen = torch.Generator().manual_seed(0)
    if name.startswith("resnet"):
        depths, bottleneck = RESNET_DEPTHS[name]
        me = ref.minkowski_resnet_state(depths, bottleneck, gen)
        enc = VideoMACResNet(name).double()
        forward = lambda x, vis: ref.resnet_forward(x, vis, me, depths, bottleneck)  # noqa: E731
    else:
        depths, dims = CONVNEXTS[name]
        me = ref.minkowski_convnext_state(depths, dims, gen)
        enc = VideoMACConvNeXtV2(name, grn_batch_global=True).double()  # ME's GRN is batch-global
        forward = lambda x, vis: ref.convnext_forward(x, vis, me, depths)  # noqa: E731
    load_official_weights(enc, {"online_without_ddp": me, "epoch": 99})
    grid = (size[0] // 32, size[1] // 32)
    mask = block_mask(2, grid, seed=1)
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    vis_px = SparseMask(mask).visible(size)[:, 0].bool()  # (B, H, W)
    with torch.no_grad():
        ours = enc(x, mask)
        expected = forward(x, vis_px)
    assert ours.shape == expected.shape == (2, enc.num_features, *grid)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)
    assert (ours[mask.bool().expand_as(ours)] == 0).all() and ours.abs().sum() > 0


def test_per_sample_grn_differs_from_minkowski_only_by_the_grn_statistic():
    """grn_batch_global=False (the dense GRN's semantics) is a real change, not a no-op flag."""
    gen = torch.Generator().manual_seed(0)
    depths, dims = CONVNEXTS["convnextv2_atto"]
    me = ref.minkowski_convnext_state(depths, dims, gen)
    a, b = (
        VideoMACConvNeXtV2("convnextv2_atto", grn_batch_global=True).double(),
        VideoMACConvNeXtV2("convnextv2_atto").double(),
    )
    load_official_weights(a, {"online_without_ddp": me}), load_official_weights(b, {"online_without_ddp": me})
    mask, x = block_mask(2, (2, 2), 3), torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64)
    assert not torch.allclose(a(x, mask), b(x, mask))
    torch.testing.assert_close(a(x[:1], mask[:1]), b(x[:1], mask[:1]))  # batch of one: identical


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "convnextv2_tiny", "convnextv2_small"])
def test_dense_equals_masked_with_all_visible_mask(name):
    torch.manual_seed(0)
    enc = build_encoder(name, "official").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        dense, masked = enc(x), enc(x, torch.zeros(1, 1, 2, 3))
    torch.testing.assert_close(dense, masked, rtol=1e-5, atol=1e-5)
    assert dense.shape == (1, enc.num_features, 2, 3)


def test_masked_pixels_never_reach_visible_outputs_at_any_input_size():
    """The official code hard-codes the mask factor (8 = 224 px); here 288 px (9x9 patches) works."""
    torch.manual_seed(0)
    enc = build_encoder("resnet18", "official")
    mask = block_mask(1, (9, 9), 0).float()
    x = torch.randn(1, 3, 288, 288)
    pix = SparseMask(mask).visible((288, 288)).bool()
    x2 = torch.where(pix, x, 10 * torch.randn_like(x))
    with torch.no_grad():
        y1, y2 = enc(x, mask), enc(x2, mask)
    vis = (1 - mask).bool().expand_as(y1)
    torch.testing.assert_close(y1[vis], y2[vis])
    assert (y1[~vis] == 0).all()


# Parameter counts of the dense official encoders, derived from the official code (commit 44558a1):
# models/resnetv2_sparse.py (SparseResNet: stem Conv2d(3, 64, 4, stride=4) with bias + LayerNorm(64); convs
# without bias; every norm an LN with weight and bias; shortcut 1x1 conv + LN; no final norm) and
# models/convnextv2_sparse.py (stem 4x4 conv + LN; stage entry LN + 2x2 conv with bias; blocks dwconv 7x7 with
# bias, LN, Linear C->4C, GRN(4C) gamma/beta, Linear 4C->C; norm0-norm3). The closed forms below recount them.
OFFICIAL_PARAMS = {
    # timm resnet18 (11,176,512) - 6,272: 7x7 conv + BN (9,536) -> 4x4 conv + bias + LN (3,264)
    "resnet18": 11_170_240,
    "resnet50": 23_501_760,  # = timm resnet50 (23,508,032) - 6,272
    # timm convnextv2_tiny (27,866,496) + norm0-3 (2,880) - timm's head norm (1,536)
    "convnextv2_tiny": 27_867_840,
    "convnextv2_small": 49_550_784,  # = timm convnextv2_small (49,549,440) + 2,880 - 1,536
}


def official_param_formula(name: str) -> int:
    """Count the official structure's parameters from first principles."""
    if name.startswith("resnet"):
        depths, bottleneck = RESNET_DEPTHS[name]
        n, cin, exp = 3 * 64 * 16 + 64 + 2 * 64, 64, (4 if bottleneck else 1)
        for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            for b in range(blocks):
                if bottleneck:
                    n += (
                        cin * planes
                        + 9 * planes * planes
                        + planes * 4 * planes
                        + 2 * (planes + planes + 4 * planes)
                    )
                else:
                    n += 9 * cin * planes + 9 * planes * planes + 4 * planes
                if b == 0 and (li > 0 or cin != planes * exp):
                    n += cin * planes * exp + 2 * planes * exp
                cin = planes * exp
        return n
    depths, dims = CONVNEXTS[name]
    n = 3 * dims[0] * 16 + dims[0] + 2 * dims[0]
    for i in range(1, 4):
        n += 2 * dims[i - 1] + 4 * dims[i - 1] * dims[i] + dims[i]
    for d, c in zip(depths, dims, strict=True):
        n += d * (49 * c + c + 2 * c + (4 * c * c + 4 * c) + 2 * 4 * c + (4 * c * c + c)) + 2 * c
    return n


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS))
def test_parameter_counts_of_the_four_official_encoders(name):
    with torch.device("meta"):
        enc = build_encoder(name, "official")
    count = sum(p.numel() for p in enc.parameters())
    assert count == OFFICIAL_PARAMS[name] == official_param_formula(name)


@pytest.mark.parametrize("stride", [16, 8])
def test_official_resnet_dilation_keeps_weights_and_gives_the_stride(stride):
    base = VideoMACResNet("resnet50").eval()
    dilated = VideoMACResNet("resnet50", output_stride=stride).eval()
    dilated.load_state_dict(base.state_dict(), strict=True)  # same tensors, only strides/dilations differ
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = dilated(x)
        assert y.shape == (1, 2048, 64 // stride, 64 // stride)
        # stages before the first dilated one are untouched
        first = 4 if stride == 16 else 3
        torch.testing.assert_close(dilated(x, stage=first - 1), base(x, stage=first - 1))
    with pytest.raises(ValueError, match="natural strides"):
        build_encoder("convnextv2_tiny", "official", output_stride=16)


def test_official_init_matches_the_official_code():
    """std-1 quirk on depthwise / Linear / dense Conv2d weights, std 0.02 on the 2x2 ME convs, GRN zeros."""
    torch.manual_seed(0)
    cnx = VideoMACConvNeXtV2("convnextv2_atto")
    cnx.init_weights("official")
    blk = cnx.stages[2][0]
    assert blk.dwconv.weight.std().item() == pytest.approx(0.88, abs=0.05)  # trunc-normal(1, +-2): std 0.88
    assert blk.pwconv1.weight.std().item() == pytest.approx(0.88, abs=0.02)
    assert cnx.downsample_layers[0][0].weight.std().item() == pytest.approx(0.88, abs=0.05)
    assert cnx.downsample_layers[2][1].weight.std().item() == pytest.approx(0.02, abs=0.002)
    assert blk.grn.gamma.abs().sum() == 0 and blk.pwconv1.bias.abs().sum() == 0
    cnx.init_weights("standard")
    assert blk.pwconv1.weight.std().item() == pytest.approx(0.02, abs=0.002)
    rn = VideoMACResNet("resnet18")
    bias_before = rn.stem[0].bias.clone()
    rn.init_weights("official")
    assert rn.stem[0].weight.std().item() == pytest.approx(0.88, abs=0.1)
    assert torch.equal(rn.stem[0].bias, bias_before)  # _init_weights_resnet leaves the stem bias at default
    assert rn.layer3[0].conv2.weight.std().item() == pytest.approx(0.02, abs=0.002)


def test_autoencoder_init_option_and_its_errors():
    from lightning_modules.components.mac import MaskedConvAutoencoder

    torch.manual_seed(0)
    ae = MaskedConvAutoencoder("resnet18", decoder_dim=32, encoder_variant="official", init="official")
    assert ae.decoder.proj.weight.std().item() == pytest.approx(0.88, abs=0.1)
    assert ae.decoder.mask_token.std().item() == pytest.approx(0.02, abs=0.01)
    fc1 = ae.decoder.blocks[
        0
    ].mlp.fc1.weight  # Linear: PyTorch's default kaiming-uniform, bound 1/sqrt(fan_in)
    assert fc1.abs().max().item() <= 32**-0.5 + 1e-6 and fc1.std().item() > 0.1
    std = MaskedConvAutoencoder("resnet18", decoder_dim=32, encoder_variant="official", init="standard")
    assert std.decoder.proj.weight.std().item() == pytest.approx(0.02, abs=0.005)
    with pytest.raises(ValueError, match="timm"):
        MaskedConvAutoencoder("resnet18", decoder_dim=32, encoder_variant="timm", init="official")
    with pytest.raises(ValueError, match="resnet26"):
        build_encoder("resnet26", "official")
    with pytest.raises(ValueError, match="pretrained"):
        build_encoder("resnet18", "official", pretrained=True)
