"""The three entry points exist and reach LightningCLI."""

import subprocess
import sys
from pathlib import Path

import pytest

from lightning_modules.cli import TOOLS, main

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd", [[sys.executable, "-m", "lightning_modules"], [str(BIN / "corrmae")], [str(BIN / "lightning")]]
)
def test_entry_points_show_subcommands(cmd):
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for sub in ("fit", "validate", "test", "predict"):
        assert sub in out.stdout


def test_tools_are_importable():
    import importlib

    for target in TOOLS.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_unknown_subcommand_is_an_error():
    with pytest.raises(SystemExit) as exc:
        main(["fitt"])
    assert exc.value.code != 0


CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo" / "siammae_tiny.yaml"


def test_model_class_must_be_a_corrmae_system(capsys):
    from lightning_modules.cli import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(["fit", "--config", str(CONFIG), "--model", "lightning.pytorch.demos.BoringModel"])
    assert exc.value.code != 0
    assert "VideoSSLModule" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # control: a corrmae system passes the same check
        run_cli(["fit", "--config", str(CONFIG), "--model", "lightning_modules.SiamMAE", "--print_config"])
    assert exc.value.code in (0, None)


def test_fit_installs_the_guard_the_data_health_log_and_the_watchdog(tmp_path):
    from callbacks import NonFiniteGuard, RankLossWatchdog, SkippedVideosLogger
    from datamodules.synthetic import write_synthetic_videos
    from lightning_modules.cli import run_cli

    write_synthetic_videos(tmp_path / "videos", num_videos=3, num_frames=12, size=(48, 64), seed=0)
    cli = run_cli([
        "fit", "--config", str(CONFIG), "--data.root", str(tmp_path / "videos"), "--trainer.fast_dev_run=1",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--model.nonfinite", "raise",
        "--model.max_nonfinite_skips", "3",
    ])  # fmt: skip
    kinds = [type(cb) for cb in cli.trainer.callbacks]
    assert {NonFiniteGuard, SkippedVideosLogger, RankLossWatchdog} <= set(kinds)
    assert kinds.count(NonFiniteGuard) == 1
    guard = next(cb for cb in cli.trainer.callbacks if isinstance(cb, NonFiniteGuard))
    assert (guard.policy, guard.max_skips) == ("raise", 3)
    assert cli.trainer.callback_metrics["train/skipped_videos"] == 0
