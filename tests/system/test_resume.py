"""Exact resume after a real crash: SIGKILL mid-epoch, ``--ckpt_path last``, identical per-step losses.

Each run is the real CLI in a subprocess (``python -m lightning_modules fit``) with a ModelCheckpoint every
optimiser step (``save_last``), a ``StepRecorder`` writing every step's exact loss and sample indices, and
for the crashed run a ``KillAtStep`` that SIGKILLs the process after step k's checkpoint is written. The
resumed run must continue with the same samples and bit-identical losses as the uninterrupted run: that
needs model, optimiser, LR schedule, VideoMAC's EMA target and momentum step, mask RNG, data order and
augmentation all restored, and the loader's mid-epoch position.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.synthetic import write_synthetic_videos
from tests.conftest import ddp_clean_env

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"siammae": "configs/demo/siammae_tiny.yaml", "videomac": "configs/demo/videomac_tiny.yaml"}
STEPS_PER_EPOCH = 4  # 4 videos x repeated_sampling 4 / batch 4
EPOCHS = 2


def fit(tmp: Path, name: str, method: str, workers: int, kill_at: int | None = None, resume: bool = False):
    """Run (or resume) one CLI fit in a subprocess; returns the CompletedProcess."""
    out = tmp / name
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "dirpath": str(out / "ckpt"),
                "every_n_train_steps": 1,
                "save_last": True,
                "save_top_k": 0,
            },
        },  # fmt: skip
        {
            "class_path": "tests.helpers.resume_helpers.StepRecorder",
            "init_args": {"path": str(out / "steps.jsonl")},
        },
    ]
    if kill_at is not None:
        callbacks.append(
            {"class_path": "tests.helpers.resume_helpers.KillAtStep", "init_args": {"step": kill_at}}
        )
    extra = {
        "model": {"init_args": {"log_images_every_n_steps": 0}},
        "data": {"init_args": {"root": str(tmp / "videos"), "repeated_sampling": 4, "num_workers": workers,
                               "persistent_workers": workers > 0}},
        "trainer": {"max_epochs": EPOCHS, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(out), "callbacks": callbacks},
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "extra.yaml").write_text(json.dumps(extra))  # JSON is YAML
    cmd = [sys.executable, "-m", "lightning_modules", "fit", "--config", CONFIGS[method],
           "--config", str(out / "extra.yaml")]  # fmt: skip
    if resume:
        cmd += ["--ckpt_path", "last"]
    env = {**ddp_clean_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def steps(path: Path) -> list[dict]:
    """Recorded rows, by step."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def crash_and_resume(tmp: Path, name: str, method: str, workers: int, kill_at: int) -> list[dict]:
    """Fit until SIGKILL after step ``kill_at``, resume from ``last``; the two runs' rows concatenated."""
    crashed = fit(tmp, name, method, workers, kill_at=kill_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    first = steps(tmp / name / "steps.jsonl")
    assert [r["step"] for r in first] == list(range(1, kill_at + 1))
    (tmp / name / "steps.jsonl").rename(tmp / name / "steps_before_kill.jsonl")
    resumed = fit(tmp, name, method, workers, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning for non-stateful loaders
    return first + steps(tmp / name / "steps.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["siammae", "videomac"])
def test_sigkill_mid_epoch_then_resume_reproduces_losses_exactly(tmp_path, method):
    write_synthetic_videos(tmp_path / "videos", num_videos=4, num_frames=12, size=(48, 64), seed=0)
    full = fit(tmp_path, "full", method, workers=0)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = steps(tmp_path / "full" / "steps.jsonl")
    assert [r["step"] for r in reference] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    assert len({r["loss"] for r in reference}) == len(reference)  # the losses do change step to step
    # Kill in the middle of epoch 0 with in-process loading, in the middle of epoch 1 with 2 workers.
    for name, workers, kill_at in (("w0", 0, 2), ("w2", 2, STEPS_PER_EPOCH + 1)):
        got = crash_and_resume(tmp_path, name, method, workers, kill_at)
        assert [r["step"] for r in got] == [r["step"] for r in reference], name
        assert [r["index"] for r in got] == [r["index"] for r in reference], f"{name}: data order differs"
        assert [r["batch_idx"] for r in got] == [r["batch_idx"] for r in reference], name
        assert [r["loss"] for r in got] == [r["loss"] for r in reference], f"{name}: losses differ"
        assert [r["param_sum"] for r in got] == [r["param_sum"] for r in reference], name
