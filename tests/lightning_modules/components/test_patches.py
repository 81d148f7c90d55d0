import pytest
import torch

from lightning_modules.components.patches import patchify, unpatchify


def test_round_trip_non_square():
    imgs = torch.randn(2, 3, 16, 24)
    x = patchify(imgs, 8)
    assert x.shape == (2, 6, 8 * 8 * 3)
    assert torch.equal(unpatchify(x, 8, (2, 3)), imgs)


def test_mae_pixel_order_and_grid_order():
    # patch (row 0, col 1) holds pixels [0:4, 4:8]; inside a patch pixels are flattened as (p, p, C)
    imgs = torch.arange(2 * 4 * 8, dtype=torch.float32).reshape(1, 2, 4, 8)
    x = patchify(imgs, 4)  # (1, 2, 32)
    expected = imgs[0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1)
    assert torch.equal(x[0, 1], expected)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 3, 10, 16), 8)
    with pytest.raises(ValueError, match="does not match"):
        unpatchify(torch.zeros(1, 5, 192), 8, (2, 3))
