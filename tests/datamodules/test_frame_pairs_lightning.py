"""FramePairDataModule inside a real Lightning Trainer: sampler kept, epochs propagate, DDP shards."""

from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules import FramePairDataModule
from datamodules.sampling import EpochSampler
from datamodules.torchcodec_reader import torchcodec_available
from tests.helpers.video_helpers import write_index_folder

REPO = Path(__file__).resolve().parents[2]


class Recorder(L.LightningModule):
    """Tiny model that records which samples (and which gaps) it was fed."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        assert batch["frames"].shape[1:] == (2, 3, 16, 16)
        assert batch["frames"].dtype == torch.float32  # workers send uint8; the data module normalised it
        self.seen.append((self.current_epoch, batch["index"].tolist(), batch["gap"].tolist()))
        return (self.w - batch["frames"].mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Gather(Recorder):
    """Asserts on rank 0 that the two ranks saw disjoint videos covering the epoch, R = 2 pairs each."""

    def on_train_epoch_end(self):
        seen = [i for e, idx, _ in self.seen if e == self.current_epoch for i in idx]
        gathered = self.all_gather(torch.tensor(seen))  # (world, n)
        if self.global_rank == 0:
            flat = gathered.flatten().tolist()
            assert sorted(flat) == [0, 0, 1, 1, 2, 2, 3, 3], flat  # sharded by video, pairs stay together


def make_root(tmp_path):
    for i in range(4):
        write_index_folder(tmp_path / "JPEGImages" / f"v{i}", 20 + i, size=(32, 64))
    return tmp_path


def fit(root, **trainer_kw):
    dm = FramePairDataModule(str(root), image_size=16, batch_size=2, num_workers=0, gap_min=1, gap_max=19)
    model = Recorder()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **trainer_kw)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return trainer, model


def test_fit_two_epochs_keeps_epoch_sampler_and_reshuffles(tmp_path):
    trainer, model = fit(make_root(tmp_path))
    assert isinstance(trainer.train_dataloader.sampler, EpochSampler)
    by_epoch = {e: [] for e in (0, 1)}
    for epoch, index, gap in model.seen:
        by_epoch[epoch].append((tuple(index), tuple(gap)))
    # 4 videos x repeated_sampling 2: each video's index twice, its 2 pairs in the same batch
    assert sorted(i for idx, _ in by_epoch[0] for i in idx) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(idx[0] == idx[1] for idx, _ in by_epoch[0])
    assert by_epoch[0] != by_epoch[1]  # new order and new draws in epoch 1
    again = fit(tmp_path)[1].seen
    assert again == model.seen  # the whole data stream is a function of the seed


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_spawn_ranks_see_disjoint_samples(tmp_path):
    root = make_root(tmp_path)
    dm = FramePairDataModule(str(root), image_size=16, batch_size=2, num_workers=0)
    dm.setup("fit")

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    trainer.fit(Gather(), datamodule=dm)


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec or FFmpeg libs missing")
def test_fit_tiny_config_with_the_torchcodec_backend(tmp_path, monkeypatch):
    """`corrmae fit --config configs/demo/siammae_tiny.yaml --data.backend torchcodec` trains."""
    import datamodules.pair_dataset as pair_dataset
    from datamodules.synthetic import write_synthetic_videos
    from lightning_modules.cli import run_cli

    opened, real_open = [], pair_dataset.open_reader

    def recording_open(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(pair_dataset, "open_reader", recording_open)
    write_synthetic_videos(tmp_path / "videos", num_videos=3, num_frames=12, size=(48, 64), seed=0)
    cli = run_cli(["fit", "--config", str(REPO / "configs/demo/siammae_tiny.yaml"), "--data.root",
                   str(tmp_path / "videos"), "--data.backend", "torchcodec", "--trainer.fast_dev_run=2",
                   "--trainer.default_root_dir", str(tmp_path / "run")])  # fmt: skip
    assert cli.trainer.global_step == 1  # 3 videos, batch 4: one (short) batch
    assert opened and {type(r).__name__ for r in opened} == {"TorchCodecReader"}
