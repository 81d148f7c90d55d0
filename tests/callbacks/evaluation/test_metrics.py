"""Metrics against hand-computed values and the davis2017-evaluation rules; rank merging is exact."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from torchmetrics.utilities import dim_zero_cat

from callbacks.evaluation.davis_measures import (
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    f_measure,
    seg2bmap,
)
from callbacks.evaluation.jhmdb import heatmaps_from_joints, joints_from_heatmaps
from callbacks.evaluation.metrics import PCK, ConfusionMIoU, DavisJF


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# ------------------------------------------------------------------------------------------------ J
def test_iou_hand_values_and_empty_rules():
    gt, pred = box(8, 8, 2, 6, 2, 6), box(8, 8, 2, 6, 3, 7)  # 16 px each, shifted one column
    assert db_eval_iou(gt, pred) == pytest.approx(12 / 20)
    empty = np.zeros((8, 8), bool)
    assert db_eval_iou(empty, empty) == 1.0  # empty union -> 1
    assert db_eval_iou(empty, pred) == 0.0
    np.testing.assert_allclose(db_eval_iou(np.stack([gt, empty]), np.stack([pred, empty])), [0.6, 1.0])
    void = box(8, 8, 2, 6, 6, 7)  # the one column only the prediction covers
    assert db_eval_iou(gt, pred, void) == pytest.approx(12 / 16)


# ------------------------------------------------------------------------------------------------ F
def test_seg2bmap_hand_example():
    seg = box(5, 5, 1, 3, 1, 3)
    expected = np.array(
        [[1, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool
    )
    assert np.array_equal(seg2bmap(seg), expected)
    assert not seg2bmap(np.ones((5, 5), bool)).any()  # the image border is not a boundary


def test_f_measure_hand_values():
    gt, pred = box(10, 10, 1, 3, 1, 3), box(10, 10, 1, 3, 4, 6)  # boundaries 3 columns apart
    # radius 1: only the facing columns (3 of 8 boundary pixels each way) match -> P = R = F = 3/8
    assert f_measure(pred, gt, bound_th=1) == pytest.approx(3 / 8)
    assert f_measure(pred, gt, bound_th=3) == 1.0
    empty = np.zeros((10, 10), bool)
    assert f_measure(empty, empty) == 1.0
    assert f_measure(pred, empty) == 0.0  # hallucinated: P = 0, R = 1
    assert f_measure(empty, gt) == 0.0  # missed: P = 1, R = 0


def test_f_tolerance_is_ceil_of_0008_diagonal():
    """480x854: ceil(0.008 * 979.7) = 8 px; a shift of 8 keeps F = 1, a shift of 9 does not."""
    gt = box(480, 854, 100, 300, 200, 500)
    assert db_eval_boundary(gt, box(480, 854, 100, 300, 208, 508)) == 1.0
    assert db_eval_boundary(gt, box(480, 854, 100, 300, 209, 509)) < 1.0


def _disk(r):
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r**2


def _f_reference(fg, gt, r):
    """The toolkit's formulation: dilate each boundary map with disk(r), count matches."""
    fb, gb = seg2bmap(fg), seg2bmap(gt)
    p = (fb & binary_dilation(gb, _disk(r))).sum() / fb.sum()
    rc = (gb & binary_dilation(fb, _disk(r))).sum() / gb.sum()
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


@pytest.mark.parametrize("seed", range(4))
def test_f_measure_equals_disk_dilation_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    gt = binary_dilation(rng.random((60, 80)) > 0.97, _disk(3))
    pred = binary_dilation(rng.random((60, 80)) > 0.97, _disk(2))
    for r in (1, 2, 3, 5):
        assert f_measure(pred, gt, bound_th=r) == pytest.approx(_f_reference(pred, gt, r), abs=1e-12)


# ------------------------------------------------------------------------------------------------ statistics
def test_statistics_hand_values():
    m, o, d = db_statistics([1, 1, 0, 0, 1, 0.4, 0.2, 0.6])
    assert m == pytest.approx(4.2 / 8)
    assert o == pytest.approx(4 / 8)
    # bin edges round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7]: first [1, 1, 0], last [0.4, 0.2, 0.6]
    assert d == pytest.approx(2 / 3 - 0.4)


def _seq(t=6, objects=((10, 20, 10, 30),), h=40, w=50):
    gt = np.zeros((t, h, w), np.uint8)
    for i, (y0, y1, x0, x1) in enumerate(objects, start=1):
        gt[:, y0:y1, x0:x1] = i
    return gt


def test_davis_pools_objects_over_sequences_and_skips_first_last():
    a = _seq()
    b = _seq(objects=((5, 15, 5, 15), (20, 35, 20, 45)))
    pred_a = a.copy()
    pred_a[0], pred_a[-1] = 0, 0  # first and last frames are not evaluated
    pred_b = b.copy()
    pred_b[pred_b == 2] = 0  # object 2 of b is always missed: J = F = 0
    m = DavisJF(sync_on_compute=False)
    m.update(torch.from_numpy(pred_a), torch.from_numpy(a), 1, "a")
    m.update(torch.from_numpy(pred_b), torch.from_numpy(b), 2, "b")
    out = m.compute()
    assert float(out["J"]) == pytest.approx(2 / 3)  # pooled over 3 objects, not (1 + 0.5) / 2
    assert float(out["F"]) == pytest.approx(2 / 3)
    assert float(out["JF"]) == pytest.approx(2 / 3)
    assert float(out["J_recall"]) == pytest.approx(2 / 3)
    rows = m.per_object()
    assert [(r["sequence"], r["object"]) for r in rows] == [("a", 1), ("b", 1), ("b", 2)]
    assert rows[2]["J_mean"] == 0.0 and rows[2]["F_mean"] == 0.0
    with pytest.raises(ValueError, match="num_objects"):
        m.update(torch.from_numpy(b), torch.from_numpy(b), 1, "c")


def test_davis_decay_sign():
    gt = _seq(t=10)
    pred = gt.copy()
    pred[6:, 10:20, 10:20] = 0  # the object degrades in the second half
    m = DavisJF(sync_on_compute=False)
    m.update(torch.from_numpy(pred), torch.from_numpy(gt), 1, "s")
    row = m.per_object()[0]
    assert row["J_decay"] > 0 and row["J_decay"] == pytest.approx(1 - 0.5)  # bins 0 and 3: J 1 vs 0.5


def _merged(metrics, cls, **kwargs):
    """What DDP sync does to list states with dist_reduce_fx='cat': each rank's list catted, then joined."""
    out = cls(sync_on_compute=False, **kwargs)
    for name in out._defaults:
        states = [getattr(m, name) for m in metrics]
        if isinstance(states[0], list):
            setattr(out, name, [dim_zero_cat(s) for s in states if len(s)])
        else:
            setattr(out, name, sum(states))
    out._update_count = sum(m._update_count for m in metrics)
    return out


def test_davis_rank_merge_equals_single_process_exactly():
    rng = np.random.default_rng(0)
    seqs = []
    for i in range(5):
        gt = _seq(t=7, objects=((5, 20, 5, 25), (22, 38, 10, 45)))
        pred = np.where(rng.random(gt.shape) < 0.15, rng.integers(0, 3, gt.shape), gt).astype(np.uint8)
        seqs.append((f"seq{i}", pred, gt))
    single = DavisJF(sync_on_compute=False)
    ranks = [DavisJF(sync_on_compute=False), DavisJF(sync_on_compute=False)]
    for i, (name, pred, gt) in enumerate(seqs):
        single.update(torch.from_numpy(pred), torch.from_numpy(gt), 2, name)
        ranks[1 - i % 2].update(torch.from_numpy(pred), torch.from_numpy(gt), 2, name)  # other order
    a, b = single.compute(), _merged(ranks, DavisJF).compute()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ VIP
def test_confusion_miou_hand_values_and_merge():
    gt = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 3])  # the 255 pixel is ignored
    m = ConfusionMIoU(num_classes=4, sync_on_compute=False)
    m.update(pred, gt)
    out = m.compute()
    np.testing.assert_allclose(out["IoU"][:3].numpy(), [1 / 3, 2 / 3, 0.0])
    assert math.isnan(float(out["IoU"][3]))  # absent from GT and prediction
    assert float(out["mIoU"]) == pytest.approx(1 / 3)
    # global accumulation: two halves on two "ranks" give the same matrix
    r0, r1 = ConfusionMIoU(4, sync_on_compute=False), ConfusionMIoU(4, sync_on_compute=False)
    r0.update(pred[:3], gt[:3])
    r1.update(pred[3:], gt[3:])
    assert torch.equal(_merged([r0, r1], ConfusionMIoU, num_classes=4).compute()["mIoU"], out["mIoU"])
    with pytest.raises(ValueError, match="class ids"):
        m.update(torch.tensor([7]), torch.tensor([1]))


# ------------------------------------------------------------------------------------------------ JHMDB
def _pose():
    j = torch.arange(15)
    gt = torch.stack([(j % 2) * 30.0, (j % 3 == 0) * 40.0], -1)  # box 30 x 40: scale 0.6 * 50 = 30
    gt = gt[None].repeat(3, 1, 1).double()  # (T=3, 15, 2)
    pred = gt.clone()
    pred[0] += 100  # frame 0 is never scored
    pred[1:, 0, 0] += 2.9  # 0.097 -> within 0.1
    pred[1:, 1, 0] += 3.1  # 0.103 -> within 0.2 only
    pred[1:, 2, 1] += 7.0  # 0.233 -> neither
    pred[2, 3] = -1.0  # joint 3 lost in frame 2: excluded ...
    gt[2, 3, 0] = 1000.0  # ... and its GT does not stretch the box
    return pred, gt


def test_pck_hand_values():
    pred, gt = _pose()
    m = PCK(sync_on_compute=False)
    m.update(pred, gt)
    out = m.compute()
    assert float(out["PCK@0.1"]) == pytest.approx(1300 / 15)
    assert float(out["PCK@0.2"]) == pytest.approx(1400 / 15)
    assert m.total.tolist() == [2, 2, 2, 1] + [2] * 11
    perfect = PCK(sync_on_compute=False)
    perfect.update(gt, gt)
    assert float(perfect.compute()["PCK@0.1"]) == 100.0


def test_pck_rank_merge_is_exact():
    pred, gt = _pose()
    single, r0, r1 = (PCK(sync_on_compute=False) for _ in range(3))
    single.update(pred, gt)
    single.update(gt, gt)
    r1.update(pred, gt)
    r0.update(gt, gt)
    a, b = single.compute(), _merged([r0, r1], PCK).compute()
    assert all(torch.equal(a[k], b[k]) for k in ("PCK@0.1", "PCK@0.2"))


def test_heatmaps_follow_crw_encoding_and_decode():
    joints = torch.tensor([[3.0, 4.0], [1.0, 1.0], [-9.0, -9.0], [5.4, 2.6]])
    maps = heatmaps_from_joints(joints, (8, 8))  # (5, 8, 8), background last
    assert maps.shape == (5, 8, 8)
    assert maps[0, 4, 3] == 1.0 and maps[0, 4, 2] == pytest.approx(math.exp(-2))
    assert maps[0, 4, 5] == 0.0 and maps[0, 4, 1] > 0  # window offsets -2..+1 around the peak
    assert maps[1, 2, 2] == 1.0  # x = 1 < 1.5: int() truncation puts the peak one cell off (CRW)
    assert maps[2].sum() == 0  # off-grid joint: empty channel
    assert maps[3, 3, 5] == 1.0  # round(5.4), round(2.6)
    assert torch.equal(maps[-1], (maps[:-1].sum(0) == 0).float())
    dec = joints_from_heatmaps(maps[None, :-1], topk=1)[0]  # (4, 2)
    assert dec.tolist() == [[3.0, 4.0], [2.0, 2.0], [-1.0, -1.0], [5.0, 3.0]]
    dec3 = joints_from_heatmaps(maps[:-1], topk=3)
    assert (dec3[0] - torch.tensor([3.0, 4.0])).abs().max() < 0.2  # top-3 weighted mean near the peak
