"""``corrmae eval-all``: zero-shot DAVIS-2017 / VIP / JHMDB evaluation of one checkpoint, Table-1 style.

    corrmae eval-all --ckpt runs/siammae/last.ckpt --data DATA --out OUT [--benchmarks davis,vip,jhmdb]
    corrmae eval-all --model vit_small_patch16_224 --weights dino_deitsmall16.pth --data DATA --out OUT
    corrmae eval-all --model pixels --patch-size 8 --data DATA --out OUT          (raw-pixel baseline)

``DATA`` holds ``DAVIS/``, ``VIP/`` and ``JHMDB/`` in their official layouts; a missing one is reported and
skipped. Writes ``OUT/results.md`` and ``OUT/results.csv`` (checkpoint, backbone, J&F, J, F, mIoU, PCK@0.1,
PCK@0.2, all x100), ``OUT/davis_per_object.csv``, ``OUT/vip_per_class.csv`` and the DAVIS palette PNGs in
``OUT/davis/<seq>/`` (check them with davis2017-evaluation: ``--results_path OUT/davis``).
Resumable: finished videos are kept under ``OUT/records/`` and a rerun with the same checkpoint, protocol and
options skips them (``lightning_modules.eval_store``); different settings are refused unless ``--restart``.
Multi-device: ``--devices N`` runs a Lightning ``Trainer.test`` whose ranks each take every N-th video (the
same sharding and exact merge as ``LabelPropagationCallback``).
"""

import argparse
import csv
import io
import sys
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from callbacks.propagation_callback import gather_records, shard
from callbacks.propagation_eval import evaluate_benchmark, load_benchmark, summarize_benchmark
from callbacks.protocol_steps import pos_embed_rule
from callbacks.protocols import (
    Protocol,
    add_protocol_arguments,
    describe,
    get_protocol,
    override,
    overrides_from_args,
)
from lightning_modules.eval_progress import benchmark_progress
from lightning_modules.eval_store import ResultStore, atomic_write_text, file_digest
from lightning_modules.feature_model import load_feature_model

DIRS = {"davis": "DAVIS", "vip": "VIP", "jhmdb": "JHMDB"}
COLUMNS = ("checkpoint", "backbone", "protocol", "J&F", "J", "F", "mIoU", "PCK@0.1", "PCK@0.2")


class PropagationEvaluator(L.LightningModule):
    """Runs every requested benchmark in ``on_test_epoch_end`` on this rank's shard and merges all ranks."""

    def __init__(
        self, extractor: torch.nn.Module, benchmarks: dict[str, list], configs: dict, args: dict, store
    ):
        super().__init__()
        self.extractor = extractor
        self.benchmarks, self.configs, self.args, self.store = benchmarks, configs, args, store
        self.scores: dict[str, dict[str, float]] = {}
        self.records: dict[str, list[dict]] = {}
        self.reused = self.evaluated = 0

    def test_step(self, batch, batch_idx):
        """Nothing per batch: the work is per video, in ``on_test_epoch_end``."""

    def on_test_start(self) -> None:
        """Rank 0 checks who owns OUT (refuse / restart / resume) before any rank reads or writes it."""
        if self.trainer.is_global_zero:
            kept = self.store.claim()
            if kept:
                print(f"eval-all: resuming in {self.store.out}: {kept} finished videos are reused")
        self.trainer.strategy.barrier()

    def on_test_epoch_end(self) -> None:
        """Evaluate this rank's videos of each benchmark; every rank enters every gather."""
        self.extractor.eval()
        for name, videos in self.benchmarks.items():
            local = shard(videos, self.global_rank, self.trainer.world_size)
            protocol = self.configs[name]
            with (
                torch.no_grad(),
                pos_embed_rule(self.extractor, protocol.pos_embed),
                benchmark_progress(
                    name, local, self.args.get("progress", True) and self.global_rank == 0
                ) as advance,
            ):
                records = [self.video_record(name, video, advance) for video in local]
            merged = gather_records(records)
            self.records[name] = merged
            self.scores[name] = summarize_benchmark(name, merged)
        print(f"eval-all (rank {self.global_rank}): {self.evaluated} videos evaluated, {self.reused} reused")

    def video_record(self, name: str, video, progress) -> dict:
        """One video's record: stored by an earlier run, or evaluated now and stored atomically."""
        record = self.store.load(name, video.name)
        if record is not None:
            self.reused += 1
            progress(len(video))
            return record
        partial = self.store.partial_dir(name) if name == "davis" else None
        (record,) = evaluate_benchmark(
            name, self.extractor.extract_features, self.extractor.feature_stride, [video],
            self.configs[name], out_dir=partial, device=self.device, short_side=self.args["short_side"],
            batch_frames=self.args["batch_frames"], progress=progress,
        )  # fmt: skip
        if partial is not None:
            self.store.commit_predictions(name, video.name)
        self.store.save(name, video.name, record)
        self.evaluated += 1
        return record


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
        return {b: override(get_protocol(args.protocol, b), **overrides) for b in DIRS}
    except ValueError as err:
        raise SystemExit(f"eval-all: {err}") from err


def check_writable(out: Path) -> None:
    """Fail before any computation if ``out`` cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"eval-all: --out {out} is a file, not a directory; give a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
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
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
          f"| {checkpoint} | {backbone} | {protocol} | " + " | ".join(cells) + " |"]  # fmt: skip
    (out / "results.md").write_text("\n".join(md) + "\n")
    if "davis" in records:
        rows = sorted(
            (r for rec in records["davis"] for r in rec["rows"]), key=lambda r: (r["sequence"], r["object"])
        )
        with open(out / "davis_per_object.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if "vip" in records:
        from callbacks.vip_jhmdb_eval import vip_class_iou
        from datamodules.vip import CLASS_NAMES

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
    benchmarks = {}
    for name in [b.strip() for b in args.benchmarks.split(",") if b.strip()]:
        if name not in DIRS:
            raise SystemExit(f"eval-all: unknown benchmark {name!r}; choose from {', '.join(DIRS)}")
        root = Path(args.data) / DIRS[name]
        if not root.is_dir():
            print(f"eval-all: skipping {name}: {root} not found (expected the official {DIRS[name]} layout)")
            continue
        benchmarks[name] = load_benchmark(name, root, args.davis_split, args.max_videos)
    if not benchmarks:
        raise SystemExit(f"eval-all: no benchmark directory found under {args.data}")
    configs = propagation_configs(args)
    evaluator = PropagationEvaluator(
        extractor, benchmarks, configs,
        {"out": str(out), "short_side": args.short_side or None, "batch_frames": args.batch_frames,
         "progress": not args.no_progress},
        ResultStore(out, run_settings(args, configs), args.restart),
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
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
