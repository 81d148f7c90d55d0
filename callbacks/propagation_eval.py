"""Label-propagation evaluation cores for DAVIS-2017, VIP and JHMDB, shared by the callback and ``eval-all``.

Each ``evaluate_<benchmark>(feature_fn, stride, videos, cfg, ...)`` runs the protocol on a list of videos
and returns one small, picklable *record* per video (per-object J/F rows, a confusion matrix, or joint
coordinates). ``summarize_<benchmark>(records)`` turns records from any number of ranks into the final
scores in a fixed (sorted) order, so a 2-process evaluation gives bit-identical numbers to a 1-process one.
No Lightning here: ``feature_fn`` is any ``(B, 3, H, W) -> (B, D, h, w)`` callable (``extract_features``).
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.label_propagation import (
    PropagationConfig,
    downsample_labels,
    labels_onehot,
    propagate_stream,
    propagate_video,
)
from callbacks.protocol_steps import decode_labels, first_frame_labels, preprocess_frames
from callbacks.protocols import Protocol, as_protocol, get_protocol
from datamodules.davis import DavisSequence, eval_size, write_palette_png

FeatureFn = Callable[[Tensor], Tensor]


# ------------------------------------------------------------------------------------------ shared steps
@torch.no_grad()
def video_features(
    feature_fn: FeatureFn,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    size: tuple[int, int],
    stride: int,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    protocol: Protocol | None = None,
) -> Tensor:
    """Features of every frame, L2-normalised over D: (T, D, H/stride, W/stride) on ``device``.

    Frames are resized and normalised by ``protocol`` (default: the legacy float path, ImageNet constants).
    """
    protocol = protocol or get_protocol("legacy", "davis")
    chunks = []
    for start in range(0, num_frames, batch_frames):
        idx = range(start, min(start + batch_frames, num_frames))
        x = preprocess_frames(np.stack([read_frame(i) for i in idx]), size, protocol, device)  # (b, 3, H, W)
        f = feature_fn(x).float()  # (b, D, h, w)
        if tuple(f.shape[-2:]) != (size[0] // stride, size[1] // stride):
            raise ValueError(f"features {tuple(f.shape)} do not match size {size} / stride {stride}")
        chunks.append(F.normalize(f, dim=1))
    return torch.cat(chunks)  # (T, D, h, w)


@torch.no_grad()
def iter_features(
    feature_fn: FeatureFn,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    size: tuple[int, int],
    stride: int,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    protocol: Protocol | None = None,
) -> Iterator[Tensor]:
    """``video_features`` one frame at a time, (D, h, w) each: at most ``batch_frames`` frames are held."""
    for start in range(0, num_frames, batch_frames):
        count = min(batch_frames, num_frames - start)
        read = lambda i, s=start: read_frame(s + i)  # noqa: E731
        yield from video_features(feature_fn, read, count, size, stride, device, batch_frames, protocol)


def resize_ids(ids: np.ndarray, size: tuple[int, int]) -> Tensor:
    """Nearest (PIL pixel-centre rule) resize of an id map (H, W) -> (size) int64 tensor."""
    t = torch.from_numpy(ids.astype(np.int64))[None, None].float()  # (1, 1, H, W)
    return F.interpolate(t, size=size, mode="nearest-exact")[0, 0].long()


def propagate_ids(
    feats: Tensor, first_ids: Tensor, num_labels: int, stride: int, cfg: PropagationConfig
) -> Tensor:
    """Propagate an id map (H_r, W_r) of frame 0 through the video: (T, K, h, w) soft labels."""
    onehot = labels_onehot(first_ids.to(feats.device), num_labels)  # (K, H_r, W_r)
    first = downsample_labels(onehot, stride, soft=cfg.soft_first_frame)  # (K, h, w)
    return propagate_video(feats, first, cfg)


def overlay(frame: np.ndarray, ids: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Paper Fig. 3 style picture: palette colours of ``ids`` blended over ``frame`` (uint8 (H, W, 3))."""
    colours = palette[ids.astype(np.int64)].astype(np.float32)  # (H, W, 3)
    blend = np.where((ids > 0)[..., None], (1 - alpha) * frame + alpha * colours, frame)
    return blend.astype(np.uint8)


def _preview_frames(num_frames: int, count: int) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, count)})


# ------------------------------------------------------------------------------------------ DAVIS
def evaluate_davis(
    feature_fn: FeatureFn,
    stride: int,
    videos: Sequence[DavisSequence],
    cfg: Protocol | PropagationConfig,
    out_dir: str | Path | None = None,
    short_side: int | None = 480,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Semi-supervised VOS by label propagation, scored with ``DavisJF`` (davis2017-evaluation semantics).

    Args:
        feature_fn: dense feature extractor.
        stride: its feature stride.
        videos: sequences to evaluate.
        cfg: the evaluation protocol (``callbacks.protocols``); a bare ``PropagationConfig`` means the
            legacy protocol with those propagation knobs.
        out_dir: if given, predictions go to ``<out_dir>/<seq>/<stem>.png`` at the original size.
        short_side: evaluation short side (480 in the protocol; None keeps the native size); the long side
            follows the protocol's ``width_rule`` (``datamodules.davis.eval_size``).
        device: where features and propagation run.
        batch_frames: frames per ``feature_fn`` call.
        preview: overlay pictures of this many frames are kept for the first video (0 = none).
        progress: called with the frame count after each video (progress bars).

    Returns:
        One record per sequence: ``{"sequence", "rows": [per-object J/F stats], "preview"?}``.
    """
    protocol = as_protocol(cfg, "davis")
    records = []
    for n, seq in enumerate(videos):
        shown = set(_preview_frames(len(seq), preview)) if n == 0 and preview else set()
        records.append(
            davis_record(feature_fn, stride, seq, protocol, out_dir, short_side, device, batch_frames, shown)
        )
        if progress is not None:
            progress(len(seq))
    return records


def davis_record(
    feature_fn: FeatureFn,
    stride: int,
    seq: DavisSequence,
    protocol: Protocol,
    out_dir: str | Path | None,
    short_side: int | None,
    device: torch.device | str,
    batch_frames: int,
    shown: set[int],
) -> dict:
    """One sequence, frame by frame (features, propagation, PNG, J/F): memory is the context window only.

    ``shown`` frames are also returned as overlay pictures (``record["preview"]``).
    """
    if len(seq) < 3:
        raise ValueError(f"{seq.name}: needs >= 3 frames (first and last are not evaluated), got {len(seq)}")
    size = eval_size(*seq.size, short_side, stride, protocol.width_rule)
    feats = iter_features(feature_fn, seq.read_frame, len(seq), size, stride, device, batch_frames, protocol)
    first = first_frame_labels(seq.first_mask(), size, stride, seq.num_objects + 1, protocol)
    first = first.to(device=device, dtype=torch.float32)  # (K, h, w)
    score, overlays = SequenceJF(seq.name, seq.num_objects), []
    for t, soft in enumerate(propagate_stream(feats, first, protocol.propagation)):
        gt = seq.read_mask(t)  # (H, W)
        pred = gt if t == 0 else decode_labels(soft, stride, size, seq.size, protocol).cpu().numpy()
        pred = pred.astype(np.uint8)  # frame 0 is the given annotation (not evaluated)
        if out_dir is not None:
            write_palette_png(Path(out_dir) / seq.name / f"{seq.frame_paths[t].stem}.png", pred, seq.palette)
        if 0 < t < len(seq) - 1:
            score.add(pred, gt)
        if t in shown:
            overlays.append(overlay(seq.read_frame(t), pred, seq.palette))
    record = {"sequence": seq.name, "rows": score.rows()}
    if overlays:
        record["preview"] = np.stack(overlays)
    return record


class SequenceJF:
    """``DavisJF.update`` of one sequence, fed one evaluated frame at a time (same numbers, bit for bit).

    Per object it keeps one J and one F value per frame; ``rows`` turns them into the per-object mean /
    recall / decay rows of ``DavisJF.per_object``.
    """

    def __init__(self, sequence: str, num_objects: int, bound_th: float = 0.008):
        self.sequence, self.num_objects, self.bound_th = sequence, num_objects, bound_th
        self.j: list[list[float]] = [[] for _ in range(num_objects)]
        self.f: list[list[float]] = [[] for _ in range(num_objects)]

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Score one frame: pred, gt (H, W) object ids."""
        from callbacks.davis_measures import db_eval_boundary, db_eval_iou

        if pred.shape != gt.shape:
            raise ValueError(f"{self.sequence}: pred {pred.shape} and gt {gt.shape} differ")
        if pred.max(initial=0) > self.num_objects:
            raise ValueError(f"{self.sequence}: predicted id {pred.max()} > num_objects {self.num_objects}")
        for i, obj in enumerate(range(1, self.num_objects + 1)):
            g, p = gt == obj, pred == obj
            self.j[i].append(float(db_eval_iou(g, p)))
            self.f[i].append(float(db_eval_boundary(g, p, bound_th=self.bound_th)))

    def rows(self) -> list[dict]:
        """``{sequence, object, J_mean, J_recall, J_decay, F_mean, F_recall, F_decay}`` per object."""
        from callbacks.davis_measures import db_statistics
        from callbacks.metrics import STAT_NAMES

        out = []
        for i in range(self.num_objects):
            stats = [*db_statistics(np.array(self.j[i])), *db_statistics(np.array(self.f[i]))]
            out.append({"sequence": self.sequence, "object": i + 1, **dict(zip(STAT_NAMES, stats))})
        return out


def davis_rows(metric) -> list[dict]:
    """Per-object rows ``{sequence, object, J_mean, J_recall, J_decay, F_mean, F_recall, F_decay}``."""
    return [dict(row) for row in metric.per_object()]


def summarize_davis(records: Sequence[dict]) -> dict[str, float]:
    """Objects pooled over all sequences (davis2017-evaluation), in sorted order: J&F, J, F, recalls."""
    rows = sorted((r for rec in records for r in rec["rows"]), key=lambda r: (r["sequence"], r["object"]))
    if not rows:
        raise ValueError("no DAVIS objects were evaluated")
    keys = [k for k in rows[0] if k.startswith(("J_", "F_"))]
    stats = {k.replace("_mean", ""): np.mean(np.array([r[k] for r in rows], dtype=np.float64)) for k in keys}
    return {"JF": float((stats["J"] + stats["F"]) / 2), **{k: float(v) for k, v in stats.items()}}


# ------------------------------------------------------------------------------------------ dispatch
def load_benchmark(
    benchmark: str, root: str | Path, split: str = "val", max_videos: int | None = None
) -> list:
    """Index a benchmark's evaluation videos (``split`` applies to DAVIS only)."""
    if benchmark == "davis":
        from datamodules.davis import load_davis

        return load_davis(root, split, max_videos)
    if benchmark == "vip":
        from datamodules.vip import load_vip

        return load_vip(root, max_videos=max_videos)
    if benchmark == "jhmdb":
        from datamodules.jhmdb import load_jhmdb

        return load_jhmdb(root, max_videos=max_videos)
    raise ValueError(f"unknown benchmark {benchmark!r}; expected davis, vip or jhmdb")


def evaluate_benchmark(
    benchmark: str, feature_fn: FeatureFn, stride: int, videos: Sequence, cfg, **kwargs
) -> list:
    """``evaluate_<benchmark>``; the DAVIS-only keyword short_side is dropped for VIP / JHMDB."""
    from callbacks.vip_jhmdb_eval import evaluate_jhmdb, evaluate_vip

    if benchmark == "davis":
        return evaluate_davis(feature_fn, stride, videos, cfg, **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k != "short_side"}
    fn = {"vip": evaluate_vip, "jhmdb": evaluate_jhmdb}[benchmark]
    return fn(feature_fn, stride, videos, cfg, **kwargs)


def summarize_benchmark(benchmark: str, records: Sequence[dict]) -> dict[str, float]:
    """``summarize_<benchmark>``: the scores logged as ``val/<benchmark>_<name>``."""
    from callbacks.vip_jhmdb_eval import summarize_jhmdb, summarize_vip

    fn = {"davis": summarize_davis, "vip": summarize_vip, "jhmdb": summarize_jhmdb}[benchmark]
    return fn(records)
