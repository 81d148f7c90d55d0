"""Every YAML under configs/ parses through the real CLI (alone, or composed with the base it modifies)."""

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def base_for(path: Path, tmp_path: Path) -> list[str]:
    """The config arguments needed to parse ``path``: deltas are composed with their method's base."""
    rel = path.relative_to(CONFIGS)
    if rel.parts[0] == "study" and rel.name != "base.yaml":
        # study deltas may carry a ``study:`` block read by `corrmae study` itself, not by the CLI
        from lightning_modules.tools.study_variants import split_variant

        cli_part, _ = split_variant(path)
        delta = tmp_path / rel.name
        delta.write_text(yaml.safe_dump(cli_part or {}))
        return ["--config", str(CONFIGS / "study" / "base.yaml"), "--config", str(delta)]
    if rel.parts[0] == "ablations":
        base = {"siammae": "siammae.yaml", "videomac": "videomac_rn50.yaml"}[rel.parts[1]]
        return ["--config", str(CONFIGS / base), "--config", str(path)]
    if rel.parts[0] == "videomac":  # per-encoder deltas of the VideoMAC base (tests/test_videomac_configs.py)
        return ["--config", str(CONFIGS / "videomac.yaml"), "--config", str(path)]
    if rel.parts[0] == "trainer":
        return ["--config", str(CONFIGS / "siammae.yaml"), "--trainer", str(path)]
    if rel.parts[0] in ("callbacks", "data", "eval"):
        pytest.skip(f"{rel} is a fragment used by other configs")
    return ["--config", str(path)]


ALL = sorted(p for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(CONFIGS)) for p in ALL])
def test_config_parses(path: Path, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["fit", *base_for(path, tmp_path), "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "model:" in printed and "class_path" in printed


def test_ablation_delta_overrides_base(capsys):
    """A delta file really changes the value (later configs win)."""
    deltas = sorted((CONFIGS / "ablations" / "siammae").glob("*.yaml"))
    assert len(deltas) >= 20, "every row of SiamMAE Tables 2a-2d and 3a-3b should have a delta"
    for d in deltas:
        assert 2 <= len([ln for ln in d.read_text().splitlines() if ln.strip()]) <= 12, d


def test_evaluation_callback_appends_from_command_line(capsys):
    """README's recipe: add DAVIS evaluation to a paper config without editing it."""
    with pytest.raises(SystemExit):
        main([
            "fit", "--config", str(CONFIGS / "siammae.yaml"),
            "--trainer.callbacks+=LabelPropagationCallback",
            "--trainer.callbacks.root=/data/DAVIS", "--trainer.callbacks.every_n_epochs=100",
            "--print_config",
        ])  # fmt: skip
    printed = capsys.readouterr().out
    block = printed[printed.index("LabelPropagationCallback") :]
    assert "root: /data/DAVIS" in block and "every_n_epochs: 100" in block
