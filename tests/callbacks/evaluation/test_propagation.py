"""Fast (tiled, windowed) propagation == an obviously-correct dense reference (DINO's formulation)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from callbacks.evaluation.labels import downsample_labels, labels_onehot, predict_mask, upsample_labels
from callbacks.evaluation.local_affinity import neighbourhood_mask
from callbacks.evaluation.propagation import context_indices, propagate_frame, propagate_video
from callbacks.evaluation.settings import PropagationConfig


def dense_window(h: int, w: int, cfg: PropagationConfig) -> torch.Tensor:
    """(N_src, N_query) 0/1 neighbourhood mask over the whole grid."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yx = torch.stack([yy.flatten(), xx.flatten()], 1)  # (N, 2)
    d = (yx[:, None] - yx[None]).abs()  # (N, N, 2)
    if cfg.window == "square":
        return (d <= cfg.radius).all(-1)
    if cfg.window == "circle_open":
        return (d * d).sum(-1) < cfg.radius**2
    return (d * d).sum(-1) <= cfg.radius**2


def dense_propagate_frame(query, ctx_feats, ctx_labels, cfg: PropagationConfig):
    """DINO-style: full (C*N) x N affinity, exp(cos/tau) * window, keep >= k-th per column, normalise."""
    c, d, h, w = ctx_feats.shape
    n = h * w
    aff = torch.exp(
        torch.einsum("cds,dq->csq", ctx_feats.reshape(c, d, n), query.reshape(d, n)) / cfg.temperature
    )
    mask = dense_window(h, w, cfg).expand(c, n, n).clone()  # (C, N_src, N_q)
    if not cfg.window_first_frame:
        mask[0] = True
    aff = (aff * mask).reshape(c * n, n)  # sources in rows
    top = aff.topk(cfg.topk, dim=0)
    if cfg.ties == "keep":  # DINO: everything >= the k-th value
        aff = torch.where(aff >= top.values[-1], aff, torch.zeros_like(aff))
    else:  # exactly k (torch.topk); tied copies carry identical labels, so which ones is irrelevant
        aff = torch.zeros_like(aff).scatter(0, top.indices, top.values)
    aff = aff / aff.sum(0, keepdim=True)
    labels = ctx_labels.reshape(c, -1, n).permute(1, 0, 2).reshape(-1, c * n)  # (K, C*N)
    return (labels @ aff).reshape(-1, h, w)


def dense_propagate_video(feats, first_labels, cfg):
    out = [first_labels]
    for t in range(1, feats.shape[0]):
        ctx = context_indices(t, cfg.queue_length, cfg.context)
        out.append(dense_propagate_frame(feats[t], feats[ctx], torch.stack([out[i] for i in ctx]), cfg))
    return torch.stack(out)


def random_video(t=6, d=16, h=9, w=11, k=4, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(t, d, h, w, generator=g, dtype=dtype), dim=1)
    first = labels_onehot(torch.randint(0, k, (h, w), generator=g), k).to(dtype)
    return feats, first


CONFIGS = [
    PropagationConfig(topk=5, queue_length=3, radius=2.0, window="square", chunk_size=9),
    PropagationConfig(topk=7, queue_length=2, radius=3.0, window="circle", chunk_size=4),
    PropagationConfig(
        topk=4, queue_length=10, radius=2.5, window="square", window_first_frame=False, chunk_size=16
    ),
    PropagationConfig(
        topk=3, queue_length=1, radius=1.5, window="circle", window_first_frame=False, chunk_size=1
    ),
    PropagationConfig(topk=10, queue_length=20, radius=20.0, chunk_size=25),  # window larger than the grid
    PropagationConfig(topk=3, queue_length=0, radius=0.0, chunk_size=6),  # only frame 0, self-match only
    PropagationConfig(topk=5, queue_length=3, radius=2.0, ties="exact", chunk_size=9),
    PropagationConfig(  # CRW: 4 padded copies of frame 0 in the windowed queue, open circle, exact k
        topk=6,
        queue_length=4,
        radius=3.0,
        window="circle_open",
        window_first_frame=False,
        ties="exact",
        context="crw",
        chunk_size=9,
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    "cfg",
    CONFIGS,
    ids=lambda c: f"k{c.topk}m{c.queue_length}r{c.radius}{c.window}{c.window_first_frame}{c.ties}{c.context}",
)
def test_fast_equals_dense_fp32(cfg):
    feats, first = random_video()
    fast = propagate_video(feats, first, cfg)
    dense = dense_propagate_video(feats, first, cfg)
    assert fast.shape == dense.shape == (6, 4, 9, 11)
    torch.testing.assert_close(fast, dense, atol=1e-6, rtol=0)
    assert torch.equal(fast.argmax(1), dense.argmax(1))


def test_fast_equals_dense_fp64_tight():
    feats, first = random_video(t=5, d=8, h=7, w=13, k=3, dtype=torch.float64, seed=3)
    cfg = PropagationConfig(topk=6, queue_length=2, radius=3.0, window="circle", chunk_size=9)
    torch.testing.assert_close(
        propagate_video(feats, first, cfg), dense_propagate_video(feats, first, cfg), atol=1e-12, rtol=0
    )


def test_propagate_frame_matches_bench_dense_references():
    from tests.bench.bench_propagation import dense_window, dino_propagate_frame, lean_dense_propagate_frame

    feats, _ = random_video(t=6, d=16, h=10, w=12)
    labels = torch.rand(5, 3, 10, 12)
    cfg = PropagationConfig(topk=7, radius=4.0, chunk_size=16)
    fast = propagate_frame(feats[5], feats[:5], labels, cfg)
    mask = dense_window((10, 12), cfg)
    for dense in (dino_propagate_frame, lean_dense_propagate_frame):
        torch.testing.assert_close(
            fast, dense(feats[5], feats[:5].clone(), labels, mask, cfg), atol=1e-6, rtol=0
        )


def test_toy_shifted_video_moves_labels_by_one_column():
    """Orthogonal per-cell features; frame t is frame 0 shifted t columns right, so labels must follow."""
    h, w = 3, 5
    base = torch.eye(h * w).reshape(h * w, h, w)  # (D=N, h, w): cell i has basis vector e_i
    feats = torch.stack([base.roll(t, dims=-1) for t in range(3)])  # (T, D, h, w)
    first = labels_onehot(torch.arange(w).repeat(h, 1), w)  # label = column index
    cfg = PropagationConfig(topk=1, queue_length=2, radius=50.0, chunk_size=4)
    out = propagate_video(feats, first, cfg)
    for t in range(3):
        torch.testing.assert_close(out[t], first.roll(t, dims=-1))


def test_first_frame_kept_and_soft_labels_are_distributions():
    feats, first = random_video()
    out = propagate_video(feats, first, PropagationConfig(topk=4, radius=2.0, chunk_size=9))
    assert torch.equal(out[0], first)
    torch.testing.assert_close(out.sum(1), torch.ones(6, 9, 11))
    assert (out >= 0).all()


def test_blocked_topk_equals_topk():
    from callbacks.evaluation.local_affinity import blocked_topk

    x = torch.randn(32 * 37, 19)
    for k in (1, 7, 10):
        v, i = blocked_topk(x, k, 32)
        ref_v, ref_i = x.topk(k, dim=0)
        assert torch.equal(v, ref_v) and torch.equal(i, ref_i)
    x[100:] = -float("inf")  # fewer finite candidates than blocks
    assert torch.equal(blocked_topk(x, 7, 32)[0], x.topk(7, dim=0).values)


def test_window_sizes_square_circle_and_crw_radius():
    centre = torch.tensor([[30, 30]])
    yy, xx = torch.meshgrid(torch.arange(61), torch.arange(61), indexing="ij")
    cells = torch.stack([yy.flatten(), xx.flatten()], 1)
    assert int(neighbourhood_mask(centre, cells, 12.0, "square").sum()) == 25 * 25
    assert int(neighbourhood_mask(centre, cells, 12.0, "circle").sum()) == 441
    crw = PropagationConfig.preset("crw")
    assert int(neighbourhood_mask(centre, cells, crw.radius, crw.window).sum()) == 437  # CRW: dist < 12
    assert int(neighbourhood_mask(centre, cells, 12.0, "circle_open").sum()) == 437


def test_presets_follow_table_4b_and_dino():
    p = {n: PropagationConfig.preset(n) for n in ("davis", "vip", "jhmdb", "dino", "crw")}
    assert (p["davis"].topk, p["davis"].queue_length, p["davis"].radius) == (7, 20, 20.0)
    assert (p["vip"].topk, p["vip"].queue_length, p["vip"].radius) == (10, 20, 8.0)
    assert (p["jhmdb"].topk, p["jhmdb"].queue_length, p["jhmdb"].radius) == (7, 20, 20.0)
    assert (p["dino"].topk, p["dino"].queue_length, p["dino"].radius, p["dino"].temperature) == (
        5,
        7,
        12.0,
        0.1,
    )
    assert p["davis"].temperature == 0.1 and p["davis"].window == "square" and p["davis"].window_first_frame
    assert not p["crw"].window_first_frame and p["crw"].soft_first_frame and p["crw"].window == "circle_open"
    assert p["crw"].context == "crw" and p["crw"].ties == "exact" and p["dino"].ties == "keep"
    with pytest.raises(ValueError, match="unknown preset"):
        PropagationConfig.preset("kinetics")
    with pytest.raises(ValueError, match="temperature"):
        PropagationConfig(temperature=0.0)
    with pytest.raises(ValueError, match="labels must be"):
        propagate_video(torch.zeros(2, 4, 3, 3), torch.zeros(2, 3, 4))


def test_downsample_hard_is_pil_nearest_and_soft_is_bilinear():
    from PIL import Image

    ids = torch.randint(0, 4, (32, 48))
    hard = downsample_labels(labels_onehot(ids, 4), 8, soft=False)  # (4, 4, 6)
    pil = torch.from_numpy(
        __import__("numpy").array(Image.fromarray(ids.numpy().astype("uint8")).resize((6, 4), Image.NEAREST))
    )
    assert torch.equal(hard.argmax(0), pil.long()) and torch.equal(hard.sum(0), torch.ones(4, 6))
    soft = downsample_labels(labels_onehot(ids, 4), 8, soft=True)
    # cv2/torch bilinear at stride 8 samples between pixels 8i+3 and 8i+4
    torch.testing.assert_close(soft[:, 0, 0], labels_onehot(ids, 4)[:, 3:5, 3:5].mean((1, 2)))


def test_decoding_minmax_and_nearest_resize():
    soft = torch.zeros(3, 2, 2)
    soft[0] = 0.6
    soft[1, 0, 0] = 0.3  # weak object: min-max lifts it to 1 where it peaks
    pred_raw = predict_mask(soft, 4, minmax=False)
    pred_norm = predict_mask(soft, 4, minmax=True)
    assert pred_raw.shape == (8, 8) and (pred_raw == 0).all()
    assert (
        pred_norm[0, 0] == 1 and pred_norm[-1, -1] == 0
    )  # constant channel 0 left as is, empty channel 2 too
    up = upsample_labels(soft, 4, minmax=True)
    assert up.shape == (3, 8, 8) and float(up[1].max()) == 1.0 and float(up[2].abs().max()) == 0.0
    assert predict_mask(soft, 4, size=(10, 9)).shape == (10, 9)


@pytest.mark.parametrize(
    "shape", [(480, 832, 480, 854), (60, 112, 480, 910), (480, 854, 60, 104), (70, 70, 560, 560)]
)
def test_pil_nearest_resize_is_bit_exact(shape):
    import numpy as np
    from PIL import Image

    from callbacks.evaluation.labels import pil_nearest_resize

    hi, wi, ho, wo = shape
    a = np.random.default_rng(0).integers(0, 250, (hi, wi)).astype(np.uint8)
    pil = np.array(Image.fromarray(a).resize((wo, ho), Image.NEAREST))
    assert np.array_equal(pil_nearest_resize(torch.from_numpy(a), (ho, wo)).numpy(), pil)


def test_ties_with_the_kth_are_kept_like_dino():
    """Frame 1 == frame 0 exactly (a static scene): every cell's best match is tied between the two copies.

    With k = 1 DINO keeps both tied candidates (weights 1/2 each); exactly-k keeps one. The labels of the
    copies differ (frame 1 carries a different label on purpose), so the rules give different answers.
    """
    h, w = 3, 4
    base = torch.eye(h * w).reshape(h * w, h, w)
    feats = torch.stack([base, base, base])  # (T=3, D, h, w): frames 0, 1 and 2 identical
    labels = torch.stack([torch.tensor([1.0, 0.0]).view(2, 1, 1).expand(2, h, w),
                          torch.tensor([0.0, 1.0]).view(2, 1, 1).expand(2, h, w)])  # fmt: skip
    keep = PropagationConfig(topk=1, radius=1.0, ties="keep")
    exact = PropagationConfig(topk=1, radius=1.0, ties="exact")
    torch.testing.assert_close(propagate_frame(feats[2], feats[:2], labels, keep), torch.full((2, h, w), 0.5))
    one = propagate_frame(feats[2], feats[:2], labels, exact)
    assert torch.equal(one.sum(0), torch.ones(h, w)) and set(one.unique().tolist()) <= {0.0, 1.0}


def test_topk_keep_ties_widens_until_the_tie_set_is_complete():
    from callbacks.evaluation.local_affinity import topk_keep_ties

    logits = torch.cat([torch.tensor([[5.0]]), torch.full((70, 1), 2.0), torch.tensor([[1.0]])])  # 72 rows
    values, index = topk_keep_ties(logits, 3, block=8)
    kept = index[values.isfinite()]
    assert len(kept) == 71 and 71 not in kept.tolist()  # the 5, all 70 tied 2s, not the 1


def test_crw_context_is_padded_with_frame_zero():
    assert context_indices(1, 4, "crw") == [0, 0, 0, 0, 0]
    assert context_indices(3, 4, "crw") == [0, 0, 0, 1, 2]
    assert context_indices(6, 4, "crw") == [0, 2, 3, 4, 5]
    assert context_indices(3, 4) == [0, 1, 2]
    with pytest.raises(ValueError, match="window_first_frame"):
        PropagationConfig(context="crw")


def test_crw_padding_changes_the_answer():
    """With copies of frame 0 in the windowed queue, frame 0 outweighs a queued prediction (CRW) or not."""
    feats, first = random_video(t=5, seed=7)
    cfg = PropagationConfig(topk=6, queue_length=4, radius=2.0, window_first_frame=False, ties="exact")
    padded = propagate_video(feats, first, replace(cfg, context="crw"))
    assert not torch.allclose(padded, propagate_video(feats, first, cfg))
    torch.testing.assert_close(padded, dense_propagate_video(feats, first, replace(cfg, context="crw")))


def test_crw_output_is_one_bilinear_resize_before_argmax():
    from callbacks.evaluation.labels import predict_mask_resized

    soft = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (K=2, 1, 2): channel 0 left, channel 1 right
    assert predict_mask_resized(soft, (1, 8)).tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    # bilinear at 2 -> 5 columns: the middle column is an exact tie, argmax takes the first channel
    assert predict_mask_resized(soft, (1, 5)).tolist() == [[0, 0, 0, 1, 1]]
