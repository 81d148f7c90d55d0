"""SiamMAE and VideoMAC training under DDP: 2 CPU processes (gloo), tiny configs, generated mp4s.

Each rank dumps its state to ``<out>/rank<r>.pt`` from a module-level callback (spawned processes unpickle
it), and the test process compares the ranks: identical parameters after several optimiser steps although
each rank saw different samples (so gradients were all-reduced), disjoint samples covering every epoch,
identical VideoMAC EMA targets, and the lr scaled by the world size.

The propagation callback under DDP (2 processes == 1 process, a rank without videos) is covered by
``tests/callbacks/test_propagation_callback.py::test_ddp_two_processes_equal_one``; eval-all shares its
sharding.

Note: ``strategy="ddp"`` inside pytest would re-execute the whole pytest command as rank 1, so in-process
runs use ``ddp_spawn``; the real ``ddp`` launcher is exercised through the CLI in a subprocess.
"""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import lightning_modules
from datamodules import FramePairDataModule
from datamodules.synthetic import write_synthetic_videos
from tests.conftest import ddp_clean_env

pytestmark = [pytest.mark.slow, pytest.mark.ddp]
REPO = Path(__file__).resolve().parents[2]
NUM_VIDEOS, BATCH, EPOCHS = 8, 2, 2  # 4 samples per rank per epoch: 2 steps per epoch, nothing dropped


class DesyncInit(L.Callback):
    """Perturbs every weight by a rank-dependent amount before DDP wraps the model: unseeded ranks."""

    def setup(self, trainer, pl_module, stage):
        g = torch.Generator().manual_seed(1000 + trainer.global_rank)
        with torch.no_grad():
            for t in pl_module.state_dict().values():
                if t.is_floating_point():
                    t.add_(1e-3 * torch.randn(t.shape, generator=g))


class RankState(L.Callback):
    """Records the samples each rank trains on and saves its final weights to ``<out_dir>/rank<r>.pt``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.seen: list[tuple[int, list[int], list[str]]] = []
        self.initial: dict[str, torch.Tensor] = {}  # weights when training starts (after DDP's broadcast)
        self.lr = 0.0

    def on_train_start(self, trainer, pl_module):
        self.lr = trainer.optimizers[0].param_groups[0]["initial_lr"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.initial:  # here, not in on_train_start: the module's own on_train_start has run
            self.initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.seen.append((trainer.current_epoch, batch["index"].tolist(), list(batch["video"])))

    def on_train_end(self, trainer, pl_module):
        wrapped = trainer.strategy.model  # the DistributedDataParallel wrapper
        ignored = sorted(getattr(wrapped, "parameters_to_ignore", ()))
        torch.save(
            {
                "state": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()},
                "initial": self.initial,
                "params": [n for n, _ in pl_module.named_parameters()],
                "seen": self.seen,
                "lr": self.lr,
                "world_size": trainer.world_size,
                "ddp_ignored": ignored,
                "ddp_type": type(wrapped).__name__,
            },
            Path(self.out_dir) / f"rank{trainer.global_rank}.pt",
        )


def tiny(method: str):
    """The model and data init_args of ``configs/demo/<method>_tiny.yaml``."""
    cfg = yaml.safe_load((REPO / f"configs/demo/{method}_tiny.yaml").read_text())
    model_cfg = cfg["model"]
    model_cls = getattr(lightning_modules, model_cfg["class_path"])
    return model_cls, dict(model_cfg["init_args"], log_images_every_n_steps=0), cfg["data"]["init_args"]


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_videos")
    write_synthetic_videos(root, NUM_VIDEOS, num_frames=10, size=(64, 80), seed=1)
    return root


def spawn_fit(method: str, root: Path, out: Path, monkeypatch) -> list[dict]:
    """Two-process ``ddp_spawn`` fit of a tiny config from differently initialised ranks; their states."""
    for k in os.environ.keys() - ddp_clean_env().keys():  # no inherited rendezvous variables
        monkeypatch.delenv(k)
    L.seed_everything(0)
    model_cls, model_kw, data_kw = tiny(method)
    data_kw = dict(data_kw, root=str(root), batch_size=BATCH, num_workers=0, persistent_workers=False)
    out.mkdir()
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=EPOCHS, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[DesyncInit(), RankState(str(out))],
    )  # fmt: skip
    trainer.fit(model_cls(**model_kw), datamodule=FramePairDataModule(**data_kw))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def assert_ranks_in_sync(ranks: list[dict]) -> None:
    """Same start on both ranks (DDP broadcast rank 0's weights), same parameters after training.

    Buffers (BatchNorm running statistics) are only compared at the start: each rank updates them from its
    own batch and DDP re-broadcasts them at the next forward, so after the last step they legitimately differ.
    """
    start0, start1 = ranks[0]["initial"], ranks[1]["initial"]
    assert start0.keys() == start1.keys()
    for k in start0:
        assert torch.equal(start0[k], start1[k]), f"{k} differs across ranks when training starts"
    a, b = ranks[0]["state"], ranks[1]["state"]
    keys = ranks[0]["params"]
    assert keys and a.keys() == b.keys()
    for k in keys:
        assert torch.equal(a[k], b[k]), f"{k} differs across ranks"
    changed = [k for k in keys if not torch.equal(a[k], ranks[0]["initial"][k])]
    assert len(changed) > len(keys) // 2, f"only {len(changed)}/{len(keys)} tensors moved"


def assert_disjoint_cover(ranks: list[dict]) -> None:
    """Per epoch: the ranks' sample indices are disjoint and together cover the whole epoch."""
    for epoch in range(EPOCHS):
        per_rank = [[i for e, idx, _ in r["seen"] if e == epoch for i in idx] for r in ranks]
        assert all(len(p) == NUM_VIDEOS // 2 for p in per_rank), per_rank
        assert not set(per_rank[0]) & set(per_rank[1]), per_rank
        assert sorted(per_rank[0] + per_rank[1]) == list(range(NUM_VIDEOS))
        videos = [{v for e, _, vids in r["seen"] if e == epoch for v in vids} for r in ranks]
        assert len(videos[0] | videos[1]) == NUM_VIDEOS  # repeated_sampling 1: every video once
    assert ranks[0]["seen"][0][1] != ranks[0]["seen"][2][1]  # epoch 1 is reshuffled


def assert_lr_scaled(ranks: list[dict], model_kw: dict) -> None:
    expected = model_kw["base_lr"] * BATCH * 2 / 256  # per-device batch x 2 devices x accumulate 1
    assert all(r["lr"] == pytest.approx(expected) and r["world_size"] == 2 for r in ranks)


def test_siammae_ddp_spawn(video_root, tmp_path, monkeypatch):
    ranks = spawn_fit("siammae", video_root, tmp_path / "out", monkeypatch)
    assert ranks[0]["ddp_type"] == "DistributedDataParallel"
    assert_ranks_in_sync(ranks)
    assert_disjoint_cover(ranks)
    assert_lr_scaled(ranks, tiny("siammae")[1])


def test_videomac_ddp_spawn_ema_target_identical(video_root, tmp_path, monkeypatch):
    ranks = spawn_fit("videomac", video_root, tmp_path / "out", monkeypatch)
    assert_ranks_in_sync(ranks)  # online and EMA target parameters, and every tensor at the start
    assert_disjoint_cover(ranks)
    assert_lr_scaled(ranks, tiny("videomac")[1])
    state = ranks[0]["state"]
    target = [k for k in state if k.startswith("target.")]
    # DDP must not touch the target (no gradient buckets, no broadcast): it only follows the online EMA.
    assert ranks[0]["ddp_ignored"] == sorted(target)
    params = set(ranks[0]["params"])
    moved = [k for k in target if k in params and not torch.equal(state[k], ranks[0]["initial"][k])]
    assert moved, "the EMA target never moved"
    weight = "target.encoder"  # the target lags behind the online network (momentum 0.996)
    pairs = [(k, "online." + k.removeprefix("target.")) for k in target if k.startswith(weight)]
    assert any(not torch.equal(state[t], state[o]) for t, o in pairs)


def test_cli_ddp_subprocess_siammae(video_root, tmp_path):
    """The real ``ddp`` launcher (as under torchrun / SLURM) via ``python -m lightning_modules fit``."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = [
        sys.executable, "-m", "lightning_modules", "fit", "--config", "configs/demo/siammae_tiny.yaml",
        "--data.root", str(video_root), "--data.batch_size", str(BATCH),
        "--trainer.devices", "2", "--trainer.strategy", "ddp", f"--trainer.max_epochs={EPOCHS}",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--model.log_images_every_n_steps", "0",
        "--trainer.callbacks+=tests.system.test_ddp_training.DesyncInit",
        "--trainer.callbacks+=tests.system.test_ddp_training.RankState", f"--trainer.callbacks.out_dir={out}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=ddp_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert_ranks_in_sync(ranks)
    assert_disjoint_cover(ranks)
    assert "effective batch 4" in proc.stdout + proc.stderr  # the lr rule is logged at start-up
    assert (tmp_path / "config.yaml").is_file()  # LightningCLI's config copy went to the run dir, not cwd
