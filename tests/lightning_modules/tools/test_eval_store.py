"""Resumable eval-all: a run SIGKILLed half-way and rerun gives the uninterrupted run's results exactly."""

import filecmp
import signal
import subprocess
import sys

import pytest

from datamodules.benchmark_gen import write_davis_benchmark
from lightning_modules.tools.eval_all import main as eval_all
from tests.conftest import ddp_clean_env
from tests.system.test_bad_input import REPO

FRAMES, SEQUENCES = 5, 4


@pytest.fixture
def data(tmp_path):
    write_davis_benchmark(tmp_path / "data/DAVIS", seed=3, num_val=SEQUENCES, num_tune=0, num_frames=FRAMES,
                          size=(48, 64))  # fmt: skip
    return tmp_path / "data"


def args(data, out, *extra):
    return ["--model", "pixels", "--data", str(data), "--out", str(out), "--benchmarks", "davis",
            "--short-side", "0", *extra]  # fmt: skip


def same_tree(a, b) -> bool:
    """Same files with the same bytes (every PNG, every table), temp folders excluded."""
    cmp = filecmp.dircmp(a, b)
    files = [f for f in cmp.common_files]
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    return (not cmp.left_only and not cmp.right_only and not mismatch and not errors
            and all(same_tree(a / d, b / d) for d in cmp.common_dirs))  # fmt: skip


def test_killed_run_resumes_to_identical_results(data, tmp_path, capsys):
    full = eval_all(args(data, tmp_path / "full"))
    out = tmp_path / "killed"
    kill_at = 2 * FRAMES + 2  # in the middle of the third sequence's PNGs
    env = {**ddp_clean_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    helper = "tests.helpers.eval_kill_helper"
    proc = subprocess.run([sys.executable, "-m", helper, str(kill_at), *args(data, out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(list((out / "records/davis").glob("*.json"))) == 2  # two sequences finished before the kill
    assert list((out / "davis").glob(".partial-*/*/*.png"))  # the third was half-written
    assert not (out / "results.csv").exists()
    capsys.readouterr()
    resumed = eval_all(args(data, out))
    printed = capsys.readouterr().out
    assert (
        "2 finished videos are reused" in printed and f"{SEQUENCES - 2} videos evaluated, 2 reused" in printed
    )
    assert resumed == full
    assert (out / "results.csv").read_bytes() == (tmp_path / "full/results.csv").read_bytes()
    assert not list((out / "davis").glob(".partial-*"))
    assert same_tree(out / "davis", tmp_path / "full/davis")
    assert (out / "davis_per_object.csv").read_bytes() == (
        tmp_path / "full/davis_per_object.csv"
    ).read_bytes()


def test_changed_settings_are_refused_until_restart(data, tmp_path, capsys):
    out = tmp_path / "out"
    eval_all(args(data, out))
    for extra, what in ((["--topk", "3"], "davis.propagation.topk"), (["--patch-size", "16"], "patch_size"),
                        (["--model", "resnet18"], "model")):  # fmt: skip
        with pytest.raises(
            SystemExit, match=rf"holds results of a different evaluation \(changed: .*{what}.*--restart"
        ):
            eval_all(args(data, out, *extra))
    capsys.readouterr()
    eval_all(args(data, out, "--topk", "3", "--restart"))
    assert f"{SEQUENCES} videos evaluated, 0 reused" in capsys.readouterr().out
    eval_all(args(data, out, "--topk", "3"))  # same settings again: everything reused
    assert f"0 videos evaluated, {SEQUENCES} reused" in capsys.readouterr().out


def test_changed_weights_file_is_detected(tmp_path, data):
    import torch

    from lightning_modules.feature_models.timm_features import TimmFeatures

    weights = tmp_path / "w.pth"
    torch.save(TimmFeatures("resnet18").model.state_dict(), weights)
    common = ["--model", "resnet18", "--stage", "2", "--weights", str(weights), "--data", str(data),
              "--out", str(tmp_path / "o"), "--benchmarks", "davis", "--short-side", "0",
              "--max-videos", "1"]  # fmt: skip
    eval_all(common)
    torch.manual_seed(1)
    torch.save(TimmFeatures("resnet18").model.state_dict(), weights)  # same path, other content
    with pytest.raises(SystemExit, match=r"changed: weights"):
        eval_all(common)
