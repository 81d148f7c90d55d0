"""eval-all --protocol: the protocol and its overrides reach the evaluation and the results table."""

import csv

import pytest

from datamodules.benchmark_gen import write_davis_benchmark
from lightning_modules.tools.eval_all import main, parse_args, propagation_configs


def test_protocol_flags_build_per_benchmark_protocols():
    args = parse_args(["--model", "pixels", "--data", "d", "--out", "o", "--protocol", "crw", "--topk", "3"])
    configs = propagation_configs(args)
    assert {p.name for p in configs.values()} == {"crw"} and configs["vip"].propagation.topk == 3
    assert configs["davis"].propagation.context == "crw"
    default = propagation_configs(parse_args(["--model", "pixels", "--data", "d", "--out", "o"]))
    assert default["davis"].name == "siammae" and default["vip"].propagation.radius == 8.0
    with pytest.raises(SystemExit):
        parse_args(["--model", "pixels", "--data", "d", "--out", "o", "--protocol", "uvc"])


def test_results_table_names_the_protocol_and_overrides(tmp_path):
    write_davis_benchmark(
        tmp_path / "data" / "DAVIS", seed=1, num_val=1, num_tune=0, num_frames=4, size=(48, 64)
    )
    argv = ["--model", "pixels", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--benchmarks", "davis", "--short-side", "0", "--protocol", "dino", "--ties", "exact",
            "--no-progress"]  # fmt: skip
    scores = main(argv)
    assert 0.0 <= scores["davis"]["JF"] <= 1.0
    with open(tmp_path / "out" / "results.csv") as f:
        row = list(csv.DictReader(f))[0]
    assert row["protocol"] == "dino (ties=exact)"
    assert "| dino (ties=exact) |" in (tmp_path / "out" / "results.md").read_text()
