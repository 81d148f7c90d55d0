import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from callbacks.evaluation.davis import evaluate_davis, summarize_davis
from callbacks.evaluation.protocols import get_protocol
from callbacks.evaluation.settings import PropagationConfig
from callbacks.evaluation.sharded import shard
from callbacks.propagation_callback import LabelPropagationCallback
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.davis import load_davis
from tests.conftest import ddp_clean_env
from tests.helpers.propagation_standins import PooledPixels


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    return write_davis_benchmark(
        tmp_path_factory.mktemp("cb") / "DAVIS", seed=5, num_val=3, num_tune=0, num_frames=5, size=(48, 64)
    )


def _fit(root, tmp_path, devices=1, max_videos=None, epochs=1, **kw):
    cb = LabelPropagationCallback(root=str(root), short_side=None, max_videos=max_videos, **kw)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=epochs,
        logger=TensorBoardLogger(str(tmp_path), name="tb"),
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[cb],
    )
    model = PooledPixels()
    trainer.fit(model, DataLoader(torch.zeros(2, 1), batch_size=1))
    return trainer, model, cb


def test_callback_logs_restores_mode_and_matches_core(davis_root, tmp_path):
    trainer, model, cb = _fit(davis_root, tmp_path)
    jf = float(trainer.callback_metrics["val/davis_JF"])
    assert {"val/davis_J", "val/davis_F"} <= set(trainer.callback_metrics)
    assert model.training and model.modes_seen and not any(model.modes_seen)  # eval inside, train after
    model.eval()
    records = evaluate_davis(model, load_davis(davis_root), get_protocol("siammae", "davis"), size=None)
    assert jf == pytest.approx(summarize_davis(records)["JF"], abs=1e-7) and 0.0 < jf <= 1.0
    legacy = evaluate_davis(
        model, load_davis(davis_root), PropagationConfig.preset("davis"), size=None
    )  # a bare PropagationConfig is the legacy protocol
    assert summarize_davis(legacy) == summarize_davis(
        evaluate_davis(model, load_davis(davis_root), get_protocol("legacy", "davis"),
                       size=None)
    )  # fmt: skip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((tmp_path / "tb").rglob("events.out.tfevents*")).parent))
    acc.Reload()
    assert "val/davis_propagation" in acc.Tags()["images"] and "val/davis_JF" in acc.Tags()["scalars"]


def test_cadence_every_n_epochs(davis_root, tmp_path):
    cb = LabelPropagationCallback(root=str(davis_root), short_side=None, every_n_epochs=2, at_fit_end=False)
    calls = []
    cb.run = lambda trainer, module: calls.append(trainer.current_epoch)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=4,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[cb],
        enable_model_summary=False,
    )
    trainer.fit(PooledPixels(), DataLoader(torch.zeros(1, 1)))
    assert calls == [1, 3]


def test_shard_covers_every_video_once():
    class V:
        def __init__(self, name, n):
            self.name, self.n, self.size = name, n, (4, 4)

        def __len__(self):
            return self.n

    videos = [V(f"v{i}", i + 1) for i in range(5)]
    parts = [shard(videos, r, 3) for r in range(3)]
    assert sorted(v.name for p in parts for v in p) == [v.name for v in videos]
    assert shard(videos[:1], 1, 2) == []


@pytest.mark.slow
@pytest.mark.ddp
@pytest.mark.parametrize("max_videos", [3, 1], ids=["uneven", "rank_without_videos"])
def test_ddp_two_processes_equal_one(davis_root, tmp_path, max_videos, monkeypatch):
    for k in list(ddp_clean_env().keys() ^ __import__("os").environ.keys()):
        monkeypatch.delenv(k, raising=False)
    one, _, _ = _fit(davis_root, tmp_path / "one", max_videos=max_videos, log_images=False)
    two, _, _ = _fit(davis_root, tmp_path / "two", devices=2, max_videos=max_videos, log_images=False)
    for key in ("val/davis_JF", "val/davis_J", "val/davis_F"):
        assert float(two.callback_metrics[key]) == float(one.callback_metrics[key])
