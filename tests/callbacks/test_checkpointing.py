"""Atomic checkpoints: a crash while writing leaves the previous checkpoint intact; the CLI uses them."""

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from callbacks import AtomicCheckpointIO
from callbacks.checkpointing import use_atomic_checkpoints
from lightning_modules import SiamMAE
from lightning_modules.cli import CorrMAECLI
from tests.lightning_modules.test_siammae import TINY


class CrashInSave(RuntimeError):
    """The simulated crash."""


def crashing_save(obj, f, *args, **kwargs):
    """torch.save that writes half of the real bytes to the file, then dies."""
    import io

    buf = io.BytesIO()
    REAL_SAVE(obj, buf)
    data = buf.getvalue()
    if hasattr(f, "write"):
        f.write(data[: len(data) // 2])
        f.flush()
    else:
        with open(f, "wb") as out:
            out.write(data[: len(data) // 2])
    raise CrashInSave("simulated crash in the middle of writing a checkpoint")


REAL_SAVE = torch.save


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    io_plugin, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    old = {"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}
    io_plugin.save_checkpoint(old, path)
    monkeypatch.setattr(torch, "save", crashing_save)
    new = {"state_dict": {"w": torch.zeros(1000)}, "global_step": 4}
    with pytest.raises(CrashInSave):
        io_plugin.save_checkpoint(new, path)
    monkeypatch.undo()
    loaded = io_plugin.load_checkpoint(path)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], old["state_dict"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the partial temp file was removed
    io_plugin.save_checkpoint(new, path)  # and a later save still works
    assert io_plugin.load_checkpoint(path)["global_step"] == 4


def test_naive_save_would_corrupt(tmp_path, monkeypatch):
    """Control: the same crash through a plain torch.save(path) does destroy the old file."""
    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 3}, path)
    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(CrashInSave):
        torch.save({"global_step": 4, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    with pytest.raises(RuntimeError):  # truncated zip archive
        torch.load(path)


def batches(n):
    g = torch.Generator().manual_seed(0)
    return [
        {"frames": torch.randn(2, 2, 3, 32, 32, generator=g), "video": ["a.mp4", "b.mp4"]} for _ in range(n)
    ]


def test_trainer_crash_during_step_checkpoint_keeps_last(tmp_path, monkeypatch):
    ckpt = L.pytorch.callbacks.ModelCheckpoint(tmp_path, every_n_train_steps=1, save_last=True, save_top_k=0)
    kw = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[ckpt], default_root_dir=tmp_path)  # fmt: skip
    model = SiamMAE(**TINY, warmup_epochs=0, log_images_every_n_steps=0)
    trainer = L.Trainer(max_steps=2, **kw)
    use_atomic_checkpoints(trainer)
    trainer.fit(model, DataLoader(batches(4), batch_size=None))
    good = {k: v.clone() for k, v in model.state_dict().items()}

    calls = []
    monkeypatch.setattr(torch, "save", lambda *a, **k: calls.append(1) or crashing_save(*a, **k))
    trainer = L.Trainer(max_steps=4, **kw)
    use_atomic_checkpoints(trainer)
    with pytest.raises(CrashInSave):
        trainer.fit(model, DataLoader(batches(4), batch_size=None), ckpt_path=tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert calls  # the crash did happen inside a checkpoint write
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2
    assert all(torch.equal(state["state_dict"][k], v) for k, v in good.items())


def test_cli_installs_atomic_io_but_keeps_a_user_plugin():
    args = ["--config", "configs/demo/siammae_tiny.yaml", "--data.root", "unused", "--trainer.logger=false"]
    cli = CorrMAECLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True,
                     subclass_mode_data=True, run=False, args=args)  # fmt: skip
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", plugins=[MyIO()], logger=False)
    use_atomic_checkpoints(trainer)
    assert type(trainer.strategy.checkpoint_io) is MyIO
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    use_atomic_checkpoints(trainer)
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO


class MyIO(TorchCheckpointIO):
    """A user's own CheckpointIO."""
