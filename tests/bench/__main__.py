"""`python -m tests.bench [name ...]`: run tests/bench/bench_<name>.py modules, print one markdown table.

Every row is also appended to ``runs/bench/results.csv`` (the table's columns plus ``run_at``, the UTC start
of the run), so a row can be tracked from run to run by its exact benchmark name.
"""

from __future__ import annotations

import csv
import datetime
import importlib
import operator
import pkgutil
import sys
import traceback
from pathlib import Path

import tests.bench as bench_pkg

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
COLUMNS = ("benchmark", "a_name", "a_value", "b_name", "b_value", "unit", "ratio", "target", "met")
RESULTS = Path("runs/bench/results.csv")


def target_met(row: dict) -> str:
    """'yes'/'no' for a row's target condition on its ratio ('-' without a target)."""
    if "met" in row and row["met"] is not None:
        return "yes" if row["met"] else "no"
    target = row.get("target")
    if not target or row.get("ratio") is None:
        return "-"
    op, _, value = str(target).partition(" ")
    if op not in _OPS:
        raise ValueError(f"target must look like '>= 10', got {target!r}")
    return "yes" if _OPS[op](float(row["ratio"]), float(value)) else "no"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def discover(names: list[str]) -> list[str]:
    """Module names bench_<name> under tests/bench, all of them when `names` is empty."""
    found = sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__) if m.name.startswith("bench_"))
    if not names:
        return found
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in names]
    missing = [w for w in wanted if w not in found]
    if missing:
        raise SystemExit(f"unknown benchmark(s) {missing}; available: {[f[6:] for f in found]}")
    return wanted


def append_results(rows: list[dict], path: Path, run_at: str) -> None:
    """Append rows (the table's columns, unformatted values, plus ``run_at``) to the CSV at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow((*COLUMNS, "run_at"))
        for row in rows:
            writer.writerow((*("" if row.get(c) is None else row.get(c) for c in COLUMNS), run_at))


def main(argv: list[str] | None = None, results: Path = RESULTS) -> int:
    """Run the selected benchmarks, print the table and append it to ``results``; 1 if a module failed."""
    failed = False
    run_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name in discover(list(sys.argv[1:] if argv is None else argv)):
        try:
            rows = importlib.import_module(f"tests.bench.{name}").rows()
        except Exception:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failed = True
            rows = [{"benchmark": f"{name}: FAILED (traceback above)"}]
        rows = [{**row, "met": target_met(row)} for row in rows]
        for row in rows:
            lines.append("| " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
        append_results(rows, results, run_at)  # per module: a later crash keeps the rows measured so far
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
