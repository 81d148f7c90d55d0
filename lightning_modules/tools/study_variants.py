"""The study's variants, trained through the CLI: the recipe, ``configs/study/base.yaml``, a delta each.

A variant may carry a ``study:`` section that the study consumes (it is not a CLI key):
``videos: real | synthetic | all`` picks the training videos under ``<data>/videos``.
"""

import time
from pathlib import Path

import yaml

from lightning_modules.cli import run_cli


def variant_files(config_dir: Path, names: list[str] | None) -> list[Path]:
    """The variant files to run (all but ``base.yaml`` by default), validated."""
    if names:
        files = [config_dir / f"{n}.yaml" for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"unknown study variants (no such file): {missing}")
        return files
    return sorted(f for f in config_dir.glob("*.yaml") if f.name != "base.yaml")


def split_variant(path: Path) -> tuple[dict, dict]:
    """A variant file -> (CLI config delta, study options)."""
    delta = yaml.safe_load(path.read_text()) or {}
    if not isinstance(delta, dict):
        raise ValueError(f"{path}: a study variant must be a YAML mapping, got {type(delta).__name__}")
    options = delta.pop("study", None) or {}
    if options.get("videos", "all") not in ("real", "synthetic", "all"):
        raise ValueError(f"{path}: study.videos must be real, synthetic or all, got {options['videos']!r}")
    return delta, options


def train_variant(
    name: str, bases: list[Path], variant: Path, videos: Path, out: Path, extra: list[str]
) -> dict:
    """Fit one variant (``bases``, then its delta) through the CLI.

    Returns the checkpoint, steps, seconds, last loss and the logger.
    """
    delta, options = split_variant(variant)
    run_dir = out / "configs"
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = [arg for base in bases for arg in ("--config", str(base))]
    if delta:  # the delta without the study section, kept next to the results as the run's record
        delta_path = run_dir / f"{name}.yaml"
        delta_path.write_text(yaml.safe_dump(delta, sort_keys=False))
        configs += ["--config", str(delta_path)]
    subset = options.get("videos", "all")
    root = videos if subset == "all" else videos / subset  # a sub-folder has no index: it is scanned
    args = ["fit", *configs, "--data.root", str(root), "--trainer.logger.init_args.save_dir", str(out / "tb")]
    start = time.monotonic()
    cli = run_cli([*args, "--trainer.logger.init_args.name", name, *extra])
    seconds = time.monotonic() - start
    trainer = cli.trainer
    loss = trainer.callback_metrics.get("train/loss_step", trainer.callback_metrics.get("train/loss"))
    return {
        "ckpt": Path(trainer.checkpoint_callback.last_model_path),
        "steps": trainer.global_step,
        "train_s": round(seconds, 1),
        "final_loss": round(float(loss), 4) if loss is not None else float("nan"),
        "logger": trainer.logger,
    }
