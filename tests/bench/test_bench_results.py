"""`make bench` writes every table row to runs/bench/results.csv (appending, one run_at per run)."""

import csv

from tests.bench.__main__ import COLUMNS, append_results, target_met


def test_rows_are_appended_with_the_table_columns(tmp_path):
    path = tmp_path / "runs" / "bench" / "results.csv"
    row = {"benchmark": "input pipeline, x: pairs/s/core", "a_name": "a", "a_value": 2.0, "b_name": "b",
           "b_value": 5.0, "unit": "pairs/s/core", "ratio": 2.5, "target": ">= 1.8"}  # fmt: skip
    row["met"] = target_met(row)
    append_results([row], path, "2026-12-02T01:00:00+00:00")
    append_results([{"benchmark": "m: FAILED (traceback above)"}], path, "2026-12-02T02:00:00+00:00")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*COLUMNS, "run_at"]
    assert rows[0]["met"] == "yes" and float(rows[0]["ratio"]) == 2.5 and rows[0]["b_value"] == "5.0"
    assert rows[1]["benchmark"].endswith("FAILED (traceback above)") and rows[1]["a_value"] == ""
    assert [r["run_at"][11:13] for r in rows] == ["01", "02"]
