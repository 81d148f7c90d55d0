import pytest
import torch
import torch.nn.functional as F

from lightning_modules.components.decoders import CrossAttention, SiamDecoder


def make(mode, dim=32):
    dec = SiamDecoder(encoder_dim=24, patch_size=4, grid=(3, 4), mode=mode, dim=dim, depth=2, num_heads=4)
    return dec.eval()


def embedded(dec, B=2, keep=(12, 3)):
    g = torch.Generator().manual_seed(0)
    xs = []
    for k in keep:
        latent = torch.randn(B, 1 + k, 24, generator=g)
        ids_restore = torch.stack([torch.randperm(12, generator=g) for _ in range(B)])
        xs.append(dec.embed(latent, ids_restore, (3, 4)))
    return xs


@pytest.mark.parametrize("mode", ["cross_self", "cross", "joint"])
def test_output_shape(mode):
    dec = make(mode)
    x1, x2 = embedded(dec)
    assert x1.shape == x2.shape == (2, 13, 32)
    assert dec(x1, x2).shape == (2, 12, 4 * 4 * 3)


@pytest.mark.parametrize("mode", ["cross_self", "cross", "joint"])
def test_frame2_prediction_depends_on_frame1(mode):
    dec = make(mode)
    x1, x2 = embedded(dec)
    out = dec(x1, x2)
    x1b = x1.clone()
    x1b[:, 5] += torch.randn(32)  # change one frame-1 token (not a constant: LayerNorm removes shifts)
    assert not torch.allclose(dec(x1b, x2), out, atol=1e-6)


def test_cross_decoder_treats_frame2_tokens_independently():
    """Without self-attention, each frame-2 token only sees frame 1 (why the paper finds it incoherent)."""
    dec = make("cross")
    x1, x2 = embedded(dec)
    out = dec(x1, x2)
    x2b = x2.clone()
    x2b[:, 3] += torch.randn(32)
    diff = (dec(x1, x2b) - out).abs().sum(-1)  # (B, L)
    assert diff[:, 2].gt(0).all() and torch.allclose(diff[:, [0, 1, 3, 4]], torch.zeros(2, 4), atol=1e-6)
    dec_cs = make("cross_self")
    diff_cs = (dec_cs(x1, x2b) - dec_cs(x1, x2)).abs().sum(-1)
    assert diff_cs[:, 0].gt(1e-6).all()  # self-attention spreads the change


def test_embed_places_mask_tokens_and_pos():
    dec = make("cross_self")
    latent = torch.randn(1, 1 + 2, 24)
    ids_restore = torch.tensor([[2, 3, 0, 4, 5, 6, 1, 7, 8, 9, 10, 11]])  # positions 2 and 6 were kept
    x = dec.embed(latent, ids_restore, (3, 4)) - dec.decoder_pos_embed
    proj = dec.decoder_embed(latent)
    assert torch.allclose(x[0, 0], proj[0, 0]) and torch.allclose(x[0, 1 + 2], proj[0, 1])
    assert torch.allclose(x[0, 1 + 6], proj[0, 2])
    assert torch.allclose(x[0, 1], dec.mask_token[0, 0], atol=1e-6)
    assert not dec.decoder_pos_embed.requires_grad


def test_cross_attention_matches_manual_softmax():
    ca = CrossAttention(8, 2).eval()
    x, ctx = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    q = ca.q(x).view(1, 3, 2, 4).transpose(1, 2)
    k, v = (t.view(1, 5, 2, 4).transpose(1, 2) for t in ca.kv(ctx).chunk(2, -1))
    attn = F.softmax(q @ k.transpose(-1, -2) / 2.0, -1)  # scale 1/sqrt(4)
    manual = ca.proj((attn @ v).transpose(1, 2).reshape(1, 3, 8))
    assert torch.allclose(ca(x, ctx), manual, atol=1e-6)


def test_bad_mode():
    with pytest.raises(ValueError):
        make("self")
