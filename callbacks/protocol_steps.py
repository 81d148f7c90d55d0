"""The protocol-dependent steps of an evaluation: frames to network input, first-frame labels, decoding.

Pure functions of (data, ``Protocol``); the benchmark loops in ``propagation_eval`` / ``vip_jhmdb_eval``
call them, so each rule of ``callbacks.protocols`` lives in exactly one place.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.cv2_resize import resize_linear_uint8
from callbacks.label_propagation import (
    downsample_labels,
    labels_onehot,
    pil_nearest_resize,
    predict_mask,
    predict_mask_resized,
)
from callbacks.protocols import Protocol


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


def resize_id_map(
    ids: np.ndarray | Tensor, size: tuple[int, int], protocol: Protocol, rule: str | None = None
) -> Tensor:
    """Nearest resize of an integer id map (H, W) -> (size) int64; ``rule`` default ``protocol.label_resize``.

    ``pil``: PIL NEAREST (pixel centres, PIL's accumulation); ``nearest_exact``: torch; ``cv2_nearest``:
    ``cv2.resize`` INTER_NEAREST, source index floor(i * in / out) (no half-pixel offset).
    """
    rule = rule or protocol.label_resize
    t = torch.as_tensor(np.asarray(ids).astype(np.int64))
    if tuple(t.shape) == tuple(size):
        return t
    if rule == "pil":
        return pil_nearest_resize(t, tuple(size))
    if rule == "cv2_nearest":
        (h_in, w_in), (h_out, w_out) = t.shape[-2:], size
        # OpenCV multiplies by 1 / (out / in) in double, which floors exact integers like 9.0 to 8 at times
        ys = np.minimum(np.floor(np.arange(h_out) * (1.0 / (h_out / h_in))).astype(np.int64), h_in - 1)
        xs = np.minimum(np.floor(np.arange(w_out) * (1.0 / (w_out / w_in))).astype(np.int64), w_in - 1)
        return t[torch.from_numpy(ys)][:, torch.from_numpy(xs)]
    return F.interpolate(t[None, None].float(), size=tuple(size), mode="nearest-exact")[0, 0].long()


def first_frame_labels(
    ids: np.ndarray, eval_hw: tuple[int, int], stride: int, num_labels: int, protocol: Protocol
) -> Tensor:
    """Frame-0 ids at the original size (H, W) -> (K, H_r / s, W_r / s) float labels on the feature grid.

    ``one_step`` (DINO ``read_seg``): PIL NEAREST straight from the original size to the grid, one-hot.
    ``two_step`` (legacy): nearest to the eval size, then PIL-nearest to the grid. ``bilinear`` (CRW): nearest
    to the eval size, one-hot, bilinear to the grid (soft labels; CRW's ``cv2.resize`` of the one-hot).
    """
    grid = (eval_hw[0] // stride, eval_hw[1] // stride)
    rule = protocol.first_frame_resize
    if protocol.label_downsample == "one_step":
        return labels_onehot(resize_id_map(ids, grid, protocol, rule), num_labels)
    at_eval = labels_onehot(resize_id_map(ids, eval_hw, protocol, rule), num_labels)  # (K, H_r, W_r)
    if protocol.label_downsample == "bilinear":
        return F.interpolate(at_eval[None], size=grid, mode="bilinear", align_corners=False)[0]
    return downsample_labels(at_eval, stride, soft=False)


def decode_labels(
    soft: Tensor, stride: int, eval_hw: tuple[int, int], out_hw: tuple[int, int], protocol: Protocol
) -> Tensor:
    """Soft grid labels (K, h, w) -> channel-index map (out_hw) int64, by the protocol's decoder.

    ``dino``: bilinear x stride, min-max if ``propagation.minmax_norm``, argmax, PIL NEAREST to ``out_hw``.
    ``crw``: one bilinear resize straight to ``eval_hw`` (CRW ``dump_predictions``), argmax, then nearest to
    ``out_hw`` if it differs (CRW ``convert_davis.py`` / ``eval_vip.py``).
    """
    if protocol.decode == "dino":
        return predict_mask(soft, stride, tuple(out_hw), protocol.propagation.minmax_norm)
    pred = predict_mask_resized(soft, eval_hw)
    return resize_id_map(pred.cpu(), out_hw, protocol).to(pred.device)


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
