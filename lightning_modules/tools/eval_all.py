"""``corrmae eval-all``: zero-shot DAVIS-2017 / VIP / JHMDB evaluation of one checkpoint, Table-1 style.

    corrmae eval-all --ckpt runs/siammae/last.ckpt --data DATA --out OUT [--benchmarks davis,vip,jhmdb]
    corrmae eval-all --model vit_small_patch16_224 --weights dino_deitsmall16.pth --data DATA --out OUT
    corrmae eval-all --model pixels --patch-size 8 --data DATA --out OUT          (raw-pixel baseline)

``DATA`` holds ``DAVIS/``, ``VIP/`` and ``JHMDB/`` in their official layouts; a missing one is reported and
skipped. Writes ``OUT/results.md`` and ``OUT/results.csv`` (checkpoint, backbone, J&F, J, F, mIoU, PCK@0.1,
PCK@0.2, all x100), ``OUT/davis_per_object.csv``, ``OUT/vip_per_class.csv`` and the DAVIS palette PNGs in
``OUT/davis/<seq>/`` (check them with davis2017-evaluation: ``--results_path OUT/davis``).
Resumable: finished videos are kept under ``OUT/records/`` and a rerun with the same checkpoint, protocol and
options skips them (``lightning_modules.tools.eval_store``); different settings are refused unless
``--restart``.
Multi-device: ``--devices N`` runs a Lightning ``Trainer.test`` whose ranks each take every N-th video (the
same sharding and exact merge as ``LabelPropagationCallback``).
"""

import argparse
import csv
import io
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from callbacks.evaluation.benchmarks import BENCHMARKS, get_benchmark
from callbacks.evaluation.davis import per_object_rows
from callbacks.evaluation.flags import add_protocol_arguments, overrides_from_args
from callbacks.evaluation.protocols import describe, get_protocol
from callbacks.evaluation.settings import Protocol, override
from callbacks.evaluation.vip import vip_class_iou
from datamodules.vip import CLASS_NAMES
from lightning_modules.feature_models import load_feature_model
from lightning_modules.tools.eval_launcher import EvalOptions, PropagationEvaluator
from lightning_modules.tools.eval_store import ResultStore, atomic_write_text, file_digest
from lightning_modules.tools.results_table import markdown_table
from lightning_modules.tools.writable import probe_writable

log = logging.getLogger(__name__)

COLUMNS = ("checkpoint", "backbone", "protocol", "J&F", "J", "F", "mIoU", "PCK@0.1", "PCK@0.2")


def run_settings(args: argparse.Namespace, configs: dict) -> dict:
    """Everything the results depend on: the weights' content, the model, the protocol and the options."""
    settings = {
        "checkpoint": file_digest(args.ckpt) if args.ckpt else None,
        "weights": file_digest(args.weights) if args.weights else None,
        "data": str(Path(args.data).resolve()),  # its content is not hashed: --restart after changing it
        **{k: getattr(args, k) for k in ("model", "checkpoint_key", "random_init", "seed", "patch_size",
                                          "stage", "short_side", "davis_split", "max_videos",
                                          "batch_frames", "accelerator")},
    }  # fmt: skip
    for bench, cfg in configs.items():
        settings.update(flatten(asdict(cfg), f"{bench}."))
    return settings


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested protocol fields as ``davis.topk`` (not ``davis.propagation``), so a refusal names the knob."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def propagation_configs(args: argparse.Namespace) -> dict[str, Protocol]:
    """Each benchmark's ``--protocol`` (default siammae) with the command-line overrides."""
    overrides = overrides_from_args(args)
    try:
        return {b: override(get_protocol(args.protocol, b), **overrides) for b in BENCHMARKS}
    except ValueError as err:
        raise SystemExit(f"eval-all: {err}") from err


def check_writable(out: Path) -> None:
    """Fail before any computation if ``out`` cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"eval-all: --out {out} is a file, not a directory; give a directory path")
    try:
        probe_writable(out)
    except OSError as err:
        raise SystemExit(f"eval-all: output directory {out} is not writable ({err})") from err


def backbone_name(args: argparse.Namespace, extractor: torch.nn.Module) -> str:
    """A short description of what was evaluated, for the results table."""
    if args.model == "pixels":
        return f"raw pixels, {args.patch_size}x{args.patch_size} patches"
    hp = getattr(extractor, "hparams", {})
    name = hp.get("encoder_name") or hp.get("backbone") or args.model or type(extractor).__name__
    return f"{type(extractor).__name__}/{name}" + (" (random init)" if args.random_init else "")


def write_results(
    out: Path, scores: dict, records: dict, checkpoint: str, backbone: str, protocol: str = ""
) -> None:
    """``results.md``, ``results.csv`` (with the protocol and its overrides) and the per-object/class CSVs."""
    davis, vip, jhmdb = scores.get("davis", {}), scores.get("vip", {}), scores.get("jhmdb", {})
    values = [davis.get("JF"), davis.get("J"), davis.get("F"), vip.get("mIoU"), jhmdb.get("PCK@0.1"),
              jhmdb.get("PCK@0.2")]  # fmt: skip
    # J&F, J, F and mIoU are fractions; PCK is already a percentage (UVC eval_pck).
    shown = [None if v is None else 100 * v if i < 4 else v for i, v in enumerate(values)]
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(COLUMNS)
    w.writerow([checkpoint, backbone, protocol] + ["" if v is None else f"{v:.3f}" for v in shown])
    atomic_write_text(out / "results.csv", table.getvalue())
    cells = ["—" if v is None else f"{v:.1f}" for v in shown]
    (out / "results.md").write_text(
        markdown_table(COLUMNS, [[checkpoint, backbone, protocol, *cells]]) + "\n"
    )
    if "davis" in records:
        rows = per_object_rows(records["davis"])
        with open(out / "davis_per_object.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if "vip" in records:
        iou = vip_class_iou(records["vip"]).tolist()
        with open(out / "vip_per_class.csv", "w", newline="") as f:
            csv.writer(f).writerows([("class", "IoU"), *zip(CLASS_NAMES, [f"{v:.4f}" for v in iou])])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments (empty strings, as passed by ``make eval-all``, count as unset)."""
    p = argparse.ArgumentParser(prog="corrmae eval-all", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", help="corrmae Lightning checkpoint (SiamMAE / VideoMAC)")
    p.add_argument("--model", help="'pixels' or a timm model name (with --weights for DINO/MAE/... weights)")
    p.add_argument(
        "--weights",
        help="published weights for --model (DINO, MAE, CropMAE, corrmae; layout detected; .pth/.safetensors)"
        " or a `corrmae export` folder",
    )
    p.add_argument(
        "--checkpoint-key", help="entry of --weights holding the weights (e.g. student); default: detect"
    )
    p.add_argument(
        "--trust-checkpoint", action="store_true",
        help="unpickle --ckpt/--weights fully (can run code from the file); default: weights only",
    )  # fmt: skip
    p.add_argument("--random-init", action="store_true", help="same architecture, random weights (baseline)")
    p.add_argument("--patch-size", type=int, default=8, help="patch size of the 'pixels' baseline")
    p.add_argument("--stage", type=int, help="CNN stage (timm feature_info index); default: last")
    p.add_argument("--data", required=True, help="directory holding DAVIS/, VIP/ and JHMDB/")
    p.add_argument("--out", required=True)
    p.add_argument("--benchmarks", default="davis,vip,jhmdb")
    p.add_argument("--davis-split", default="val")
    p.add_argument("--short-side", type=int, default=480, help="DAVIS short side; 0 = native size")
    add_protocol_arguments(p)  # --protocol and one flag per protocol knob (--topk, --width-rule, --ties, ...)
    p.add_argument("--max-videos", type=int)
    p.add_argument("--batch-frames", type=int, default=8)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--seed", type=int, default=0, help="seeds the random-init baseline's weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--restart", action="store_true", help="discard results already in --out, start over")
    args = p.parse_args(argv)
    for key in ("ckpt", "model", "weights"):
        setattr(args, key, getattr(args, key) or None)
    if bool(args.ckpt) == bool(args.model or args.weights):
        p.error("give exactly one of --ckpt, --model (+ --weights) or --weights EXPORT_DIR")
    return args


def load_benchmarks(args: argparse.Namespace) -> dict[str, list]:
    """The requested benchmarks found under ``--data`` (a missing folder is reported and skipped)."""
    benchmarks = {}
    for name in [b.strip() for b in args.benchmarks.split(",") if b.strip()]:
        try:
            bench = get_benchmark(name)
        except ValueError as err:
            raise SystemExit(f"eval-all: {err}") from err
        root = Path(args.data) / bench.dir_name
        if not root.is_dir():
            log.warning("eval-all: skipping %s: %s not found (expected the official %s layout)", name, root,
                        bench.dir_name)  # fmt: skip
            continue
        benchmarks[name] = bench.load(root, args.davis_split, args.max_videos)
    if not benchmarks:
        raise SystemExit(f"eval-all: no benchmark directory found under {args.data}")
    return benchmarks


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run eval-all; returns ``{benchmark: scores}`` and prints the results table."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    check_writable(out)
    torch.manual_seed(args.seed)  # a random-init baseline is then reproducible
    extractor = load_feature_model(
        ckpt=args.ckpt, model=args.model, weights=args.weights, random_init=args.random_init,
        patch_size=args.patch_size, stage=args.stage, checkpoint_key=args.checkpoint_key,
        trust=args.trust_checkpoint,
    )  # fmt: skip
    benchmarks = load_benchmarks(args)
    configs = propagation_configs(args)
    options = EvalOptions(args.short_side or None, args.batch_frames, not args.no_progress)
    store = ResultStore(out, run_settings(args, configs), args.restart)
    evaluator = PropagationEvaluator(extractor, benchmarks, configs, store, options)
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    # Trainer.test needs batches to run its hooks: one dummy item per device, so every rank gets one.
    trainer.test(evaluator, dataloaders=DataLoader(range(max(1, args.devices))), verbose=False)
    if trainer.is_global_zero:
        checkpoint = args.ckpt or args.weights or args.model
        protocol = describe(configs[next(iter(benchmarks))], overrides_from_args(args))
        write_results(
            out, evaluator.scores, evaluator.records, checkpoint, backbone_name(args, extractor), protocol
        )
        print((out / "results.md").read_text(), end="")
        print(f"eval-all: wrote {out / 'results.md'} and {out / 'results.csv'}")
    return evaluator.scores
