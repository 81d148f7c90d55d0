"""Command-line entry point: ``corrmae`` / ``lightning`` / ``python -m lightning_modules``.

``fit|validate|test|predict`` go to LightningCLI (subclass mode: the YAML's ``class_path`` picks SiamMAE or
VideoMAC and the data module). A few project tools (data index, demo, eval-all, study) are plain
sub-commands dispatched before LightningCLI sees the arguments.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningCLI

import callbacks  # noqa: F401  (registers callback classes for short class_path names)
import datamodules  # noqa: F401  (registers data modules)
import lightning_modules  # noqa: F401  (registers SiamMAE / VideoMAC)
from callbacks.checkpointing import use_atomic_checkpoints


def tools() -> dict[str, str]:
    """Project sub-commands that are not Lightning's, mapped to ``module:function(argv)``."""
    return {
        "index": "datamodules.index:main",
        "prepare": "datamodules.prepare:main",
        "demo": "lightning_modules.demo:main",
        "eval-all": "lightning_modules.evaluate:main",
        "study": "lightning_modules.study:main",
    }


def git_sha() -> str:
    """The commit of the code that runs, recorded with every run (DINO prints it too)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_output_dirs(trainer: L.Trainer) -> None:
    """Fail before training, naming the directory, when a logger or checkpoint directory is not writable.

    Why: Lightning creates a ``ModelCheckpoint(dirpath=...)`` only at the first save (after an epoch of
    compute), and TensorBoard's failure surfaces as "you tried to log -1" (its ``hp_metric``).
    """
    dirs = [(f"{type(lg).__name__} save_dir", lg.save_dir) for lg in trainer.loggers if lg.save_dir]
    dirs += [("checkpoint directory", cb.dirpath) for cb in trainer.checkpoint_callbacks if cb.dirpath]
    for what, directory in dirs:
        if "://" in str(directory):  # remote file systems: left to fsspec
            continue
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            probe = Path(directory) / f".write_test_{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise SystemExit(f"fit: {what} {directory} is not writable ({err})") from err


class CorrMAECLI(LightningCLI):
    """LightningCLI that records the code version with the hyper-parameters; atomic checkpoint writes."""

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The configured trainer, with crash-safe checkpoint writes unless a CheckpointIO was given."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def before_fit(self) -> None:
        """Check the output directories; log git sha and library versions next to the config."""
        import timm
        import torch

        check_output_dirs(self.trainer)

        for logger in self.trainer.loggers:
            versions = {"torch": torch.__version__, "timm": timm.__version__, "lightning": L.__version__}
            logger.log_hyperparams({"git_sha": git_sha(), **versions})


def run_cli(args: ArgsType = None) -> CorrMAECLI:
    """Build and run LightningCLI; returns it so callers (the demo, tests) can reach trainer and model."""
    return CorrMAECLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": True},
        args=args,
    )


def main(args: ArgsType = None) -> None:
    """Run a project tool or a LightningCLI sub-command."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in tools():
        module, func = tools()[argv[0]].split(":")
        getattr(importlib.import_module(module), func)(argv[1:])
        return
    run_cli(args)
