import torch

from lightning_modules.components.losses import denormalize_prediction, masked_mse, normalize_patches


def test_only_masked_patches_count():
    pred, target = torch.randn(2, 6, 12), torch.randn(2, 6, 12)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    base = masked_mse(pred, target, mask)
    changed = pred.clone()
    changed[mask == 0] += 100.0  # visible-patch predictions are irrelevant
    assert torch.allclose(masked_mse(changed, target, mask), base)
    changed[0, 0] += 1.0  # a masked one is not
    assert not torch.allclose(masked_mse(changed, target, mask), base)


def test_hand_computed_value_without_norm():
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 5.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    # patch 0: mean(1,1)=1; patch 2: mean(9,25)=17 -> (1 + 17) / 2
    assert torch.isclose(masked_mse(pred, target, mask, norm_pix=False), torch.tensor(9.0))


def test_hand_computed_value_with_norm_pix():
    target = torch.tensor([[[1.0, 3.0]]])  # mean 2, unbiased var 2 -> normalised (-1/sqrt2, 1/sqrt2)
    n = normalize_patches(target)
    assert torch.allclose(n, torch.tensor([[[-(0.5**0.5), 0.5**0.5]]]), atol=1e-5)
    loss = masked_mse(torch.zeros(1, 1, 2), target, torch.ones(1, 1))
    assert torch.isclose(loss, torch.tensor(0.5), atol=1e-5)


def test_denormalize_inverts_normalize():
    target = torch.rand(2, 4, 48)
    assert torch.allclose(denormalize_prediction(normalize_patches(target), target), target, atol=1e-4)
