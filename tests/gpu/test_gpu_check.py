"""The prepared GPU check (`make gpu-check`, tests/gpu/) runs on CPU at tiny sizes, so it cannot rot.

The whole check runs once, in a subprocess whose python cannot import the packages the device machine lacks
(jsonargparse, PyAV, decord, torchcodec, scikit-video): what passes here imports nothing the device lacks.
"""

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gpu.harness import Context, SectionTimeout, hard_limit, run_section
from tests.gpu.report import SECTIONS, Report
from tests.gpu.sizes import cpu

ROOT = Path(__file__).resolve().parents[2]
MISSING_ON_DEVICE = ("jsonargparse", "av", "decord", "torchcodec", "skvideo")
BLOCK = "import sys\nfor m in {mods!r}: sys.modules[m] = None  # import m now raises ImportError\n"


def run_blocked(code: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run python code with the device's missing packages made unimportable."""
    src = BLOCK.format(mods=MISSING_ON_DEVICE) + code
    return subprocess.run(
        [sys.executable, "-c", src], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One full CPU run of the check (every section), shared by the assertions below."""
    out = tmp_path_factory.mktemp("gpu-check")
    t0 = time.monotonic()
    args = ["--out", str(out), "--device", "cpu"]
    code = f"from tests.gpu.check import main\nraise SystemExit(main({args!r}))"
    res = run_blocked(code, ROOT)
    rows = list(csv.DictReader(open(out / "report.csv"))) if (out / "report.csv").exists() else []
    return {"res": res, "out": out, "rows": rows, "seconds": time.monotonic() - t0}


def values(rows, section: str, metric: str) -> list[str]:
    return [r["value"] for r in rows if r["section"] == section and r["metric"] == metric]


def test_cpu_run_succeeds_with_device_packages_missing(cpu_run):
    res = cpu_run["res"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    errors = [r for r in cpu_run["rows"] if r["metric"] == "error"]
    assert not errors, errors


def test_report_has_one_heading_per_section_in_order_and_says_cpu(cpu_run):
    md = (cpu_run["out"] / "report.md").read_text()
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    assert "No CUDA" in md.split("## ")[0]  # the preamble says these are CPU figures
    for section in SECTIONS:
        assert any(r["section"] == section for r in cpu_run["rows"]), f"no rows for {section}"
        assert f"## {section}\n\nSection status: ran in" in md


def test_training_rows_measure_every_model_and_real_fit_steps(cpu_run):
    rows, sz = cpu_run["rows"], cpu()
    items = {r["item"] for r in rows if r["section"] == "Training steps" and r["metric"] == "pairs/s"}
    expected = {f"{s.label} eager" for s in sz.siammae} | {
        f"{m.label} masked-dense eager" for m in sz.videomac
    }
    assert items == expected
    assert all(float(v) > 0 for v in values(rows, "Training steps", "pairs/s"))
    assert all(0 < float(v) < 1 for v in values(rows, "Training steps", "MFU"))
    assert values(rows, "Training steps", "optimiser steps") == [str(sz.fit_steps)] * 2
    assert values(rows, "Training steps", "non-finite skips") == ["0", "0"]
    assert values(rows, "Training steps", "EMA target updated") == ["True"]


def test_numerics_bf16_close_to_fp32_and_ema_matches_float64(cpu_run):
    rows = cpu_run["rows"]
    siam = [r for r in rows if r["item"].startswith("SiamMAE") and r["metric"] == "grad cosine bf16 vs fp32"]
    assert len(siam) == 1 and float(siam[0]["value"]) > 0.99
    assert all(float(v) < 1e-2 for v in values(rows, "Numerics", "loss rel. error bf16"))
    assert float(values(rows, "Numerics", "max |cpu - float64 formula|")[0]) < 1e-5
    sdpa = values(rows, "Numerics", "bf16 autocast")
    assert sdpa and "scaled_dot_product" in sdpa[0]


def test_propagation_tiled_matches_dense_and_estimates_exist(cpu_run):
    rows, section = cpu_run["rows"], "Propagation on GPU at real DAVIS sizes"
    assert all(float(v) >= 0.99 for v in values(rows, section, "cells where tiled = dense (1e-4)"))
    assert all(float(v) > 0.8 for v in values(rows, section, "accuracy vs truth (fp32)"))
    assert float(values(rows, section, "argmax agreement bf16 vs fp32")[0]) > 0.9
    assert values(rows, section, "wall time (benchmarks measured above)")


def test_loader_rows_and_cores_per_gpu(cpu_run):
    rows, section = cpu_run["rows"], "Feeding the step"
    delivered = values(rows, section, "pairs/s delivered")
    # one row per worker count, plus the decode_on: gpu path (JPEG bytes decoded on the device)
    assert len(delivered) == len(cpu().loader_workers) + 1 and all(float(v) > 0 for v in delivered)
    assert float(values(rows, section, "loader cores needed per GPU")[0]) > 0


def test_failing_section_and_item_are_recorded_and_the_rest_runs(tmp_path):
    ctx = Context(device=__import__("torch").device("cpu"), sizes=cpu(), report=Report(tmp_path, "t"))

    def broken(c):
        with c.item("first"):
            raise ValueError("item broke")
        c.add("second", "value", 1.0)  # the section goes on after a failing item
        raise RuntimeError("section broke")

    run_section(ctx, SECTIONS[0], broken, budget=5)
    run_section(ctx, SECTIONS[1], lambda c: c.add("fine", "value", 2.0), budget=5)
    errs = [(r.item, r.value) for r in ctx.report.errors()]
    assert errs == [("first", "ValueError: item broke"), ("section", "RuntimeError: section broke")]
    assert ctx.report.status[SECTIONS[0]].startswith("FAILED") and "ran in" in ctx.report.status[SECTIONS[1]]
    assert [r.item for r in ctx.report.rows if r.metric == "value"] == ["second", "fine"]
    md = (tmp_path / "report.md").read_text()  # written after each section
    assert "item broke" in md and "Not run." in md  # sections never run still get their heading


def test_hard_time_guard_interrupts_python_loops():
    t0 = time.monotonic()
    with pytest.raises(SectionTimeout), hard_limit(0.2):
        while time.monotonic() - t0 < 5:
            pass
    assert time.monotonic() - t0 < 2


def test_makefile_target_needs_no_venv(repo_root):
    res = subprocess.run(
        ["make", "-n", "gpu-check", "OUT=/tmp/x", "GPU_PY=python3"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert 'python3 -m tests.gpu.check --out "/tmp/x"' in res.stdout
    assert "pip" not in res.stdout and "venv" not in res.stdout


def test_gpu_sizes_match_the_benchmarks_and_fit_the_device_budget():
    from tests.gpu.sizes import gpu

    sz = gpu()
    assert set(sz.budgets) == set(SECTIONS)
    assert 1.05 * sum(sz.budgets.values()) + 30 < 420  # the run tool's timeout_s in README, with slack
    for s in sz.propagation:
        stride = 8 if "patch8" in s.vit else 16
        assert s.grid == (s.image[0] // stride, s.image[1] // stride), s.label
        assert s.image[0] % stride == 0 and s.image[1] % stride == 0
    davis8 = sz.propagation[0]
    assert (davis8.grid, davis8.dim, davis8.preset, davis8.frames) == ((60, 107), 384, "davis", 1999)


def test_training_batch_halves_on_cuda_out_of_memory(tmp_path, monkeypatch):
    import torch

    from tests.gpu import models, sec_training

    ctx = Context(device=torch.device("cpu"), sizes=cpu(), report=Report(tmp_path, "t"))
    ctx.section = SECTIONS[0]
    real = models.random_frames

    def frames_or_oom(batch, img, device, seed=0):
        if batch > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(batch, img, device, seed)

    monkeypatch.setattr(models, "random_frames", frames_or_oom)
    s = ctx.sizes.siammae[0]
    r = sec_training._measure(ctx, "x", lambda: models.build_siammae(s.kwargs), 8, 64, True, budget=2.0)
    assert r["batch"] == 2 and r["median_s"] > 0 and r["flops"] > 0
    assert ctx.report.notes[SECTIONS[0]] == [
        "x: batch 8 ran out of GPU memory; retried with 4.",
        "x: batch 4 ran out of GPU memory; retried with 2.",
    ]
