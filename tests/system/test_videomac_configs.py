"""The VideoMAC paper configs select the official encoders; ``--config`` deltas switch to timm's.

(That each ``configs/videomac_<enc>.yaml`` is the base plus its delta is checked in test_recipe_configs.py.)
"""

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main
from tests.system.test_recipe_configs import RECIPES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", sorted(n for n in RECIPES if n.startswith("videomac_")))
def test_paper_configs_use_the_official_encoders(name):
    full = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert full["model"]["init_args"]["encoder_variant"] == "official"


def test_print_config_shows_the_official_encoder(capsys):
    """How a user sees the resolved recipe: ``fit --config configs/videomac_rn50.yaml --print_config``."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIGS / "videomac_rn50.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "encoder_variant: official" in printed and "encoder_name: resnet50" in printed
    assert "init: official" in printed


def test_timm_ablation_delta_selects_timm(capsys):
    with pytest.raises(SystemExit):
        main([
            "fit", "--config", str(CONFIGS / "videomac_rn50.yaml"),
            "--config", str(CONFIGS / "ablations" / "videomac" / "encoder_timm.yaml"), "--print_config",
        ])  # fmt: skip
    printed = capsys.readouterr().out
    assert "encoder_variant: timm" in printed and "init: standard" in printed
