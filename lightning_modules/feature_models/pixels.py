"""The no-learning baseline: raw-pixel patches as features."""

import torch.nn.functional as F
from torch import Tensor, nn


class PixelFeatures(nn.Module):
    """Raw-pixel patch features: each p x p patch flattened to a 3*p*p vector (stride p)."""

    def __init__(self, patch_size: int = 8):
        super().__init__()
        self.patch_size = patch_size

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell."""
        return self.patch_size

    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 3*p*p, H/p, W/p)."""
        b, _, h, w = frames.shape
        p = self.patch_size
        cols = F.unfold(frames, kernel_size=p, stride=p)  # (B, 3*p*p, h*w)
        return cols.reshape(b, -1, h // p, w // p)  # (B, 3*p*p, h, w)
