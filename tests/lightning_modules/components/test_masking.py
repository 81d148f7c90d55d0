import pytest
import torch

from lightning_modules.components.masking import (
    grid_keep_ids,
    num_visible,
    random_masking,
    random_patch_mask,
    upsample_mask,
)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95])
@pytest.mark.parametrize("grid", [(14, 14), (7, 5), (4, 4)])
def test_exact_kept_count(ratio, grid):
    L = grid[0] * grid[1]
    x = torch.randn(3, L, 8)
    x_vis, mask, ids_restore = random_masking(x, ratio, grid)
    keep = max(1, round((1 - ratio) * L))
    assert x_vis.shape == (3, keep, 8)
    assert torch.equal(mask.sum(1), torch.full((3,), float(L - keep)))
    assert ids_restore.shape == (3, L)


def test_vit_s16_counts():
    assert num_visible(196, 0.95) == 10  # 9.8 rounds to 10
    assert num_visible(196, 0.75) == 49
    assert num_visible(784, 0.95) == 39  # ViT-S/8: 39.2
    with pytest.raises(ValueError):
        num_visible(196, 1.0)


def test_visible_tokens_are_the_unmasked_ones_in_shuffled_order_and_restore():
    B, L, D = 2, 16, 4
    x = torch.arange(B * L, dtype=torch.float32).reshape(B, L, 1).expand(B, L, D)
    x_vis, mask, ids_restore = random_masking(x, 0.75, (4, 4))
    for b in range(B):
        kept = set(x_vis[b, :, 0].long().tolist())
        unmasked = set((torch.nonzero(mask[b] == 0).squeeze(1) + b * L).tolist())
        assert kept == unmasked
    # MAE decoder un-shuffle: visible tokens then fillers, gathered by ids_restore, give back grid order
    filler = torch.full((B, L - x_vis.shape[1], D), -1.0)
    full = torch.gather(torch.cat([x_vis, filler], 1), 1, ids_restore.unsqueeze(-1).expand(B, L, D))
    assert torch.equal(full[mask == 0], x[mask == 0])
    assert bool((full[mask == 1] == -1).all())


def test_zero_ratio_keeps_everything_in_order():
    x = torch.randn(2, 9, 3)
    x_vis, mask, ids = random_masking(x, 0.0, (3, 3))
    assert torch.equal(x_vis, x) and mask.sum() == 0 and torch.equal(ids[0], torch.arange(9))


def test_grid_pattern_checkerboard_and_2x2():
    keep = grid_keep_ids((4, 4), 0.5)
    rows, cols = keep // 4, keep % 4
    assert keep.numel() == 8 and bool(((rows + cols) % 2 == 0).all())
    assert grid_keep_ids((4, 4), 0.75).tolist() == [0, 2, 8, 10]
    x = torch.randn(3, 16, 2)
    _, mask, _ = random_masking(x, 0.5, (4, 4), pattern="grid")
    assert torch.equal(mask[0], mask[2])  # deterministic, same for every sample
    assert mask[0].view(4, 4)[0].tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError):
        grid_keep_ids((4, 4), 0.9)


def test_generator_reproducibility():
    x = torch.randn(4, 49, 8)
    a = random_masking(x, 0.9, (7, 7), generator=torch.Generator().manual_seed(3))[1]
    torch.rand(100)  # global RNG use in between must not matter
    b = random_masking(x, 0.9, (7, 7), generator=torch.Generator().manual_seed(3))[1]
    c = random_masking(x, 0.9, (7, 7), generator=torch.Generator().manual_seed(4))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # per-sample masks differ


def test_patch_mask_and_upsample():
    m = random_patch_mask(2, (4, 6), 0.75, generator=torch.Generator().manual_seed(0))
    assert m.shape == (2, 1, 4, 6) and torch.equal(m.sum((1, 2, 3)), torch.tensor([18.0, 18.0]))
    up = upsample_mask(m, (8, 12))
    assert up.shape == (2, 1, 8, 12) and torch.equal(up[:, :, ::2, ::2], m)
    with pytest.raises(ValueError):
        upsample_mask(m, (9, 12))


def test_keep_rule_floor_is_mae_int_and_round_is_optional():
    assert num_visible(196, 0.95, "floor") == 9  # MAE: int(196 * (1 - 0.95)) = int(9.8)
    assert num_visible(784, 0.95, "floor") == 39  # ViT-S/8: int(39.2)
    assert num_visible(196, 0.75, "floor") == num_visible(196, 0.75, "round") == 49
    assert num_visible(196, 0.5, "floor") == 98
    assert num_visible(4, 0.9, "floor") == 1  # never zero tokens
    with pytest.raises(ValueError, match="keep rule"):
        num_visible(196, 0.5, "ceil")
    x = torch.randn(2, 196, 4)
    assert random_masking(x, 0.95, (14, 14), keep_rule="floor")[0].shape == (2, 9, 4)
    assert random_masking(x, 0.95, (14, 14), keep_rule="round")[0].shape == (2, 10, 4)


def test_siammae_keeps_nine_of_196_by_default():
    from lightning_modules.siammae import SiamMAE

    m = SiamMAE(embed_dim=32, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)
    x = torch.randn(1, 196, 32)
    assert m.hparams.keep_rule == "floor" and m.random_masking(x, 0.95, (14, 14))[0].shape == (1, 9, 32)
    m.hparams.keep_rule = "round"
    assert m.random_masking(x, 0.95, (14, 14))[0].shape == (1, 10, 32)
