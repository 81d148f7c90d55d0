"""Every YAML under configs/ parses through the real CLI (alone, or composed with the base it modifies)."""

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
STUDY_BASES = (
    "--config",
    str(CONFIGS / "demo" / "siammae_cpu.yaml"),
    "--config",
    str(CONFIGS / "study" / "base.yaml"),
)


def base_for(path: Path, tmp_path: Path) -> list[str]:
    """The config arguments needed to parse ``path``: deltas are composed with their method's base."""
    rel = path.relative_to(CONFIGS)
    if rel.parts[0] == "study" and rel.name != "base.yaml":
        # study deltas may carry a ``study:`` block read by `corrmae study` itself, not by the CLI
        from lightning_modules.tools.study_variants import split_variant

        cli_part, _ = split_variant(path)
        delta = tmp_path / rel.name
        delta.write_text(yaml.safe_dump(cli_part or {}))
        return [*STUDY_BASES, "--config", str(delta)]
    if rel == Path("study/base.yaml"):  # the study's changes to the demo recipe
        return [*STUDY_BASES[:2], "--config", str(path)]
    if rel.parts[0] == "ablations":
        base = {"siammae": "siammae.yaml", "videomac": "videomac_rn50.yaml"}[rel.parts[1]]
        return ["--config", str(CONFIGS / base), "--config", str(path)]
    if rel.parts[0] in (
        "siammae",
        "videomac",
    ):  # a paper variant's delta (tests/system/test_recipe_configs.py)
        return ["--config", str(CONFIGS / f"{rel.parts[0]}.yaml"), "--config", str(path)]
    if rel.parts[0] == "trainer":
        return ["--config", str(CONFIGS / "siammae.yaml"), "--trainer", str(path)]
    return ["--config", str(path)]


ALL = sorted(p for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(CONFIGS)) for p in ALL])
def test_config_parses(path: Path, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["fit", *base_for(path, tmp_path), "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "model:" in printed and "class_path" in printed


DELTA_FOLDERS = ("ablations/siammae", "ablations/videomac", "siammae", "videomac")
DELTAS = sorted(p for folder in DELTA_FOLDERS for p in (CONFIGS / folder).glob("*.yaml"))


def content_lines(path: Path) -> list[str]:
    """The lines that set something: not blank, not a whole-line comment."""
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_every_table_row_has_a_delta():
    assert len(list((CONFIGS / "ablations" / "siammae").glob("*.yaml"))) >= 20, "SiamMAE Tables 2a-2d, 3a-3b"
    assert len(list((CONFIGS / "ablations" / "videomac").glob("*.yaml"))) >= 30, (
        "VideoMAC Tables 3a-3d, 4b-4f"
    )


# Some deltas restate the base's value (e.g. ablations/siammae/asymmetric_0.95.yaml): they are the table's
# default row, kept so that looping over a folder reproduces the whole table. They still count as deltas here.
@pytest.mark.parametrize("path", DELTAS, ids=[str(p.relative_to(CONFIGS)) for p in DELTAS])
def test_delta_is_short_and_says_why(path: Path):
    lines = content_lines(path)
    assert 1 <= len(lines) <= 6, f"{path}: {len(lines)} content lines; a delta sets 1-6"
    assert path.read_text().lstrip().startswith("#"), f"{path}: a delta starts with the reason (table row)"


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
