"""Test-only stand-in: a tiny VideoSSLModule with a deterministic dense feature map."""

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
