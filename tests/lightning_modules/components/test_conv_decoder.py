"""FCMAE-style conv decoder: shapes, mask-token fill, configurable depth/width."""

import torch

from lightning_modules.components.conv_decoder import ConvDecoder
from lightning_modules.components.patches import patchify


def test_output_matches_patchify_layout():
    dec = ConvDecoder(in_dim=16, decoder_dim=8, depth=2, patch_size=32)
    y = dec(torch.randn(2, 16, 2, 3), torch.zeros(2, 1, 2, 3))
    target = patchify(torch.randn(2, 3, 64, 96), 32)
    assert y.shape == target.shape == (2, 6, 32 * 32 * 3)
    assert len(dec.blocks) == 2 and dec.proj.out_channels == 8


def test_mask_token_replaces_masked_features():
    torch.manual_seed(0)
    dec = ConvDecoder(in_dim=16, decoder_dim=8, depth=1, patch_size=32)
    mask = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    x = torch.randn(1, 16, 2, 2)
    x2 = x + 5 * mask  # change encoder features only at masked cells
    torch.testing.assert_close(dec(x, mask), dec(x2, mask))
    all_masked = torch.ones(1, 1, 2, 2)
    assert torch.allclose(dec(x, all_masked), dec(torch.randn(1, 16, 2, 2), all_masked))
    # the mask token is learned: it receives gradient
    dec(x, mask).sum().backward()
    assert dec.mask_token.grad is not None and dec.mask_token.grad.abs().sum() > 0


def test_v1_blocks_without_grn():
    dec = ConvDecoder(in_dim=4, decoder_dim=8, depth=1, patch_size=32, use_grn=False)
    assert not any("grn" in n for n, _ in dec.named_parameters())
    assert dec(torch.randn(1, 4, 1, 1), None).shape == (1, 1, 3072)
