"""The VideoMAC paper configs are one base plus per-encoder deltas; the expanded files must match them.

``configs/videomac_<enc>.yaml`` = ``configs/videomac.yaml`` + ``configs/videomac/<enc>.yaml`` (so that
``--config configs/videomac_rn50.yaml`` alone works). After editing the base or a delta, regenerate with
``PYTHONPATH=. python -m tests.test_videomac_configs``.
"""

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENCODERS = ("rn18", "rn50", "cnxv2t", "cnxv2s")
HEADER = (
    "# GENERATED: configs/videomac.yaml + configs/videomac/{enc}.yaml (the commented recipe lives there).\n"
    "# Regenerate with `PYTHONPATH=. python -m tests.test_videomac_configs`; tests check they agree.\n"
    "#   corrmae fit --config configs/videomac_{enc}.yaml --trainer configs/trainer/gpu.yaml --data.root D\n"
)


def merge(base: dict, delta: dict) -> dict:
    """Later config wins: dicts merge key by key, anything else (lists included) is replaced."""
    out = dict(base)
    for k, v in delta.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def expanded(enc: str) -> dict:
    """The full recipe of one encoder."""
    base = yaml.safe_load((CONFIGS / "videomac.yaml").read_text())
    return merge(base, yaml.safe_load((CONFIGS / "videomac" / f"{enc}.yaml").read_text()))


@pytest.mark.parametrize("enc", ENCODERS)
def test_expanded_config_is_base_plus_delta(enc):
    delta = CONFIGS / "videomac" / f"{enc}.yaml"
    assert len([ln for ln in delta.read_text().splitlines() if ln.strip()]) <= 12, "a delta is a few lines"
    full = yaml.safe_load((CONFIGS / f"videomac_{enc}.yaml").read_text())
    assert full == expanded(enc), f"videomac_{enc}.yaml is stale: python -m tests.test_videomac_configs"
    assert full["model"]["init_args"]["encoder_variant"] == "official"


def test_print_config_shows_the_official_encoder(capsys):
    """The issue's check: ``fit --config configs/videomac_rn50.yaml --print_config``."""
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


if __name__ == "__main__":
    for enc in ENCODERS:
        text = HEADER.format(enc=enc) + yaml.safe_dump(expanded(enc), sort_keys=False, width=110)
        (CONFIGS / f"videomac_{enc}.yaml").write_text(text)
        print(f"wrote configs/videomac_{enc}.yaml")
