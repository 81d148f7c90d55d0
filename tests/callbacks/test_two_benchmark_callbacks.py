"""Two LabelPropagationCallback instances (the demo's synthetic and photo benchmarks) in one fit."""

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from callbacks.propagation_callback import LabelPropagationCallback
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.photo_benchmark import write_photo_benchmark
from tests.helpers.propagation_standins import PooledPixels


def test_named_callbacks_log_apart_with_a_step_zero_point(tmp_path):
    synth = write_davis_benchmark(
        tmp_path / "davis", seed=1, num_val=2, num_tune=0, num_frames=4, size=(48, 64)
    )
    photos = write_photo_benchmark(tmp_path / "photos", counts={"val": 2}, num_frames=4, size=(48, 64))
    a = LabelPropagationCallback(root=str(synth), short_side=None, at_fit_start=True, log_images=False)
    b = LabelPropagationCallback(root=str(photos), short_side=None, name="davis_photos", log_images=False)
    assert a.state_key != b.state_key and a.state_key == "LabelPropagationCallback"  # old checkpoints load
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=TensorBoardLogger(str(tmp_path), name="tb"),
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(tmp_path), callbacks=[a, b],
    )  # fmt: skip
    trainer.fit(PooledPixels(), DataLoader(torch.zeros(2, 1), batch_size=1))
    metrics = trainer.callback_metrics
    assert float(metrics["val/davis_JF"]) == pytest.approx(a.last_scores["JF"], abs=1e-6)
    assert float(metrics["val/davis_photos_JF"]) == pytest.approx(b.last_scores["JF"], abs=1e-6)
    assert a.last_scores["JF"] != b.last_scores["JF"]  # two benchmarks, two scores
    acc = EventAccumulator(str(next((tmp_path / "tb").rglob("events.out.tfevents*")).parent))
    acc.Reload()
    steps_a = [e.step for e in acc.Scalars("val/davis_JF")]
    steps_b = [e.step for e in acc.Scalars("val/davis_photos_JF")]
    assert steps_a[0] == 0 and len(steps_a) == 3  # at the start, then after each of the 2 epochs
    assert 0 not in steps_b and len(steps_b) == 2  # at_fit_start is off for this one
    saved = trainer.checkpoint_callback.best_model_path
    ckpt = torch.load(saved, weights_only=False)
    assert ckpt["callbacks"][a.state_key]["last_scores"] == a.last_scores
    assert ckpt["callbacks"][b.state_key]["last_scores"] == b.last_scores
