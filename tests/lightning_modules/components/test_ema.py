"""EMA target maths (style rule 8: the torchgeo BYOL trap)."""

import pytest
import torch
from torch import nn

from lightning_modules.components.ema import make_ema_copy, update_ema


def net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))


def test_copy_is_equal_frozen_and_shares_no_storage():
    online = net()
    target = make_ema_copy(online)
    for (n, p), q in zip(online.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
        assert p.data_ptr() != q.data_ptr(), n
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())


def test_one_update_moves_target_by_exactly_one_minus_m_times_difference():
    torch.manual_seed(0)
    online = net()
    target = make_ema_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in target.parameters()]
    m = 0.9
    update_ema(target, online, m)
    for t0, t1, o in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t1 - t0, (1 - m) * (o - t0))


@pytest.mark.parametrize("policy", ["ema", "copy", "keep"])
def test_buffer_policies(policy):
    online = net()
    target = make_ema_copy(online)
    online[1].running_mean.fill_(1.0)
    online[1].num_batches_tracked.fill_(7)
    update_ema(target, online, 0.75, buffers=policy)
    expected = {"ema": 0.25, "copy": 1.0, "keep": 0.0}[policy]
    torch.testing.assert_close(target[1].running_mean, torch.full((4,), expected))
    assert int(target[1].num_batches_tracked) == (0 if policy == "keep" else 7)


def test_momentum_bounds_and_no_grad():
    online = net()
    target = make_ema_copy(online)
    with pytest.raises(ValueError, match="1.5"):
        update_ema(target, online, 1.5)
    update_ema(target, online, 0.5)
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())
