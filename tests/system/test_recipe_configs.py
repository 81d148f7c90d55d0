"""The paper recipes that are not a method's base are one base plus a short delta; the full files match them.

``configs/<method>_<variant>.yaml`` = ``configs/<method>.yaml`` + ``configs/<method>/<variant>.yaml``,
expanded so that ``--config configs/videomac_rn50.yaml`` alone works and a copy cannot drift from its base.
After editing a base or a delta, regenerate with ``PYTHONPATH=. python -m tests.system.test_recipe_configs``.
"""

from pathlib import Path

import pytest
import yaml

from lightning_modules.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = {  # expanded file stem: (base, delta), both relative to configs/
    "siammae_vits8": ("siammae.yaml", "siammae/vits8.yaml"),
    **{
        f"videomac_{enc}": ("videomac.yaml", f"videomac/{enc}.yaml")
        for enc in ("rn18", "rn50", "cnxv2t", "cnxv2s")
    },
}
HEADER = (
    "# GENERATED: configs/{base} + configs/{delta} (the commented recipe lives there).\n"
    "# Regenerate with `PYTHONPATH=. python -m tests.system.test_recipe_configs`; tests check they agree.\n"
    "#   corrmae fit --config configs/{name}.yaml --trainer configs/trainer/gpu.yaml --data.root D\n"
)


def merge(base: dict, delta: dict) -> dict:
    """Later config wins: dicts merge key by key, anything else (lists included) is replaced."""
    out = dict(base)
    for k, v in delta.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def expanded(name: str) -> dict:
    """The full recipe ``name`` (a key of ``RECIPES``)."""
    base, delta = RECIPES[name]
    return merge(yaml.safe_load((CONFIGS / base).read_text()), yaml.safe_load((CONFIGS / delta).read_text()))


def printed_config(capsys, *configs: Path) -> str:
    with pytest.raises(SystemExit):
        main(["fit", *(a for c in configs for a in ("--config", str(c))), "--print_config"])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_expanded_config_is_base_plus_delta(name):
    full = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert full == expanded(name), (
        f"configs/{name}.yaml is stale: PYTHONPATH=. python -m tests.system.test_recipe_configs"
    )


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_cli_resolves_base_plus_delta_like_the_expanded_file(name, capsys):
    """The CLI composes two ``--config`` files as ``merge`` does (init_args merge, lists are replaced)."""
    base, delta = RECIPES[name]
    composed = printed_config(capsys, CONFIGS / base, CONFIGS / delta)
    assert composed == printed_config(capsys, CONFIGS / f"{name}.yaml")


if __name__ == "__main__":
    for name, (base, delta) in RECIPES.items():
        text = HEADER.format(base=base, delta=delta, name=name)
        (CONFIGS / f"{name}.yaml").write_text(
            text + yaml.safe_dump(expanded(name), sort_keys=False, width=110)
        )
        print(f"wrote configs/{name}.yaml")
