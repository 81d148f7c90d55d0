"""From frames on disk to L2-normalised dense features, by a protocol's pre-processing rules.

``DenseFeatures`` names the contract every feature model meets (corrmae systems, timm backbones, raw pixels,
the official VideoMAC encoders): ``extract_features(frames (B, 3, H, W)) -> (B, D, H/s, W/s)`` with
``s = feature_stride``.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol as TypingProtocol
from typing import runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.evaluation.cv2_resize import resize_linear_uint8
from callbacks.evaluation.protocols import get_protocol
from callbacks.evaluation.settings import Protocol


@runtime_checkable
class DenseFeatures(TypingProtocol):
    """A dense feature model: normalised frames (B, 3, H, W) -> features (B, D, H/s, W/s), s its stride."""

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell."""
        ...

    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised, H and W divisible by the stride -> (B, D, H/s, W/s).

        The features are not yet L2-normalised.
        """
        ...


def preprocess_frames(
    frames: np.ndarray, size: tuple[int, int], protocol: Protocol, device: torch.device | str = "cpu"
) -> Tensor:
    """RGB uint8 (B, H, W, 3) -> normalised float (B, 3, *size) by the protocol's resize rule and constants.

    ``cv2_uint8`` (DINO): resize the uint8 frame like ``cv2.resize`` INTER_LINEAR, then / 255. ``float``
    (CRW, legacy): / 255 first, then bilinear (align_corners=False), the sampling of cv2 on float32.
    """
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (B, H, W, 3), got {frames.dtype} {frames.shape}")
    if protocol.frame_resize == "cv2_uint8" and tuple(frames.shape[1:3]) != tuple(size):
        frames = np.stack([resize_linear_uint8(f, size) for f in frames])
    x = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    mean = torch.tensor(protocol.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(protocol.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def video_features(
    model: DenseFeatures,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    protocol: Protocol | None = None,
) -> Tensor:
    """Features of every frame, L2-normalised over D: (T, D, H/s, W/s) on ``device``, s = the model's stride.

    Frames are resized and normalised by ``protocol`` (default: the legacy float path, ImageNet constants).
    """
    protocol = protocol or get_protocol("legacy", "davis")
    stride, chunks = model.feature_stride, []
    for start in range(0, num_frames, batch_frames):
        idx = range(start, min(start + batch_frames, num_frames))
        x = preprocess_frames(np.stack([read_frame(i) for i in idx]), size, protocol, device)  # (b, 3, H, W)
        f = model.extract_features(x).float()  # (b, D, h, w)
        if tuple(f.shape[-2:]) != (size[0] // stride, size[1] // stride):
            raise ValueError(f"features {tuple(f.shape)} do not match size {size} / stride {stride}")
        chunks.append(F.normalize(f, dim=1))
    return torch.cat(chunks)  # (T, D, h, w)


@torch.no_grad()
def iter_features(
    model: DenseFeatures,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    protocol: Protocol | None = None,
) -> Iterator[Tensor]:
    """``video_features`` one frame at a time, (D, h, w) each: at most ``batch_frames`` frames are held."""
    for start in range(0, num_frames, batch_frames):
        count = min(batch_frames, num_frames - start)
        read = lambda i, s=start: read_frame(s + i)  # noqa: E731
        yield from video_features(model, read, count, size, device, batch_frames, protocol)


@contextmanager
def pos_embed_rule(module: torch.nn.Module, rule: str) -> Iterator[None]:
    """Evaluate ``module`` with the protocol's position-embedding rule, restoring its own setting after.

    Acts on modules with a ``pos_embed_resize`` attribute (SiamMAE, ``TimmFeatures`` ViTs): protocol ``dino``
    -> ``dino`` (``interpolate_pos_encoding``), ``size`` -> ``interpolate`` (bicubic to the target size);
    ``model`` and modules without position embeddings are left alone.
    """
    if rule == "model" or not hasattr(module, "pos_embed_resize"):
        yield
        return
    own = module.pos_embed_resize
    module.pos_embed_resize = {"dino": "dino", "size": "interpolate"}[rule]
    try:
        yield
    finally:
        module.pos_embed_resize = own
