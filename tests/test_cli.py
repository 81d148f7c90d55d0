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
