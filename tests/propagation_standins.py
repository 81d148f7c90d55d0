"""Test-only stand-ins: a tiny VideoSSLModule and (until callbacks.metrics lands) minimal metrics."""

import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import VideoSSLModule


class PooledPixels(VideoSSLModule):
    """extract_features = avg-pooled pixels + a tiny conv (so it has parameters and a train/eval mode)."""

    def __init__(self, stride: int = 8):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(3, 8, 1)
        with torch.no_grad():  # deterministic weights, independent of the global RNG (DDP equality test)
            g = torch.Generator().manual_seed(0)
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g))
            self.proj.bias.zero_()
        self.drop = nn.Dropout(0.5)
        self.modes_seen: list[bool] = []

    @property
    def feature_stride(self) -> int:
        return self.stride

    def extract_features(self, frames):
        self.modes_seen.append(self.training)
        x = F.avg_pool2d(frames, self.stride)
        return torch.cat([x, self.drop(self.proj(x))], dim=1)

    def training_step(self, batch, batch_idx):
        return self.proj.weight.sum() * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def install_metric_standins() -> None:
    """Register a minimal ``callbacks.metrics`` if the real one is not there yet (J only, F := J)."""
    try:
        import callbacks.metrics  # noqa: F401

        return
    except ImportError:
        pass

    class DavisJF:
        def __init__(self, sync_on_compute=True):
            self.rows = []

        def update(self, pred, gt, num_objects, name):
            pred, gt = pred[1:-1].numpy(), gt[1:-1].numpy()
            for o in range(1, num_objects + 1):
                p, g = pred == o, gt == o
                inter, union = (p & g).sum((1, 2)), (p | g).sum((1, 2))
                j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
                self.rows.append(dict(sequence=name, object=o, J_mean=j.mean(), F_mean=j.mean()))

        def per_object(self):
            return self.rows

    mod = types.ModuleType("callbacks.metrics")
    mod.DavisJF = DavisJF
    sys.modules["callbacks.metrics"] = mod


install_metric_standins()
