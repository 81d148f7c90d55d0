"""`python -m tests.gpu.check --out DIR` (`make gpu-check OUT=DIR`): the prepared GPU check.

With CUDA: real sizes, about 6 minutes on an H200 (section budgets in ``sizes.py``). Without CUDA: the same
code at tiny sizes on the CPU, and the report says so in its first lines. Writes DIR/report.md (one ``##``
heading per section), DIR/report.csv (section,item,metric,value,unit,note) and DIR/log.txt (tracebacks);
the report is rewritten after each section, so a run cut short keeps what it finished. Exit status 0 when
every section ran without an error row, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch

if not __package__:  # run as a file (`python tests/gpu/check.py`): the repository root replaces tests/gpu/
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from tests.gpu import sec_environment, sec_loader, sec_numerics, sec_propagation, sec_training, sizes
from tests.gpu.harness import Context, run_section
from tests.gpu.report import Report

# Run order: the environment first (its bf16 peak is every MFU's denominator), the loader after training
# (it compares with the step's consumption). The report puts training speed first (report.SECTIONS), the
# figure a reader opens it for.
RUN_ORDER = (
    ("Environment", sec_environment.run),
    ("Training steps", sec_training.run),
    ("Numerics", sec_numerics.run),
    ("Propagation on GPU at real DAVIS sizes", sec_propagation.run),
    ("Feeding the step", sec_loader.run),
)
SHORT = {"environment": 0, "training": 1, "numerics": 2, "propagation": 3, "loader": 4}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.gpu.check", description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        default=os.environ.get("OUT") or "runs/gpu-check",
        help="output folder for report.md, report.csv, log.txt (default $OUT if set, else runs/gpu-check)",
    )
    p.add_argument("--sections", default=",".join(SHORT), help=f"comma-separated subset of {sorted(SHORT)}")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes even on a GPU (a quick smoke run)")
    p.add_argument(
        "--compile", dest="compile", action="store_true", default=None, help="time compile_model=True"
    )
    p.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip the compile_model=True rows"
    )
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section budget")
    p.add_argument(
        "--max-seconds", type=float, default=None, help="whole-run budget (default 1.05 x sections')"
    )
    return p.parse_args(argv)


def pick_device(name: str) -> torch.device:
    """cuda when asked for or available (auto), else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    return torch.device(name)


def preamble(device: torch.device, sz: sizes.Sizes) -> list[str]:
    """The lines that say where and at what sizes the figures were measured."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if device.type == "cuda":
        where = (
            f"**Device: {torch.cuda.get_device_name(device)}** (CUDA {torch.version.cuda}), {sz.name} sizes."
        )
    else:
        where = (
            "**No CUDA: these figures come from the CPU at tiny sizes.** They show that every path "
            "runs, not how fast a GPU is; run this on a GPU for the real figures."
        )
    return [
        where,
        "",
        f"Measured {when} in one run; torch {torch.__version__}, python {sys.version.split()[0]}.",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections in order; returns 0 if no section recorded an error."""
    args = parse_args(argv)
    device = pick_device(args.device)
    sz = sizes.gpu() if device.type == "cuda" and not args.tiny else sizes.cpu()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SHORT]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {sorted(SHORT)}")
    out = Path(args.out)
    report = Report(out, "corrmae GPU check", preamble(device, sz))
    ctx = Context(device=device, sizes=sz, report=report)
    ctx.shared["compile"] = sz.compile if args.compile is None else args.compile
    torch.set_num_threads(
        max(1, min(8, os.cpu_count() or 1)) if device.type == "cuda" else torch.get_num_threads()
    )
    t0 = time.monotonic()
    chosen = [RUN_ORDER[SHORT[s]] for s in sorted(wanted, key=SHORT.get)]
    budgets = [sz.budgets[name] * args.budget_scale for name, _ in chosen]
    deadline = t0 + (args.max_seconds or 1.05 * sum(budgets))
    for i, (name, fn) in enumerate(chosen):
        # The run as a whole has a deadline too: a late section shrinks, keeping ~15 s for each one after it.
        later = sum(min(15.0, b) for b in budgets[i + 1 :])
        budget = min(budgets[i], max(5.0, deadline - time.monotonic() - later))
        print(f"[gpu-check] {name} (budget {budget:.0f} s) ...", flush=True)
        run_section(ctx, name, fn, budget)
        print(f"[gpu-check] {name}: {report.status[name]}", flush=True)
    report.preamble.append(f"Total wall time {time.monotonic() - t0:.0f} s.")
    report.write()
    (out / "log.txt").write_text("\n".join(ctx.log) or "no errors\n")
    errors = report.errors()
    print(f"[gpu-check] wrote {out / 'report.md'} and report.csv; {len(errors)} error row(s)", flush=True)
    for r in errors:
        print(f"  {r.section} / {r.item}: {r.value}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
