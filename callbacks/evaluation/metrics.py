"""Benchmark metrics as torchmetrics Metrics (DDP-reducible): DAVIS J&F, VIP mIoU, JHMDB PCK.

Each state reduces exactly across ranks: DAVIS keeps one row of per-object statistics per object (gathered,
then sorted by (sequence, object) so the pooled mean is computed in the same order on any world size), VIP
sums an integer confusion matrix, JHMDB sums integer hit/total counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from callbacks.evaluation.davis_measures import STAT_NAMES, db_eval_boundary, db_eval_iou, db_statistics

_NAME_BYTES = 128  # sequence names travel between ranks as fixed-width utf-8 byte rows


def _encode(name: str) -> Tensor:
    raw = name.encode("utf-8")
    if len(raw) > _NAME_BYTES:
        raise ValueError(f"sequence name longer than {_NAME_BYTES} bytes: {name!r}")
    return torch.tensor(list(raw) + [0] * (_NAME_BYTES - len(raw)), dtype=torch.uint8)


def _decode(row: Tensor) -> str:
    return bytes(row.tolist()).rstrip(b"\0").decode("utf-8")


class DavisJF(Metric):
    """DAVIS-2017 semi-supervised J&F, pooled over all objects of all sequences (davis2017-evaluation).

    `update` scores one sequence: frames 1 .. T-2 (first and last excluded), objects 1..num_objects, J and F
    per frame, then mean / recall / decay per object. `compute` averages each statistic over all objects
    (not over sequences) and J&F-mean = (J-mean + F-mean) / 2. A (sequence, object) seen twice (e.g. a
    padded distributed sampler) counts once.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, bound_th: float = 0.008, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bound_th = bound_th
        self.add_state("stats", default=[], dist_reduce_fx="cat")  # (n_obj, 6) float64
        self.add_state("names", default=[], dist_reduce_fx="cat")  # (n_obj, _NAME_BYTES) uint8
        self.add_state("objects", default=[], dist_reduce_fx="cat")  # (n_obj,) int64

    def update(self, pred: Tensor, gt: Tensor, num_objects: int, sequence: str) -> None:
        """Score one sequence: pred, gt (T, H, W) integer object ids (0 = background, void already 0)."""
        pred_np, gt_np = np.asarray(torch.as_tensor(pred).cpu()), np.asarray(torch.as_tensor(gt).cpu())
        if pred_np.shape != gt_np.shape or pred_np.ndim != 3:
            raise ValueError(f"{sequence}: pred {pred_np.shape} and gt {gt_np.shape} must both be (T, H, W)")
        if len(gt_np) < 3:
            raise ValueError(
                f"{sequence}: needs >= 3 frames (first and last are not evaluated), got {len(gt_np)}"
            )
        if pred_np[1:-1].max(initial=0) > num_objects:
            raise ValueError(f"{sequence}: predicted id {pred_np[1:-1].max()} > num_objects {num_objects}")
        rows = []
        for obj in range(1, num_objects + 1):
            g, p = gt_np[1:-1] == obj, pred_np[1:-1] == obj  # (T-2, H, W)
            j = db_eval_iou(g, p)
            f = db_eval_boundary(g, p, bound_th=self.bound_th)
            rows.append([*db_statistics(j), *db_statistics(f)])
        self.stats.append(torch.tensor(rows, dtype=torch.float64, device=self.device).reshape(-1, 6))
        self.names.append(_encode(sequence).to(self.device).expand(num_objects, -1).clone())
        self.objects.append(torch.arange(1, num_objects + 1, device=self.device))

    def per_object(self) -> list[dict]:
        """Rows {sequence, object, J_mean, J_recall, J_decay, F_mean, F_recall, F_decay}, sorted, unique."""
        if isinstance(self.stats, list) and not self.stats:
            return []
        # Lists locally, single tensors after a DDP sync (torchmetrics cats list states).
        stats, names, objects = dim_zero_cat(self.stats), dim_zero_cat(self.names), dim_zero_cat(self.objects)
        rows = {}
        for s, n, o in zip(stats.tolist(), names, objects.tolist()):
            rows.setdefault((_decode(n), o), s)
        return [{"sequence": k[0], "object": k[1], **dict(zip(STAT_NAMES, rows[k]))} for k in sorted(rows)]

    def compute(self) -> dict[str, Tensor]:
        """JF, J, F (means) and J_recall, J_decay, F_recall, F_decay over all objects (float64)."""
        rows = self.per_object()
        if not rows:
            raise ValueError("DavisJF.compute() called before any update()")
        table = np.array([[r[k] for k in STAT_NAMES] for r in rows], dtype=np.float64)  # (n_obj, 6)
        means = dict(zip(STAT_NAMES, table.mean(axis=0)))
        out = {k.replace("_mean", ""): v for k, v in means.items()}
        out["JF"] = (out["J"] + out["F"]) / 2
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def confusion_iou(hist: Tensor) -> Tensor:
    """Per-class IoU (C,) of a (C, C) confusion matrix hist[gt, pred]; NaN where the union is empty."""
    hist = hist.double()
    inter = hist.diagonal()
    return inter / (hist.sum(0) + hist.sum(1) - inter)  # 0/0 -> NaN for absent classes


class ConfusionMIoU(Metric):
    """VIP part segmentation mIoU: one confusion matrix over all frames, nanmean over classes (CRW/UVC).

    GT values outside [0, num_classes) (e.g. 255) are ignored; a class absent from GT and prediction has
    zero union and is left out of the mean; one predicted but absent from GT scores 0.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int = 20, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state(
            "hist", default=torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, pred: Tensor, gt: Tensor) -> None:
        """Accumulate hist[gt, pred] over pixels: pred, gt integer maps of the same shape."""
        pred, gt = (
            torch.as_tensor(pred, device=self.device).long(),
            torch.as_tensor(gt, device=self.device).long(),
        )
        if pred.shape != gt.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} shapes differ")
        valid = (gt >= 0) & (gt < self.num_classes)
        p = pred[valid]
        if p.numel() and (p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(
                f"predicted class ids must lie in [0, {self.num_classes}), got [{p.min()}, {p.max()}]"
            )
        idx = gt[valid] * self.num_classes + p
        self.hist += torch.bincount(idx, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def compute(self) -> dict[str, Tensor]:
        """{"mIoU": nanmean IoU, "IoU": (num_classes,) per class, NaN where the union is empty}."""
        iou = confusion_iou(self.hist)
        return {"mIoU": torch.nanmean(iou), "IoU": iou}


class PCK(Metric):
    """JHMDB keypoint PCK, the UVC/CRW `eval_pck.py` definition.

    A joint is scored in frame f >= 1 (frame 0 is the given annotation) iff it is visible, by default iff its
    predicted x >= 0 (a propagated heatmap that vanished is excluded, not counted wrong). The tolerance scale
    is 0.6 x the diagonal of the tight box around that frame's GT joints that are visible. PCK(alpha) is the
    mean over joints of 100 * #(error / scale <= alpha) / #scored (macro average).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        thresholds: Sequence[float] = (0.1, 0.2),
        num_joints: int = 15,
        skip_first: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds, self.num_joints, self.skip_first = tuple(thresholds), num_joints, skip_first
        zeros = torch.zeros(len(self.thresholds), num_joints, dtype=torch.int64)
        self.add_state("hits", default=zeros, dist_reduce_fx="sum")  # (A, J)
        self.add_state(
            "total", default=torch.zeros(num_joints, dtype=torch.int64), dist_reduce_fx="sum"
        )  # (J,)

    def update(self, pred: Tensor, gt: Tensor, visible: Tensor | None = None) -> None:
        """pred, gt (T, J, 2) (x, y) original pixels; visible (T, J) bool, default pred x >= 0."""
        pred, gt = torch.as_tensor(pred).double().cpu(), torch.as_tensor(gt).double().cpu()
        if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[1] != self.num_joints:
            raise ValueError(
                f"pred {tuple(pred.shape)} / gt {tuple(gt.shape)} must be (T, {self.num_joints}, 2)"
            )
        vis = pred[..., 0] >= 0 if visible is None else torch.as_tensor(visible).bool().cpu()  # (T, J)
        lo = torch.where(vis[..., None], gt, torch.full_like(gt, math.inf)).amin(1)  # (T, 2)
        hi = torch.where(vis[..., None], gt, torch.full_like(gt, -math.inf)).amax(1)  # (T, 2)
        scale = 0.6 * (hi - lo).norm(dim=-1)  # (T,), inf/nan only in frames without visible joints
        err = (pred - gt).norm(dim=-1) / scale[:, None]  # (T, J)
        if self.skip_first:
            vis = vis.clone()
            vis[0] = False
        thr = torch.tensor(self.thresholds, dtype=torch.float64)
        hits = (err[None] <= thr[:, None, None]) & vis[None]  # (A, T, J); NaN compares False like numpy
        self.hits += hits.sum(1).to(self.hits.device)
        self.total += vis.sum(0).to(self.total.device)

    def compute(self) -> dict[str, Tensor]:
        """{"PCK@<alpha>": macro PCK in percent for each threshold, "per_joint": (A, J)}."""
        per_joint = 100.0 * self.hits.double() / self.total.double()  # NaN for never-scored joints
        out = {f"PCK@{a}": torch.nanmean(per_joint[i]) for i, a in enumerate(self.thresholds)}
        return {**out, "per_joint": per_joint}
