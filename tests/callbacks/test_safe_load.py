"""Untrusted files never run code: crafted ``.pth`` / ``.ckpt`` files whose unpickling would create a marker.

Every entry point that opens a user's file is tried (eval-all ``--weights`` and ``--ckpt``, ``fit
--ckpt_path`` through LightningCLI and through the CheckpointIO, ``export``): the marker is never created and
the error names the file, the offending global and ``--trust-checkpoint``. DINO-style full checkpoints
(``argparse.Namespace`` args) and corrmae's own checkpoints still load; ``--trust-checkpoint`` opts in.
"""

import argparse
import os

import pytest
import torch

from callbacks.checkpointing import AtomicCheckpointIO
from callbacks.safe_load import UntrustedCheckpointError
from lightning_modules.cli import main as cli_main
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.feature_models.timm_features import TimmFeatures
from lightning_modules.tools.eval_all import main as eval_all
from lightning_modules.tools.export import main as export
from tests.system.test_bad_input import REPO, tiny_siammae_checkpoint


class Payload:
    """Unpickling this object runs ``os.system(touch <marker>)``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class NotASystem(torch.nn.Module):
    """A class a checkpoint may name but must never be built as."""

    def __init__(self, **kwargs):
        super().__init__()
        raise AssertionError("a non-registered class path was instantiated")


@pytest.fixture
def evil(tmp_path):
    """(marker path, crafted .pth, crafted .ckpt)."""
    marker = tmp_path / "MARKER"
    pth = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(marker)}, pth)
    ckpt = tiny_siammae_checkpoint(tmp_path / "evil.ckpt", log_images_every_n_steps=0)
    state = torch.load(ckpt, weights_only=True)
    state["callbacks"] = {"x": Payload(marker)}
    torch.save(state, ckpt)
    return marker, pth, ckpt


ERROR = r"{name}: refusing to load: it needs the Python global\(s\) posix\.system.*--trust-checkpoint"


def test_crafted_pth_weights_refused(evil, tmp_path):
    marker, pth, _ = evil
    out = ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(UntrustedCheckpointError, match=ERROR.format(name=r".*evil\.pth")):
        eval_all(["--model", "resnet18", "--weights", str(pth), *out])
    assert not marker.exists()


def test_crafted_ckpt_refused_by_eval_fit_and_export(evil, tmp_path):
    marker, _, ckpt = evil
    match = ERROR.format(name=r".*evil\.ckpt")
    with pytest.raises(UntrustedCheckpointError, match=match):
        eval_all(["--ckpt", str(ckpt), "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    fit = ["fit", "--config", str(REPO / "configs/demo/siammae_tiny.yaml"), "--data.root", str(tmp_path),
           "--trainer.logger=false", "--ckpt_path", str(ckpt)]  # fmt: skip
    with pytest.raises(UntrustedCheckpointError, match=match):
        cli_main(fit)
    with pytest.raises(UntrustedCheckpointError, match=match):
        AtomicCheckpointIO().load_checkpoint(ckpt)  # what Trainer.fit(ckpt_path=...) calls
    with pytest.raises(UntrustedCheckpointError, match=match):
        export(["--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    assert not marker.exists()


def test_trust_flag_opts_in(evil):
    marker, pth, ckpt = evil
    AtomicCheckpointIO(trust=True).load_checkpoint(ckpt)
    assert marker.exists()  # the opt-in really unpickles everything (so it is only for trusted files)
    marker.unlink()
    with pytest.raises(ValueError, match="does not match timm model ResNet"):  # loaded, then shape-checked
        TimmFeatures("resnet18", weights=str(pth), trust=True)
    assert marker.exists()


def test_class_path_must_be_a_registered_system(tmp_path):
    for path in (
        "tests.callbacks.test_safe_load.NotASystem",
        "os.system",
        "lightning_modules.base.VideoSSLModule",
    ):
        ckpt = tiny_siammae_checkpoint(tmp_path / "odd.ckpt", _class_path=path)
        with pytest.raises(ValueError, match=rf"odd\.ckpt: class path '{path}' is not a registered corrmae"):
            load_corrmae_checkpoint(ckpt)
        fit = ["fit", "--config", str(REPO / "configs/demo/siammae_tiny.yaml"), "--data.root", str(tmp_path),
               "--trainer.logger=false", "--ckpt_path", str(ckpt)]  # fmt: skip
        with pytest.raises(ValueError, match="is not a registered corrmae system"):
            cli_main(fit)
    for path in ("SiamMAE", "lightning_modules.SiamMAE", "lightning_modules.siammae.SiamMAE"):
        ckpt = tiny_siammae_checkpoint(tmp_path / "ok.ckpt", _class_path=path)
        assert type(load_corrmae_checkpoint(ckpt)).__name__ == "SiamMAE"


def test_dino_full_checkpoint_with_namespace_args_loads(tmp_path):
    """DINO's ``checkpoint.pth``: student / teacher state dicts plus ``args`` (an ``argparse.Namespace``)."""
    ref = TimmFeatures("resnet18")
    teacher = {f"module.backbone.{k}": v.clone() for k, v in ref.model.state_dict().items()}
    args = argparse.Namespace(arch="resnet18", lr=0.0005, out_dim=65536)
    torch.save({"teacher": teacher, "student": {}, "args": args, "epoch": 100}, tmp_path / "dino.pth")
    loaded = TimmFeatures("resnet18", weights=str(tmp_path / "dino.pth"))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.extract_features(x), ref.extract_features(x))


def test_cli_trust_flag_reaches_the_loaders(evil, tmp_path, monkeypatch):
    import lightning as L

    from lightning_modules import cli

    marker, _, ckpt = evil
    seen = {}
    monkeypatch.setattr(
        cli, "run_cli", lambda args, trust_checkpoint: seen.update(args=args, trust=trust_checkpoint)
    )
    cli.main(["fit", "--ckpt_path", str(ckpt), "--trust-checkpoint"])
    assert seen == {"args": ["fit", "--ckpt_path", str(ckpt)], "trust": True}  # flag consumed, not parsed
    monkeypatch.undo()
    config = str(REPO / "configs/demo/siammae_tiny.yaml")
    fit = ["fit", "--config", config, "--data.root", str(tmp_path / "none"), "--trainer.logger=false",
           "--ckpt_path", str(ckpt), "--trust-checkpoint"]  # fmt: skip
    with pytest.raises(ValueError, match="none. does not exist"):  # loaded (trusted), then no data
        cli.main(fit)
    assert marker.exists()  # the trusted file was really unpickled
    built = cli.CorrMAECLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True,
                           subclass_mode_data=True, run=False, trust_checkpoint=True,
                           args=["--config", config, "--trainer.logger=false"])  # fmt: skip
    assert built.trainer.strategy.checkpoint_io.trust
