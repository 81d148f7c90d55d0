"""Paired augmentation (SiamMAE Table 3a): ONE random resized crop and ONE flip shared by both frames.

Sharing the crop keeps the two frames geometrically aligned, so the only change between them is the
motion in the video, which is what the model must learn to predict. All random parameters come from a
``torch.Generator`` passed in, so a sample is a pure function of its seed (exact resume).
"""

import math

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` INCLUSIVE."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def sample_crop(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Crop box ``(top, left, h, w)`` as in torchvision ``RandomResizedCrop.get_params``, from ``g``.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); after ``attempts`` misses, a centre crop
    at the nearest valid aspect ratio.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * _uniform(g, *scale)
        aspect = math.exp(_uniform(g, *log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(g, 0, height - h), _randint(g, 0, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PairedTransform:
    """Same crop, flip and (optional) colour jitter for every frame of a clip; uint8 in, uint8 out.

    ImageNet normalisation is NOT done here: the data module does it on the device
    (``normalize_frames`` in ``on_after_batch_transfer``), so workers hand over 4x fewer bytes and do no
    float arithmetic unless colour jitter is on.

    Args:
        image_size: output side (square), 224 in SiamMAE.
        crop_scale: area fraction range of the random resized crop (SiamMAE: 0.5-1).
        crop_ratio: aspect ratio range of the crop (torchvision default 3/4-4/3).
        hflip: flip horizontally with probability 0.5.
        color_jitter: strength s of brightness/contrast/saturation jitter (factors ~ U[1-s, 1+s]); 0 = off
            (SiamMAE's default). The jitter is also shared by both frames.
    """

    def __init__(
        self,
        image_size: int = 224,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        color_jitter: float = 0.0,
    ) -> None:
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        if not 0 <= color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        self.image_size, self.crop_scale, self.crop_ratio = image_size, crop_scale, crop_ratio
        self.hflip, self.color_jitter = hflip, color_jitter

    def draw(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        """All random parameters of one clip, in draw order, as float64 (8,).

        ``top, left, h, w, flip, brightness, contrast, saturation`` (jitter factors 1 when off).
        """
        top, left, h, w = sample_crop(height, width, self.crop_scale, self.crop_ratio, g)
        flip = float(self.hflip and float(torch.rand((), generator=g)) < 0.5)
        s = self.color_jitter
        jitter = [_uniform(g, 1 - s, 1 + s) for _ in range(3)] if s > 0 else [1.0, 1.0, 1.0]
        return torch.tensor([top, left, h, w, flip, *jitter], dtype=torch.float64)

    def __call__(self, frames: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Augment a clip.

        Args:
            frames: uint8 (T, H, W, 3) RGB (a numpy array is accepted too).
            g: generator for all random parameters.

        Returns:
            uint8 (T, 3, S, S), S = ``image_size``.
        """
        x = torch.as_tensor(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8, channels-last strides
        return self.apply(x, self.draw(x.shape[-2], x.shape[-1], g))

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crop, resize, flip, jitter uint8 (T, 3, H, W) with ``draw``'s parameters -> uint8 (T, 3, S, S).

        On CPU the resize is torch's uint8 antialiased bilinear kernel (integer arithmetic); elsewhere it is
        the float kernel, rounded (they differ by at most one level, see README "Training data at scale").
        """
        top, left, h, w = (int(v) for v in params[:4])
        x = x[..., top : top + h, left : left + w]  # (T, 3, h, w)
        size = (self.image_size, self.image_size)
        if x.device.type == "cpu":
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        else:  # the uint8 kernel is CPU-only
            x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if params[4] > 0:
            x = x.flip(-1)
        if self.color_jitter > 0:
            x = self._jitter(x.float().div_(255), params[5:8].tolist())
            x = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        # Contiguous (T, 3, S, S): the permute leaves channels-last strides, which collate keeps in the main
        # process but not in workers.
        return x.contiguous()

    def _jitter(self, x: torch.Tensor, factors: list[float]) -> torch.Tensor:
        """Brightness, contrast, saturation with one factor each for the whole clip (T, 3, S, S) in [0, 1]."""
        brightness, contrast, saturation = factors
        x = x * brightness
        mean = _luma(x).mean(dim=(-2, -1), keepdim=True)  # (T, 1, 1, 1)
        x = (x - mean) * contrast + mean
        gray = _luma(x)
        return (x - gray) * saturation + gray


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (..., 3, H, W) -> float32 ImageNet-normalised, on the frames' device."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=frames.device).view(3, 1, 1)
    return (frames.float().div_(255) - mean) / std


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB (T, 3, H, W) -> (T, 1, H, W)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
