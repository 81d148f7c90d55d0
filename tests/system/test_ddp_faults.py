"""A rank SIGKILLed mid-epoch under DDP (2 gloo processes, the real ``ddp`` launcher via the CLI).

The survivor must exit non-zero in bounded time naming the lost rank (``callbacks.rank_loss``), not hang;
then ``--ckpt_path last`` resumes and reproduces the uninterrupted run's per-rank losses bit for bit.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamodules.synthetic import write_synthetic_videos
from tests.conftest import ddp_clean_env

pytestmark = [pytest.mark.slow, pytest.mark.ddp]
REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH, EPOCHS = 4, 2  # 8 videos x repeated_sampling 2 / (2 ranks x batch 2)
COLLECTIVE_TIMEOUT = "0:01:00"  # short process-group timeout (rendezvous too; production: see README)


def fit(tmp: Path, name: str, kill: tuple[int, int] | None = None, resume: bool = False):
    """One 2-process CLI fit (or resume); returns (CompletedProcess, seconds it ran)."""
    out = tmp / name
    every_step = {"dirpath": str(out / "ckpt"), "every_n_train_steps": 1, "save_last": True, "save_top_k": 0}
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": every_step},
        {
            "class_path": "tests.helpers.ddp_fault_helpers.RankStepRecorder",
            "init_args": {"path": str(out / "steps")},
        },
    ]
    if kill is not None:
        killer = {"rank": kill[0], "step": kill[1], "stamp": str(out / "killed_at")}
        callbacks.append(
            {"class_path": "tests.helpers.ddp_fault_helpers.KillRankAtStep", "init_args": killer}
        )
    ddp = {"timeout": COLLECTIVE_TIMEOUT, "process_group_backend": "gloo"}
    extra = {
        "model": {"init_args": {"log_images_every_n_steps": 0}},
        "data": {"init_args": {"root": str(tmp / "videos"), "repeated_sampling": 2, "batch_size": 2,
                               "num_workers": 0}},
        "trainer": {"max_epochs": EPOCHS, "logger": False, "enable_progress_bar": False, "devices": 2,
                    "enable_model_summary": False, "default_root_dir": str(out), "callbacks": callbacks,
                    "strategy": {"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": ddp}},
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "extra.yaml").write_text(json.dumps(extra))
    cmd = [sys.executable, "-m", "lightning_modules", "fit", "--config", "configs/demo/siammae_tiny.yaml",
           "--config", str(out / "extra.yaml")] + (["--ckpt_path", "last"] if resume else [])  # fmt: skip
    env = {**ddp_clean_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc, time.time() - start


def rows(out: Path, rank: int) -> list[dict]:
    path = out / f"steps.rank{rank}"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.parametrize("lost_rank", [1, 0])
def test_sigkilled_rank_stops_survivor_then_resume_reproduces_losses(tmp_path, lost_rank):
    write_synthetic_videos(tmp_path / "videos", num_videos=8, num_frames=12, size=(48, 64), seed=2)
    full, _ = fit(tmp_path, "full")
    assert full.returncode == 0, full.stderr[-3000:]
    reference = [rows(tmp_path / "full", r) for r in (0, 1)]
    assert [r["step"] for r in reference[0]] == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))

    kill_at = STEPS_PER_EPOCH + 1  # mid-epoch 1, after step 5's checkpoint
    crashed, _ = fit(tmp_path, "run", kill=(lost_rank, kill_at))
    exit_s = time.time() - float((tmp_path / "run/killed_at").read_text())  # kill -> every process gone
    survivor = 1 - lost_rank
    log = crashed.stdout + crashed.stderr
    assert crashed.returncode != 0
    assert f"corrmae: rank {lost_rank} (pid" in log and "was lost" in log, log[-3000:]
    print(f"DDP rank-loss: rank {lost_rank} SIGKILLed, rank {survivor} exited after {exit_s:.1f} s")
    assert exit_s < 60, f"the survivor took {exit_s:.1f} s to exit"
    before = [rows(tmp_path / "run", r) for r in (0, 1)]
    assert [r["step"] for r in before[lost_rank]] == list(range(1, kill_at + 1))
    for r in (0, 1):
        (tmp_path / f"run/steps.rank{r}").rename(tmp_path / f"run/before.rank{r}")

    resumed, _ = fit(tmp_path, "run", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for r in (0, 1):
        got = before[r][:kill_at] + rows(tmp_path / "run", r)
        assert [x["step"] for x in got] == [x["step"] for x in reference[r]], f"rank {r}"
        assert [x["index"] for x in got] == [x["index"] for x in reference[r]], (
            f"rank {r}: data order differs"
        )
        assert [x["loss"] for x in got] == [x["loss"] for x in reference[r]], f"rank {r}: losses differ"
