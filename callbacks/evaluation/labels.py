"""Label maps between pixels and the feature grid: one-hot encoding, nearest resizes, decoding to ids.

Pure functions of tensors and a ``Protocol``. The one PIL NEAREST implementation is ``pil_nearest_resize``
(bit-exact, PIL's float accumulation); ``resize_id_map`` also offers the two other nearest rules a protocol
may name (``nearest_exact``: torch's closed form, the legacy protocol; ``cv2_nearest``: OpenCV's).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.evaluation.settings import Protocol


def labels_onehot(mask: Tensor, num_labels: int | None = None) -> Tensor:
    """Integer label map (H, W) -> float one-hot (K, H, W), K = num_labels or max id + 1 (DINO)."""
    num = int(mask.max()) + 1 if num_labels is None else num_labels
    if mask.min() < 0 or mask.max() >= num:
        raise ValueError(f"label ids must lie in [0, {num}), got [{int(mask.min())}, {int(mask.max())}]")
    return F.one_hot(mask.long(), num).permute(2, 0, 1).float()  # (K, H, W)


def pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for PIL's NEAREST resize along one axis, bit-exact.

    PIL walks the output with a float64 accumulator x = s/2, s/2 + s, ... (s = n_in / n_out) and takes
    floor(x); the closed form floor((i + 0.5) * s) (torch "nearest-exact") differs on a few columns,
    e.g. one of 854 for DINO's 832 -> 854 upsampling, so the accumulation is reproduced (numpy's cumsum is
    sequential).
    """
    steps = np.full(n_out, n_in / n_out)
    steps[0] *= 0.5
    return np.minimum(np.floor(np.cumsum(steps)).astype(np.int64), n_in - 1)


def pil_nearest_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize the last two dims of x (..., H, W) to `size` like PIL NEAREST (any dtype, any device)."""
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], size
    ys = torch.from_numpy(pil_nearest_index(h_in, h_out)).to(x.device)
    xs = torch.from_numpy(pil_nearest_index(w_in, w_out)).to(x.device)
    return x.index_select(-2, ys).index_select(-1, xs)


def downsample_labels(mask_onehot: Tensor, stride: int, soft: bool = False) -> Tensor:
    """First-frame labels (K, H, W) at pixel resolution -> (K, H // stride, W // stride) on the feature grid.

    Hard (DINO): PIL nearest (picks pixel s*i + s//2), so labels stay one-hot and a small object can vanish.
    Soft (CRW): bilinear, align_corners=False, like cv2.resize INTER_LINEAR.
    """
    size = (mask_onehot.shape[-2] // stride, mask_onehot.shape[-1] // stride)
    if not soft:
        return pil_nearest_resize(mask_onehot.float(), size)
    return F.interpolate(mask_onehot[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def upsample_labels(soft: Tensor, stride: int, minmax: bool) -> Tensor:
    """(K, h, w) -> (K, h*stride, w*stride) bilinear (DINO), then optional per-channel min-max (norm_mask)."""
    up = F.interpolate(soft[None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    if minmax:
        lo = up.amin(dim=(1, 2), keepdim=True)
        hi = up.amax(dim=(1, 2), keepdim=True)
        # DINO rescales channels whose max > 0; a constant channel would divide by 0 there, we leave it as is.
        scale = torch.where((hi > 0) & (hi > lo), hi - lo, torch.ones_like(hi))
        shift = torch.where((hi > 0) & (hi > lo), lo, torch.zeros_like(lo))
        up = (up - shift) / scale
    return up


def predict_mask_resized(soft: Tensor, size: tuple[int, int]) -> Tensor:
    """CRW ``dump_predictions``: one bilinear resize of the soft map (K, h, w) straight to ``size``, argmax.

    cv2.resize INTER_LINEAR on float32 samples at (i + 0.5) * in / out - 0.5 with edge clamping, which is
    ``F.interpolate(..., align_corners=False)``; no min-max normalisation (``--norm_mask`` is off by default).
    """
    up = F.interpolate(soft[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
    return up.argmax(dim=0)


def predict_mask(
    soft: Tensor, stride: int, size: tuple[int, int] | None = None, minmax: bool = True
) -> Tensor:
    """Soft grid labels (K, h, w) -> label-index map (H, W) int64: argmax, PIL-style nearest to `size`."""
    pred = upsample_labels(soft, stride, minmax).argmax(dim=0)  # (h*s, w*s)
    if size is not None and tuple(size) != tuple(pred.shape):
        pred = pil_nearest_resize(pred, tuple(size))
    return pred


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
