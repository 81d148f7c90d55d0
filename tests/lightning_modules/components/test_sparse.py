"""Masked-dense sparse emulation: exactness against direct sparse references, dense equality, invariances."""

import pytest
import timm
import torch
import torch.nn.functional as F
from jsonargparse import ArgumentParser
from timm.layers.grn import GlobalResponseNorm
from torch import nn

from lightning_modules.components.sparse import SparseMask, masked_batch_norm, masked_grn, masked_layer_norm
from lightning_modules.components.sparse_backends import SparseBackend, build_sparse_encoder, check_backend

ENCODERS = ["resnet18", "convnextv2_atto"]


def conv_reference(x, vis_in, vis_out, weight, bias, stride, padding):
    """Direct sparse conv: each visible output site from its visible input neighbours only (naive loops)."""
    B, _, H, W = x.shape
    k = weight.shape[-1]
    out = torch.zeros(B, weight.shape[0], *vis_out.shape[-2:], dtype=x.dtype)
    for b, i, j in vis_out[:, 0].nonzero().tolist():
        acc = torch.zeros(weight.shape[0], dtype=x.dtype) if bias is None else bias.clone()
        for di in range(k):
            for dj in range(k):
                r, c = i * stride - padding + di, j * stride - padding + dj
                if 0 <= r < H and 0 <= c < W and vis_in[b, 0, r, c] > 0:
                    acc = acc + weight[:, :, di, dj] @ x[b, :, r, c]
        out[b, :, i, j] = acc
    return out


def coarse_mask(batch=2, grid=(3, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(batch, 1, *grid, generator=g) < 0.5).float()
    m[:, :, 0, 0] = 0.0  # at least one visible and one masked cell per sample
    m[:, :, -1, -1] = 1.0
    return m


@pytest.mark.parametrize(("k", "stride", "pad"), [(3, 1, 1), (3, 2, 1), (2, 2, 0), (7, 2, 3), (1, 2, 0)])
def test_masked_dense_conv_equals_direct_sparse_conv(k, stride, pad):
    torch.manual_seed(0)
    mask = coarse_mask()
    x = torch.randn(2, 3, 12, 12)
    conv = nn.Conv2d(3, 4, k, stride, pad, bias=True).double()
    x = x.double()
    sm = SparseMask(mask)
    vis_in = sm.visible((12, 12)).double()
    out = conv(x * vis_in)  # dense emulation: zero masked inputs, run dense, zero masked outputs
    vis_out = sm.visible(out.shape[-2:]).double()
    emulated = out * vis_out
    ref = conv_reference(x, vis_in, vis_out, conv.weight.detach(), conv.bias.detach(), stride, pad)
    torch.testing.assert_close(emulated, ref, rtol=1e-10, atol=1e-10)


def test_masked_batch_norm_matches_bn1d_on_visible_sites():
    torch.manual_seed(0)
    mask = coarse_mask()
    x = torch.randn(2, 5, 6, 6) * 3 + 1
    bn, ref = nn.BatchNorm2d(5), nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    ref.load_state_dict(bn.state_dict())
    sm = SparseMask(mask)
    vis = sm.visible((6, 6))[:, 0].bool()  # (B, H, W)
    for _ in range(2):  # two updates: running statistics follow BN1d on the visible sites exactly
        y = masked_batch_norm(bn, x, sm)
        y_ref = ref(x.permute(0, 2, 3, 1)[vis])  # (n_visible, C)
    torch.testing.assert_close(y.permute(0, 2, 3, 1)[vis], y_ref)
    assert (y.permute(0, 2, 3, 1)[~vis] == 0).all()
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 2
    bn.eval(), ref.eval()
    torch.testing.assert_close(
        masked_batch_norm(bn, x, sm).permute(0, 2, 3, 1)[vis], ref(x.permute(0, 2, 3, 1)[vis])
    )
    # the statistics ignore whatever sits at masked sites
    bn.train()
    x2 = x.clone().masked_fill(~vis.unsqueeze(1), 1e3)
    torch.testing.assert_close(masked_batch_norm(bn, x2, sm), masked_batch_norm(bn, x, sm))


def test_masked_statistics_stay_fp32_on_bf16_input():
    """bf16 activations (autocast) keep fp32 statistics: the fp32 result, rounded once to bf16."""
    torch.manual_seed(0)
    sm = SparseMask(coarse_mask(grid=(4, 4)))
    x = (torch.randn(2, 8, 16, 16) * 0.05 + 4.0).bfloat16()  # a large offset: bf16 mean/var lose the signal
    bn = nn.BatchNorm2d(8)
    grn = GlobalResponseNorm(8, channels_last=True)
    with torch.no_grad():
        grn.weight.uniform_(0.5, 2), grn.bias.uniform_(-1, 1)
    y16, y32 = masked_batch_norm(bn, x, sm), masked_batch_norm(bn, x.float(), sm)
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32.bfloat16().float(), rtol=0, atol=0)
    xl = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    g16, g32 = masked_grn(grn, xl, sm), masked_grn(grn, xl.float(), sm)
    assert g16.dtype == torch.bfloat16
    torch.testing.assert_close(g16.float(), g32.bfloat16().float(), rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_masked_layer_norm(channels_last):
    mask = coarse_mask()
    sm = SparseMask(mask)
    x = torch.randn(2, 4, 6, 6)
    norm = timm.layers.LayerNorm(4) if channels_last else timm.layers.LayerNorm2d(4)
    with torch.no_grad():
        norm.bias.fill_(0.3)
    xin = x.permute(0, 2, 3, 1) if channels_last else x
    y = masked_layer_norm(norm, xin, sm, channels_last)
    y = y.permute(0, 3, 1, 2) if channels_last else y
    vis = sm.visible((6, 6)).bool().expand_as(x)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (4,), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(y[vis], ref[vis])
    assert (y[~vis] == 0).all()


@pytest.mark.parametrize("batch_global", [False, True])
def test_masked_grn_matches_gathered_reference(batch_global):
    torch.manual_seed(0)
    mask = coarse_mask()
    sm = SparseMask(mask)
    grn = GlobalResponseNorm(4, channels_last=True)
    with torch.no_grad():
        grn.weight.uniform_(-1, 1), grn.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 6, 4)  # (B, H, W, C), garbage at masked sites
    y = masked_grn(grn, x, sm, batch_global=batch_global)
    vis = sm.visible((6, 6))[:, 0].bool()
    for b in range(2):
        pts = x[vis] if batch_global else x[b][vis[b]]  # (n, C) visible sites only
        g = pts.norm(dim=0)
        n = g / (g.mean() + grn.eps)
        xb = x[b][vis[b]]
        torch.testing.assert_close(y[b][vis[b]], xb + grn.bias + grn.weight * xb * n)


@pytest.mark.parametrize("name", ENCODERS)
def test_mask_none_is_exactly_the_dense_timm_model(name):
    enc = build_sparse_encoder(name)
    dense = timm.create_model(name, num_classes=0)
    dense.load_state_dict(enc.encoder_state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    for mode in (True, False):
        enc.train(mode), dense.train(mode)
        assert torch.equal(enc(x), dense.forward_features(x))
    # the masked code path with nothing masked is the dense network too (up to summation order)
    enc.eval(), dense.eval()
    torch.testing.assert_close(
        enc(x, torch.zeros(2, 1, 1, 1)), dense.forward_features(x), rtol=1e-5, atol=1e-5
    )
    # intermediate stages match timm's forward_intermediates
    feats = dense.forward_intermediates(x, intermediates_only=True)
    torch.testing.assert_close(enc(x, None, stage=2), feats[-3])


@pytest.mark.parametrize("name", ENCODERS)
def test_masked_sites_never_influence_visible_outputs(name):
    torch.manual_seed(0)
    enc = build_sparse_encoder(name).train()
    mask = coarse_mask(grid=(2, 2))
    x = torch.randn(2, 3, 64, 64)
    pix_vis = SparseMask(mask).visible((64, 64)).bool()
    x2 = torch.where(pix_vis, x, torch.randn_like(x) * 10)  # only masked pixels change
    y1, y2 = enc(x, mask), enc(x2, mask)
    assert y1.shape == (2, enc.num_features, 2, 2)
    vis = (1 - mask).bool().expand_as(y1)
    torch.testing.assert_close(y1[vis], y2[vis], rtol=1e-5, atol=1e-5)
    assert (y1[~vis] == 0).all() and (y1[vis] != 0).any()
    # and visible inputs do matter (the test is not vacuous)
    x3 = torch.where(pix_vis, torch.randn_like(x), x)
    assert not torch.allclose(enc(x3, mask)[vis], y1[vis])


def test_convnext_block_equals_sparse_reference():
    """One ConvNeXt-V2 block: submanifold depthwise conv + per-site MLP + per-sample GRN on visible sites."""
    torch.manual_seed(0)
    enc = build_sparse_encoder("convnextv2_atto").double()
    blk = enc.model.stages[0].blocks[0]
    with torch.no_grad():
        blk.mlp.grn.weight.uniform_(-1, 1), blk.mlp.grn.bias.uniform_(-1, 1)
    mask = coarse_mask(grid=(2, 2))
    sm = SparseMask(mask)
    vis = sm.visible((8, 8)).double()
    x = torch.randn(2, 40, 8, 8, dtype=torch.float64) * vis
    y = enc.forward_block(blk, x, sm)
    C = x.shape[1]
    w = torch.zeros(C, C, 7, 7, dtype=torch.float64)
    w[range(C), range(C)] = blk.conv_dw.weight.detach()[:, 0]  # depthwise as a diagonal full kernel
    h = conv_reference(x, vis, vis, w, blk.conv_dw.bias.detach(), 1, 3)
    ref = torch.zeros_like(x)
    for b in range(2):
        sites = vis[b, 0].bool()
        hb = h[b].permute(1, 2, 0)[sites]  # (n, C) visible sites only
        hb = F.layer_norm(hb, (C,), blk.norm.weight, blk.norm.bias, blk.norm.eps)
        hb = blk.mlp.act(F.linear(hb, blk.mlp.fc1.weight.flatten(1), blk.mlp.fc1.bias))  # 1x1 conv or Linear
        g = hb.norm(dim=0)
        hb = hb + blk.mlp.grn.bias + blk.mlp.grn.weight * hb * (g / (g.mean() + blk.mlp.grn.eps))
        out = x[b].permute(1, 2, 0).clone()
        out[sites] = out[sites] + F.linear(hb, blk.mlp.fc2.weight.flatten(1), blk.mlp.fc2.bias)
        ref[b] = out.permute(2, 0, 1)
    torch.testing.assert_close(y, ref.detach())


def test_unsupported_models_and_backends_raise():
    with pytest.raises(ValueError, match="resnet50d"):
        build_sparse_encoder("resnet50d")  # avg-pool shortcut mixes masked zeros into visible sites
    with pytest.raises(ValueError, match="vit_small"):
        build_sparse_encoder("vit_small_patch16_224")
    with pytest.raises(ValueError, match="bogus"):
        check_backend("bogus")


def test_minkowski_backend_of_older_configs_says_what_to_use():
    with pytest.raises(ValueError, match="MinkowskiEngine encoders.*dense_masked"):
        build_sparse_encoder("resnet18", backend="minkowski")
    with pytest.raises(ValueError, match="MinkowskiEngine encoders.*dense_masked"):
        check_backend("minkowski")


def test_cli_rejects_the_minkowski_backend():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--sparse_backend", type=SparseBackend)
    assert parser.parse_args(["--sparse_backend=dense_masked"]).sparse_backend == "dense_masked"
    with pytest.raises(Exception, match="dense_masked"):
        parser.parse_args(["--sparse_backend=minkowski"])
