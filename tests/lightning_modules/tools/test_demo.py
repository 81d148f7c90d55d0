"""The demo's printed tables: one row per feature type, preset and tuned J&F per test split."""

from lightning_modules.tools.demo import results_table


def test_results_table_has_a_column_pair_per_split_and_the_tuned_setting():
    def r(preset, tuned):
        return {"preset_JF": preset, "val_JF": tuned, "val_J": tuned + 0.01, "val_F": tuned - 0.01,
                "temperature": 0.03, "topk": 7}  # fmt: skip

    rows = {
        "trained": {"val": r(0.5, 0.6), "hard": r(0.4, 0.45)},
        "random init": {"val": r(0.55, 0.58), "hard": r(0.3, 0.35)},
    }
    lines = results_table(rows).splitlines()
    assert lines[0].startswith(
        "| features | val J&F (preset) | val J&F (tuned) | val J / F (tuned) | hard J&F"
    )
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|") == 9
    assert (
        lines[2]
        == "| trained | 0.500 | **0.600** | 0.610 / 0.590 | 0.400 | **0.450** | 0.460 / 0.440 | 0.03 / 7 |"
    )
    assert lines[3].startswith("| random init | 0.550 | **0.580** |") and len(lines) == 4
