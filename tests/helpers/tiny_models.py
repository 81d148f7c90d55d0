"""The tiny SiamMAE of the unit tests, read from the tiny config the CLI tests fit: the two cannot drift."""

from pathlib import Path

import yaml

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo" / "siammae_tiny.yaml"
ARCHITECTURE = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "decoder_dim", "decoder_depth",
                "decoder_num_heads")  # fmt: skip


def tiny_siammae_args() -> dict:
    """The architecture arguments of ``configs/demo/siammae_tiny.yaml`` (training knobs at their defaults)."""
    init_args = yaml.safe_load(TINY_CONFIG.read_text())["model"]["init_args"]
    return {name: init_args[name] for name in ARCHITECTURE}
