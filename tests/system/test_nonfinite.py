"""Non-finite steps: skipped with weights and buffers untouched (counted, logged with the videos) or raised;
never written to a checkpoint. The guard is ``callbacks.nonfinite.NonFiniteGuard``, which every system
installs from its ``nonfinite`` / ``max_nonfinite_skips`` arguments unless the trainer lists one."""

import logging

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks import NonFiniteGuard
from lightning_modules import SiamMAE, VideoMAC
from tests.lightning_modules.test_siammae import TINY

BAD = 1  # index of the poisoned batch


def batches(n: int, size: int, bad: tuple[int, ...] = (BAD,)) -> list[dict]:
    """``n`` batches of 2 pairs; the batches in ``bad`` hold a NaN pixel and come from ``bad_<i>.mp4``."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        frames = torch.randn(2, 2, 3, size, size, generator=g)
        videos = [f"ok_{i}_a.mp4", f"ok_{i}_b.mp4"]
        if i in bad:
            frames[1, 1, 0, 3, 3] = float("nan")
            videos[1] = f"bad_{i}.mp4"
        out.append({"frames": frames, "video": videos, "index": torch.arange(2)})
    return out


class Snapshots(L.Callback):
    """Parameters and buffers before and after every batch."""

    def __init__(self):
        self.before, self.after = [], []

    @staticmethod
    def state(m):
        return {k: v.detach().clone() for k, v in m.state_dict().items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before.append(self.state(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append(self.state(pl_module))


def fit(model, data, callbacks=(), ckpt_path=None, **kw):
    snaps = Snapshots()
    kw.setdefault("enable_model_summary", False)
    kw.setdefault("max_epochs", 1)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer = L.Trainer(accelerator="cpu", callbacks=[snaps, *callbacks], **quiet, **kw)
    trainer.fit(model, DataLoader(data, batch_size=None), ckpt_path=ckpt_path)
    return trainer, snaps


def siammae(**kw):
    return SiamMAE(**TINY, warmup_epochs=0, log_images_every_n_steps=0, **kw)


def changed(a: dict, b: dict, keys) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in keys)


def test_skip_keeps_weights_unchanged_and_counts(caplog):
    model = siammae()
    with caplog.at_level(logging.WARNING, logger="callbacks.nonfinite"):
        trainer, snaps = fit(model, batches(4, 32))
    params = [k for k, p in model.named_parameters() if p.requires_grad]
    assert not changed(snaps.before[BAD], snaps.after[BAD], params)  # the NaN step did not update
    assert all(changed(snaps.before[i], snaps.after[i], params) for i in (0, 2, 3))  # the others did
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.global_step == 4 and trainer.callback_metrics["train/nonfinite_skips"] == 1
    assert "bad_1.mp4" in caplog.text and "ok_0_a.mp4" not in caplog.text


def test_raise_names_the_videos():
    with pytest.raises(FloatingPointError, match=r"step 1.*bad_1\.mp4.*nonfinite='raise'"):
        fit(siammae(nonfinite="raise"), batches(3, 32))


def test_skip_budget_exhausted_raises():
    with pytest.raises(FloatingPointError, match=r"bad_2\.mp4.*after 1 skipped steps"):
        fit(siammae(max_nonfinite_skips=1), batches(4, 32, bad=(1, 2)))


class NaNGrad(SiamMAE):
    """Finite loss, but one gradient poisoned at batch 0."""

    def on_after_backward(self):
        if self.global_step == 0:
            grad = next(p.grad for p in self.parameters() if p.grad is not None)
            grad.view(-1)[0] = float("inf")


def test_nonfinite_gradient_with_finite_loss_is_skipped():
    model = NaNGrad(**TINY, warmup_epochs=0, log_images_every_n_steps=0)
    trainer, snaps = fit(model, batches(2, 32, bad=()))
    params = [k for k, p in model.named_parameters() if p.requires_grad]
    assert not changed(snaps.before[0], snaps.after[0], params)
    assert changed(snaps.before[1], snaps.after[1], params)
    assert trainer.callback_metrics["train/nonfinite_skips"] == 1


def test_videomac_skip_restores_batchnorm_statistics():
    model = VideoMAC(encoder_name="resnet18", decoder_dim=8, warmup_epochs=0, log_images_every_n_steps=0)
    _, snaps = fit(model, batches(3, 64))
    online = [k for k in snaps.before[0] if k.startswith("online.")]
    buffers = [k for k, _ in model.named_buffers()]
    assert any("running_mean" in k for k in buffers)
    assert not changed(snaps.before[BAD], snaps.after[BAD], online + buffers)  # weights and BN stats kept
    assert changed(snaps.before[2], snaps.after[2], online + buffers)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_checkpoint_with_nonfinite_weights_is_refused(tmp_path):
    model = siammae()
    trainer, _ = fit(model, batches(1, 32, bad=()))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    good = path.read_bytes()
    with torch.no_grad():
        model.encoder.patch_embed.proj.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match="encoder.patch_embed.proj.bias"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == good


def test_invalid_policy_is_refused_when_the_model_is_built():
    with pytest.raises(ValueError, match="nonfinite must be 'skip' or 'raise'"):
        siammae(nonfinite="ignore")
    with pytest.raises(ValueError, match="max_nonfinite_skips must be >= 0"):
        siammae(max_nonfinite_skips=-1)


def test_a_guard_in_the_trainer_callbacks_replaces_the_models_default():
    trainer, _ = fit(siammae(), batches(1, 32, bad=()), callbacks=[NonFiniteGuard("raise")])
    assert [type(cb) for cb in trainer.callbacks].count(NonFiniteGuard) == 1
    with pytest.raises(FloatingPointError, match=r"bad_1\.mp4.*nonfinite='raise'"):
        fit(siammae(), batches(3, 32), callbacks=[NonFiniteGuard("raise")])  # the model says "skip"


def skip_budget_checkpoint(tmp_path, legacy: bool):
    """A checkpoint after one skipped step (max 1 allowed): the count in the guard's state or, as
    checkpoints written before the guard was a callback have it, at the checkpoint's top level."""
    trainer, _ = fit(siammae(max_nonfinite_skips=1), batches(2, 32, bad=(0,)))  # one epoch
    assert trainer.callback_metrics["train/nonfinite_skips"] == 1
    path = tmp_path / "skipped_once.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["callbacks"]["NonFiniteGuard"] == {"skips": 1}
    if legacy:
        del ckpt["callbacks"]["NonFiniteGuard"]
        ckpt["nonfinite_skips"] = 1
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_skip_budget_spans_a_resume(tmp_path, legacy):
    path = skip_budget_checkpoint(tmp_path, legacy)
    with pytest.raises(FloatingPointError, match=r"bad_2\.mp4.*after 1 skipped steps"):
        fit(siammae(max_nonfinite_skips=1), batches(4, 32, bad=(2,)), ckpt_path=path, max_epochs=2)
    ckpt = torch.load(path, weights_only=False)
    ckpt["callbacks"].pop("NonFiniteGuard", None)
    ckpt.pop("nonfinite_skips", None)
    torch.save(ckpt, path)  # control: without the stored count, the same step is skipped
    trainer, _ = fit(siammae(max_nonfinite_skips=1), batches(4, 32, bad=(2,)), ckpt_path=path, max_epochs=2)
    assert trainer.callback_metrics["train/nonfinite_skips"] == 1
