"""DAVIS region (J) and boundary (F) measures, as the official davis2017-evaluation toolkit computes them.

Pure numpy functions (torch tensors are accepted and converted). Semantics, per `davis2017/metrics.py` and
`utils.py` (read at commit ac7c43f): J = |P & G| / |P | G| with an empty union scoring 1; F = boundary
F-measure with the `seg2bmap` boundary rule and a disk tolerance of radius ceil(bound_th * image diagonal);
per-object statistics mean / recall (> 0.5) / decay over the evaluated frames. The toolkit dilates with
`cv2.dilate(., skimage.morphology.disk(r))`; here "inside the dilated map" is decided by an exact integer
nearest-neighbour distance (KD-tree) <= r, which is the same set (disk(r) = {dx^2 + dy^2 <= r^2}) and needs
neither OpenCV nor scikit-image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

STAT_NAMES = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def db_eval_iou(annotation, segmentation, void_pixels=None) -> np.ndarray | float:
    """Region similarity J of binary masks (H, W) or stacks (T, H, W); empty union -> 1.

    Void pixels (optional, same shape) are removed from both intersection and union (the toolkit uses them
    in unsupervised mode only; semi-supervised passes None).
    """
    gt, seg = _np(annotation).astype(bool), _np(segmentation).astype(bool)
    if gt.shape != seg.shape:
        raise ValueError(f"annotation {gt.shape} and segmentation {seg.shape} shapes differ")
    keep = np.ones_like(gt) if void_pixels is None else ~_np(void_pixels).astype(bool)
    inters = np.sum(gt & seg & keep, axis=(-2, -1))
    union = np.sum((gt | seg) & keep, axis=(-2, -1))
    j = np.divide(inters, union, out=np.ones(np.shape(union), dtype=np.float64), where=union != 0)
    return float(j) if j.ndim == 0 else j


def seg2bmap(seg) -> np.ndarray:
    """One-pixel-wide boundary map (H, W) bool of a binary mask, the toolkit's rule.

    A pixel is a boundary pixel iff it differs from its east, south or south-east neighbour; in the last row
    only the east neighbour counts, in the last column only the south one, the bottom-right pixel is never a
    boundary, and the image border itself is not a boundary.
    """
    seg = _np(seg).astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _matched(points: np.ndarray, reference: np.ndarray, radius: float) -> int:
    """How many `points` (n, 2) lie within Euclidean distance `radius` of some `reference` point (m, 2)."""
    if len(points) == 0 or len(reference) == 0:
        return 0
    dist, _ = cKDTree(reference).query(points, k=1, distance_upper_bound=radius + 0.5)
    # Distances are square roots of integers, so `<= radius` is exact for an integer radius.
    return int(np.sum(dist <= radius))


def f_measure(foreground_mask, gt_mask, void_pixels=None, bound_th: float = 0.008) -> float:
    """Boundary F-measure of one frame's binary masks (H, W), as davis2017-evaluation's `f_measure`."""
    fg, gt = _np(foreground_mask).astype(bool), _np(gt_mask).astype(bool)
    if fg.shape != gt.shape:
        raise ValueError(f"segmentation {fg.shape} and annotation {gt.shape} shapes differ")
    if void_pixels is not None:
        keep = ~_np(void_pixels).astype(bool)
        fg, gt = fg & keep, gt & keep
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*fg.shape))
    fg_b, gt_b = np.argwhere(seg2bmap(fg)), np.argwhere(seg2bmap(gt))  # (n, 2) boundary pixels
    n_fg, n_gt = len(fg_b), len(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = _matched(fg_b, gt_b, bound_pix) / n_fg  # predicted boundary near the GT boundary
        recall = _matched(gt_b, fg_b, bound_pix) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def db_eval_boundary(
    annotation, segmentation, void_pixels=None, bound_th: float = 0.008
) -> np.ndarray | float:
    """Boundary measure F of masks (H, W) or stacks (T, H, W); returns a float or a (T,) array."""
    gt, seg = _np(annotation), _np(segmentation)
    if gt.ndim == 2:
        return f_measure(seg, gt, void_pixels, bound_th)
    voids = [None] * len(gt) if void_pixels is None else _np(void_pixels)
    return np.array([f_measure(s, g, v, bound_th) for s, g, v in zip(seg, gt, voids)], dtype=np.float64)


def db_statistics(per_frame) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay of a per-frame measure (n,), nan-aware as the toolkit.

    Decay = mean of the first quarter minus mean of the last quarter, with the toolkit's bin edges
    round(linspace(1, n, 5) + 1e-10) - 1 (inclusive). The toolkit casts the edges to uint8, which wraps for
    n > 256; we keep int64 (identical for every DAVIS sequence, all shorter than 256 frames).
    """
    x = _np(per_frame).astype(np.float64)
    mean = float(np.nanmean(x))
    recall = float(np.nanmean(x > 0.5))
    ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.int64)
    bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


class SequenceJF:
    """``DavisJF.update`` of one sequence, fed one evaluated frame at a time (same numbers, bit for bit).

    Per object it keeps one J and one F value per frame; ``rows`` turns them into the per-object mean /
    recall / decay rows of ``DavisJF.per_object``.
    """

    def __init__(self, sequence: str, num_objects: int, bound_th: float = 0.008):
        self.sequence, self.num_objects, self.bound_th = sequence, num_objects, bound_th
        self.j: list[list[float]] = [[] for _ in range(num_objects)]
        self.f: list[list[float]] = [[] for _ in range(num_objects)]

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one frame: pred, gt (H, W) object ids."""
        if pred.shape != gt.shape:
            raise ValueError(f"{self.sequence}: pred {pred.shape} and gt {gt.shape} differ")
        if pred.max(initial=0) > self.num_objects:
            raise ValueError(f"{self.sequence}: predicted id {pred.max()} > num_objects {self.num_objects}")
        for i, obj in enumerate(range(1, self.num_objects + 1)):
            g, p = gt == obj, pred == obj
            self.j[i].append(float(db_eval_iou(g, p)))
            self.f[i].append(float(db_eval_boundary(g, p, bound_th=self.bound_th)))

    def rows(self) -> list[dict]:
        """``{sequence, object, J_mean, J_recall, J_decay, F_mean, F_recall, F_decay}`` per object."""
        out = []
        for i in range(self.num_objects):
            stats = [*db_statistics(np.array(self.j[i])), *db_statistics(np.array(self.f[i]))]
            out.append({"sequence": self.sequence, "object": i + 1, **dict(zip(STAT_NAMES, stats))})
        return out
