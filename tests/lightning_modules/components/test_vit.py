import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from lightning_modules.components.masking import random_masking
from lightning_modules.components.pos_embed import resample_pos_embed, sincos_2d
from lightning_modules.components.vit import (
    build_vit,
    cls_attention_maps,
    embed_tokens,
    encode_tokens,
    extract_patch_features,
    prepend_cls,
)

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def mae_sincos(dim, size):
    """MAE's numpy get_2d_sincos_pos_embed (reference, transcribed) for a square grid."""
    gh, gw = np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, size, size)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


def test_sincos_matches_mae_reference():
    assert np.allclose(sincos_2d(64, (5, 5)).numpy(), mae_sincos(64, 5), atol=1e-6)
    assert sincos_2d(16, (3, 7), cls_token=False).shape == (21, 16)


def test_resample_pos_embed_keeps_prefix_and_identity():
    pe = sincos_2d(32, (4, 4)).unsqueeze(0)
    assert resample_pos_embed(pe, (4, 4), (4, 4)) is pe
    out = resample_pos_embed(pe, (4, 4), (6, 10))
    assert out.shape == (1, 61, 32) and torch.equal(out[:, :1], pe[:, :1])


def test_state_dict_loads_strictly_into_timm_vit_s16():
    enc = build_vit("vit_small_patch16_224")
    assert not enc.pos_embed.requires_grad
    assert torch.allclose(enc.pos_embed[0], sincos_2d(384, (14, 14)))
    ref = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    ref.load_state_dict(enc.state_dict(), strict=True)
    full = timm.create_model("vit_small_patch16_224", pretrained=False)  # with its 1000-class head
    head = {"head.weight": torch.zeros(1000, enc.embed_dim), "head.bias": torch.zeros(1000)}
    full.load_state_dict({**enc.state_dict(), **head}, strict=True)
    ref.eval(), enc.eval()
    x = torch.randn(1, 3, 224, 224)
    ours = extract_patch_features(enc, x)  # (1, 384, 14, 14)
    theirs = ref.forward_features(x)[:, 1:]  # (1, 196, 384)
    assert torch.allclose(ours.flatten(2).transpose(1, 2), theirs, atol=1e-5)


def test_masked_tokens_are_dropped_not_zeroed():
    enc = build_vit("vit_small_patch16_224", **TINY).eval()
    imgs = torch.randn(2, 3, 32, 32)
    x, grid = embed_tokens(enc, imgs)
    g = torch.Generator().manual_seed(0)
    vis, mask, _ = random_masking(x, 0.75, grid, generator=g)
    out = encode_tokens(enc, prepend_cls(enc, vis))
    assert out.shape == (2, 1 + 4, 32)  # 16 patches, 4 kept, plus [CLS]
    # changing the pixels of masked patches cannot change the output
    pix_mask = mask.view(2, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3)  # (B, 1, H, W)
    imgs2 = imgs + 10 * pix_mask * torch.randn_like(imgs)
    x2, _ = embed_tokens(enc, imgs2)
    vis2, mask2, _ = random_masking(x2, 0.75, grid, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, mask2)
    assert torch.allclose(encode_tokens(enc, prepend_cls(enc, vis2)), out, atol=1e-6)


def test_non_square_feature_extraction_interpolates_pos_embed():
    enc = build_vit("vit_small_patch16_224", **TINY).eval()
    feats = extract_patch_features(enc, torch.randn(1, 3, 48, 88))  # 480x880 in miniature
    assert feats.shape == (1, 32, 6, 11)
    rec = extract_patch_features(enc, torch.randn(1, 3, 48, 88), pos_mode="recompute")
    assert rec.shape == (1, 32, 6, 11)
    with pytest.raises(ValueError, match="not divisible"):
        extract_patch_features(enc, torch.randn(1, 3, 50, 88))


@pytest.mark.slow
def test_vit_s8_at_480x880():
    enc = build_vit("vit_small_patch8_224").eval()
    with torch.no_grad():
        assert extract_patch_features(enc, torch.randn(1, 3, 480, 880)).shape == (1, 384, 60, 110)


def test_attention_uses_sdpa(monkeypatch):
    enc = build_vit("vit_small_patch16_224", **TINY).eval()
    assert all(blk.attn.fused_attn for blk in enc.blocks)
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    extract_patch_features(enc, torch.randn(1, 3, 32, 32))
    assert len(calls) == 2  # one per block


def test_cls_attention_maps_are_a_distribution():
    enc = build_vit("vit_small_patch16_224", **TINY).eval()
    attn = cls_attention_maps(enc, torch.randn(2, 3, 32, 40))
    assert attn.shape == (2, 2, 4, 5)
    assert bool((attn >= 0).all()) and bool((attn.sum((-2, -1)) <= 1 + 1e-5).all())


def test_rejects_models_without_cls():
    with pytest.raises(ValueError, match="CLS"):
        build_vit("vit_small_patch16_224", class_token=False, global_pool="avg", **TINY)
