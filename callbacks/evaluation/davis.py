"""DAVIS-2017 semi-supervised video object segmentation by label propagation (davis2017-evaluation J&F).

Frames at a 480-pixel short side (the long side by the protocol's ``width_rule``), the frame-0 annotation
propagated through the video, predictions written as palette PNGs at the original size, J and F per object
over frames 1 .. T-2, pooled over all objects of all sequences.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from callbacks.evaluation.davis_measures import SequenceJF
from callbacks.evaluation.features import DenseFeatures, iter_features
from callbacks.evaluation.labels import decode_labels, first_frame_labels
from callbacks.evaluation.preview import overlay, preview_frames
from callbacks.evaluation.propagation import propagate_stream
from callbacks.evaluation.protocols import as_protocol
from callbacks.evaluation.settings import PropagationConfig, Protocol
from datamodules.davis import DavisSequence, load_davis, write_palette_png

DEFAULT_SHORT_SIDE = 480


def eval_size(
    height: int,
    width: int,
    short_side: int | None,
    stride: int,
    width_rule: Literal["stride", "dino64"] = "stride",
) -> tuple[int, int]:
    """Evaluation (H, W) for an original frame size: the short side is ``short_side``, the long side follows.

    DINO's script floors the long side to a multiple of 64 (854 -> 832); ``stride`` rounds it to the nearest
    multiple of the feature stride (854 -> 856 at /8, 848 at /16), which distorts the aspect ratio less.

    Args:
        height: original height.
        width: original width.
        short_side: target short side (480 for DAVIS); None keeps the original short side.
        stride: feature stride; both output sides are multiples of it.
        width_rule: ``"stride"`` rounds the long side to the nearest multiple of ``stride``;
            ``"dino64"`` floors it to a multiple of 64 as DINO's ``eval_video_segmentation.py`` does.

    Returns:
        (H_r, W_r).
    """
    if short_side is None:  # keep the native short side, snapped to the stride grid
        short = max(stride, round(min(height, width) / stride) * stride)
    else:
        short = short_side
    if short % stride:
        raise ValueError(f"short_side {short} is not a multiple of the feature stride {stride}")
    long = short * max(height, width) / min(height, width)
    base = 64 if width_rule == "dino64" else stride
    if width_rule == "dino64" and base % stride:
        raise ValueError(f"width_rule='dino64' needs a stride dividing 64, got {stride}")
    long = max(base, (int(long // base) if width_rule == "dino64" else round(long / base)) * base)
    return (short, long) if height <= width else (long, short)


def load_davis_benchmark(root: str | Path, split: str = "val", max_videos: int | None = None) -> list:
    """The sequences of a DAVIS split (``ImageSets/2017/<split>.txt``)."""
    return load_davis(root, split, max_videos)


def evaluate_davis(
    model: DenseFeatures,
    videos: Sequence[DavisSequence],
    cfg: Protocol | PropagationConfig,
    *,
    size: int | None = DEFAULT_SHORT_SIDE,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Semi-supervised VOS by label propagation, scored as davis2017-evaluation does.

    Args:
        model: dense feature model.
        videos: sequences to evaluate.
        cfg: the evaluation protocol; a bare ``PropagationConfig`` means the legacy protocol with those
            propagation knobs.
        size: evaluation short side (480 in the protocol; None keeps the native size); the long side
            follows the protocol's ``width_rule`` (``eval_size``).
        out_dir: if given, predictions go to ``<out_dir>/<seq>/<stem>.png`` at the original size.
        device: where features and propagation run.
        batch_frames: frames per ``extract_features`` call.
        preview: overlay pictures of this many frames are kept for the first video (0 = none).
        progress: called with the frame count after each video (progress bars).

    Returns:
        One record per sequence: ``{"sequence", "rows": [per-object J/F stats], "preview"?}``.
    """
    protocol = as_protocol(cfg, "davis")
    records = []
    for n, seq in enumerate(videos):
        shown = set(preview_frames(len(seq), preview)) if n == 0 else set()
        records.append(davis_record(model, seq, protocol, out_dir, size, device, batch_frames, shown))
        if progress is not None:
            progress(len(seq))
    return records


def davis_record(
    model: DenseFeatures,
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
    stride = model.feature_stride
    size = eval_size(*seq.size, short_side, stride, protocol.width_rule)
    feats = iter_features(model, seq.read_frame, len(seq), size, device, batch_frames, protocol)
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


def per_object_rows(records: Sequence[dict]) -> list[dict]:
    """Every sequence's per-object J/F rows, sorted by (sequence, object): the order scores are pooled in."""
    return sorted((r for rec in records for r in rec["rows"]), key=lambda r: (r["sequence"], r["object"]))


def summarize_davis(records: Sequence[dict]) -> dict[str, float]:
    """Objects pooled over all sequences (davis2017-evaluation), in sorted order: J&F, J, F, recalls."""
    rows = per_object_rows(records)
    if not rows:
        raise ValueError("no DAVIS objects were evaluated")
    keys = [k for k in rows[0] if k.startswith(("J_", "F_"))]
    stats = {k.replace("_mean", ""): np.mean(np.array([r[k] for r in rows], dtype=np.float64)) for k in keys}
    return {"JF": float((stats["J"] + stats["F"]) / 2), **{k: float(v) for k, v in stats.items()}}
