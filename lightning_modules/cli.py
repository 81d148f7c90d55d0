"""Command-line entry point: ``corrmae`` / ``lightning`` / ``python -m lightning_modules``.

``fit|validate|test|predict`` go to LightningCLI (subclass mode: the YAML's ``class_path`` picks SiamMAE or
VideoMAC, or any other ``VideoSSLModule``, and the data module). A few project tools (data index, demo,
eval-all, study) are plain sub-commands dispatched before LightningCLI sees the arguments.

``--trust-checkpoint`` (anywhere on a ``fit|validate|test|predict`` command line) lets ``--ckpt_path`` load a
checkpoint that needs Python globals beyond the weights-only allow-list (``callbacks.safe_load``);
``CORRMAE_TRUST_CHECKPOINT=1`` in the environment does the same.
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
from callbacks.rank_loss import RankLossWatchdog
from callbacks.safe_load import TRUST_FLAG, load_torch_file
from lightning_modules.base import VideoSSLModule
from lightning_modules.systems import registered_class
from lightning_modules.tools.writable import probe_writable

TRUST_ENV = "CORRMAE_TRUST_CHECKPOINT"


TOOLS = {  # project sub-commands that are not Lightning's, mapped to ``module:function(argv)``
    "index": "datamodules.index:main",
    "prepare": "datamodules.prepare:main",
    "demo": "lightning_modules.tools.demo:main",
    "eval-all": "lightning_modules.tools.eval_all:main",
    "study": "lightning_modules.tools.study:main",
    "export": "lightning_modules.tools.export:main",
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
            probe_writable(directory)
        except OSError as err:
            raise SystemExit(f"fit: {what} {directory} is not writable ({err})") from err


class CorrMAECLI(LightningCLI):
    """LightningCLI that records the code version with the hyper-parameters; atomic checkpoint writes.

    Every fit also gets a rank-loss watchdog (added here) and, from the system itself
    (``VideoSSLModule.configure_callbacks``), the non-finite-step guard set by ``model.nonfinite`` /
    ``model.max_nonfinite_skips`` and the skipped-video log; one listed in ``trainer.callbacks`` replaces
    the default.

    Args:
        trust_checkpoint: ``--trust-checkpoint``: ``--ckpt_path`` may need globals beyond the allow-list.
    """

    def __init__(self, *args, trust_checkpoint: bool = False, **kwargs) -> None:
        self.trust_checkpoint = trust_checkpoint
        super().__init__(*args, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Take the model's hyper-parameters from ``--ckpt_path`` (as LightningCLI does), loaded safely.

        Why override: Lightning reads the file with its own ``torch.load`` and lets jsonargparse import and
        instantiate whatever class path the file records. Here the file goes through ``load_torch_file``
        (allow-list, ``--trust-checkpoint``) and the class path must name a registered corrmae system.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = load_torch_file(ckpt_path, self.trust_checkpoint)
        hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        class_path = hparams.pop("_class_path", None)
        if class_path:
            registered_class(str(class_path), ckpt_path)
            hparams = {"class_path": class_path, "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write(f"{ckpt_path}: its model hyper-parameters do not fit the config\n")
            raise

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The configured trainer, with crash-safe checkpoint writes unless a CheckpointIO was given."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer, self.trust_checkpoint)
        if not any(isinstance(cb, RankLossWatchdog) for cb in trainer.callbacks):
            trainer.callbacks.append(RankLossWatchdog())  # a lost DDP rank stops the others, named
        return trainer

    def before_fit(self) -> None:
        """Check the output directories; log git sha and library versions next to the config."""
        import timm
        import torch

        check_output_dirs(self.trainer)

        for logger in self.trainer.loggers:
            versions = {"torch": torch.__version__, "timm": timm.__version__, "lightning": L.__version__}
            logger.log_hyperparams({"git_sha": git_sha(), **versions})


def run_cli(args: ArgsType = None, trust_checkpoint: bool = False) -> CorrMAECLI:
    """Build and run LightningCLI; returns it so callers (the demo, tests) can reach trainer and model."""
    return CorrMAECLI(
        trust_checkpoint=trust_checkpoint,
        model_class=VideoSSLModule,
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
    if argv and argv[0] in TOOLS:
        module, func = TOOLS[argv[0]].split(":")
        getattr(importlib.import_module(module), func)(argv[1:])
        return
    trust = TRUST_FLAG in argv or os.environ.get(TRUST_ENV) == "1"
    if trust and args is None:
        # The DDP launcher re-runs sys.argv for the other ranks: they inherit the choice via the environment.
        os.environ[TRUST_ENV] = "1"
        sys.argv = [a for a in sys.argv if a != TRUST_FLAG]
    elif trust:
        args = [a for a in argv if a != TRUST_FLAG]
    run_cli(args, trust_checkpoint=trust)
