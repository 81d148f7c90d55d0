"""Long videos: DAVIS propagation streams frame by frame, so its memory does not grow with the length."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from callbacks.evaluation.davis import eval_size, evaluate_davis
from callbacks.evaluation.features import iter_features, video_features
from callbacks.evaluation.labels import downsample_labels, labels_onehot, predict_mask
from callbacks.evaluation.metrics import DavisJF
from callbacks.evaluation.propagation import (
    context_indices,
    propagate_frame,
    propagate_stream,
    propagate_video,
)
from callbacks.evaluation.settings import PropagationConfig
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.davis import load_davis
from lightning_modules.feature_models.pixels import PixelFeatures
from tests.conftest import ddp_clean_env
from tests.system.test_bad_input import REPO


@pytest.mark.parametrize("preset", ["davis", "dino", "crw"])
def test_stream_equals_per_frame_context_reference(preset):
    """The rolling context of ``propagate_stream`` == rebuilding each frame's context from scratch."""
    cfg = PropagationConfig.preset(preset)
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(9, 16, 6, 7, generator=g), dim=1)
    first = torch.softmax(torch.randn(3, 6, 7, generator=g), dim=0)
    streamed = list(propagate_stream(iter(feats), first, cfg))
    labels = [first]
    for t in range(1, len(feats)):
        ctx = context_indices(t, cfg.queue_length, cfg.context)
        ctx_labels = torch.stack([labels[i] for i in ctx])  # (C, K, h, w)
        labels.append(propagate_frame(feats[t], feats[ctx], ctx_labels, cfg))
    torch.testing.assert_close(torch.stack(streamed), torch.stack(labels), rtol=0, atol=1e-6)


def test_streaming_davis_equals_whole_video_reference(tmp_path):
    """Frame-by-frame evaluation == the whole-video one (features, propagation_video, DavisJF), exactly."""
    root = write_davis_benchmark(
        tmp_path / "DAVIS", seed=5, num_val=2, num_tune=0, num_frames=11, size=(48, 64)
    )
    videos, model, cfg = load_davis(root), PixelFeatures(8), PropagationConfig.preset("davis")
    got = evaluate_davis(model, videos, cfg, size=None, batch_frames=4)
    for seq, record in zip(videos, got):
        size = eval_size(*seq.size, None, 8, "stride")
        feats = video_features(model, seq.read_frame, len(seq), size)
        streamed = iter_features(model, seq.read_frame, len(seq), size, batch_frames=4)
        assert torch.equal(torch.stack(list(streamed)), feats)
        ids = torch.from_numpy(seq.first_mask().astype(np.int64))[None, None].float()  # (1, 1, H, W)
        at_eval = F.interpolate(ids, size=size, mode="nearest-exact")[0, 0].long()  # the legacy first step
        first = downsample_labels(labels_onehot(at_eval, seq.num_objects + 1), 8)  # (K, h, w)
        soft = propagate_video(feats, first, cfg)
        gt = seq.read_masks()
        pred = np.stack([gt[0]] + [predict_mask(s, 8, seq.size, cfg.minmax_norm).numpy() for s in soft[1:]])
        metric = DavisJF(sync_on_compute=False)
        metric.update(
            torch.from_numpy(pred.astype(np.uint8)), torch.from_numpy(gt), seq.num_objects, seq.name
        )
        assert record["rows"] == [dict(row) for row in metric.per_object()]


def peak_growth(tmp_path, frames: int) -> int:
    root = tmp_path / f"DAVIS{frames}"
    write_davis_benchmark(
        root, seed=1, num_val=1, num_tune=0, num_frames=frames, size=(128, 160), max_objects=2
    )
    env = {**ddp_clean_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.helpers.long_video_rss", str(root), str(tmp_path / f"out{frames}")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == frames
    return result["growth_kib"]


@pytest.mark.slow
def test_memory_does_not_grow_with_video_length(tmp_path):
    short, long = peak_growth(tmp_path, 60), peak_growth(tmp_path, 600)
    ratio = long / max(short, 1)
    print(f"peak RSS growth: 60 frames {short} KiB, 600 frames {long} KiB, ratio {ratio:.2f}")
    assert ratio <= 1.3, (short, long)
