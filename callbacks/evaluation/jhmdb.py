"""JHMDB pose propagation, scored by PCK (CRW/UVC protocol, CRW ``eval_pck.py``).

Frames at 320x320; joints as Gaussian heatmaps (sigma 0.5 cell) on the feature grid plus a background
channel; top-k weighted decoding; PCK with the 0.6 x GT-box-diagonal scale, frame 0 skipped, macro mean over
joints.
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from callbacks.evaluation.features import DenseFeatures, video_features
from callbacks.evaluation.metrics import PCK
from callbacks.evaluation.preview import overlay, preview_frames
from callbacks.evaluation.propagation import propagate_video
from callbacks.evaluation.protocols import as_protocol
from callbacks.evaluation.settings import PropagationConfig, Protocol
from datamodules.davis import voc_palette
from datamodules.jhmdb import EVAL_SIZE, load_jhmdb

TOPK_DECODE = 3  # cells averaged per joint when decoding a heatmap (CRW's process_pose; UVC/VFS use 5)
MARK_RADIUS = 2  # half side, in pixels, of the square marking a joint in preview pictures


def load_jhmdb_benchmark(root: str | Path, split: str = "val", max_videos: int | None = None) -> list:
    """The clips of JHMDB split 1; ``split`` is DAVIS's notion (the protocol fixes JHMDB's list)."""
    return load_jhmdb(root, max_videos=max_videos)


def heatmaps_from_joints(joints: Tensor, grid: tuple[int, int], sigma: float = 0.5) -> Tensor:
    """Joints (J, 2) (x, y) in grid cells -> (J + 1, h, w) float32 heatmaps, background channel LAST.

    CRW/UVC's `draw_labelmap_np`: an un-normalised Gaussian (peak 1) on a (6 sigma + 1)-wide window whose
    corners are int()-truncated (toward zero), so the peak lands on round(x) for x >= 1.5 and one cell off
    nearer the top/left border; a window entirely off-grid leaves the channel empty. Background = 1 where all
    joint channels are 0 (CRW puts it first; we put it last so joint j is channel j).
    """
    h, w = grid
    joints = torch.as_tensor(joints, dtype=torch.float64).cpu()
    size = 6 * sigma + 1
    xs = np.arange(0, size, 1, dtype=np.float64)
    centre = size // 2
    g = np.exp(-((xs[None, :] - centre) ** 2 + (xs[:, None] - centre) ** 2) / (2 * sigma**2))
    maps = np.zeros((len(joints) + 1, h, w), dtype=np.float64)
    for j, (x, y) in enumerate(joints.tolist()):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ul = (math.trunc(x - 3 * sigma), math.trunc(y - 3 * sigma))
        br = (math.trunc(x + 3 * sigma + 1), math.trunc(y + 3 * sigma + 1))
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            continue
        gx, gy = (max(0, -ul[0]), min(br[0], w) - ul[0]), (max(0, -ul[1]), min(br[1], h) - ul[1])
        ix, iy = (max(0, ul[0]), min(br[0], w)), (max(0, ul[1]), min(br[1], h))
        maps[j, iy[0] : iy[1], ix[0] : ix[1]] = g[gy[0] : gy[1], gx[0] : gx[1]]
    maps[-1] = maps[:-1].sum(0) == 0
    return torch.from_numpy(maps).float()


def joints_from_heatmaps(heatmaps: Tensor, topk: int = 3) -> Tensor:
    """Heatmaps (..., J, h, w) -> joints (..., J, 2) (x, y) in grid cells; (-1, -1) for an all-zero channel.

    CRW's `process_pose`: the top-k cells by value (CRW 3; UVC/VFS 5), weights normalised to sum 1, weighted
    mean of their integer (x, y) indices. Pass joint channels only (drop the background channel).
    """
    *lead, h, w = heatmaps.shape
    flat = heatmaps.reshape(*lead, h * w)
    vals, ids = flat.topk(min(topk, h * w), dim=-1)  # (..., J, k)
    weights = vals / vals.sum(-1, keepdim=True)
    xy = torch.stack([(ids % w) * weights, (ids // w) * weights], dim=-1).sum(-2)  # (..., J, 2)
    return torch.where((flat.sum(-1) == 0)[..., None], torch.full_like(xy, -1.0), xy)


def evaluate_jhmdb(
    model: DenseFeatures,
    videos: Sequence,
    cfg: Protocol | PropagationConfig,
    *,
    size: tuple[int, int] = EVAL_SIZE,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Keypoint propagation; one record ``{"video", "pred", "gt", "preview"?}`` per video.

    Args:
        model: dense feature model.
        videos: JHMDB clips.
        cfg: the protocol (a bare ``PropagationConfig`` = legacy).
        size: evaluation frame size (H, W); the protocol's is 320x320.
        out_dir: if given, the predicted joints go to ``<out_dir>/<video>/joints.csv`` (frame, joint, x, y
            in original pixels; -1 = not visible).
        device: where features and propagation run.
        batch_frames: frames per ``extract_features`` call.
        preview: pictures of this many frames, predicted joints marked, kept for the first video (0 = none).
        progress: called with the frame count after each video.

    ``pred`` and ``gt`` are (T, 15, 2) joint coordinates in original pixels.
    """
    protocol = as_protocol(cfg, "jhmdb")
    records = []
    for n, video in enumerate(videos):
        record = jhmdb_record(model, video, protocol, tuple(size), device, batch_frames)
        if out_dir is not None:
            write_joints(Path(out_dir) / video.name / "joints.csv", record["pred"])
        if n == 0 and preview:
            shown = preview_frames(len(video), preview)
            record["preview"] = np.stack([mark_joints(video.read_frame(t), record["pred"][t]) for t in shown])
        records.append(record)
        if progress is not None:
            progress(len(video))
    return records


def jhmdb_record(
    model: DenseFeatures, video, protocol: Protocol, size: tuple[int, int], device, batch_frames: int
) -> dict:
    """One clip: propagate the frame-0 joint heatmaps, decode every frame's joints back to pixels."""
    feats = video_features(model, video.read_frame, len(video), size, device, batch_frames, protocol)
    grid = tuple(feats.shape[-2:])
    h_o, w_o = video.size
    scale = np.array([grid[1] / w_o, grid[0] / h_o])  # original px -> grid cells (x, y)
    first = heatmaps_from_joints(torch.as_tensor(video.joints[0] * scale), grid).to(feats)  # (16, h, w)
    soft = propagate_video(feats, first, protocol.propagation)  # (T, 16, h, w)
    soft[0] = first  # frame 0 uses the GT heatmap itself
    pred = joints_from_heatmaps(soft[:, :-1], topk=TOPK_DECODE).cpu().numpy().astype(np.float64)  # grid xy
    visible = pred[..., 0] >= 0
    pred = np.where(visible[..., None], pred / scale, -1.0)  # (T, 15, 2) original px; -1 = not visible
    return {"video": video.name, "pred": pred, "gt": np.asarray(video.joints, dtype=np.float64)}


def write_joints(path: Path, joints: np.ndarray) -> None:
    """Joints (T, J, 2) as CSV rows ``frame,joint,x,y``."""
    t, j = np.meshgrid(np.arange(joints.shape[0]), np.arange(joints.shape[1]), indexing="ij")
    rows = np.column_stack([t.ravel(), j.ravel(), joints.reshape(-1, 2)])  # (T*J, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(
        path, rows, fmt=["%d", "%d", "%.3f", "%.3f"], delimiter=",", header="frame,joint,x,y", comments=""
    )


def mark_joints(frame: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) with a small palette-coloured square on each visible joint (J, 2) (x, y)."""
    ids = np.zeros(frame.shape[:2], dtype=np.int64)
    for j, (x, y) in enumerate(joints):
        if x < 0 or y < 0:
            continue
        cx, cy = int(round(x)), int(round(y))
        ys = slice(max(0, cy - MARK_RADIUS), cy + MARK_RADIUS + 1)
        ids[ys, max(0, cx - MARK_RADIUS) : cx + MARK_RADIUS + 1] = j + 1
    return overlay(frame, ids, voc_palette(), alpha=1.0)


def summarize_jhmdb(records: Sequence[dict]) -> dict[str, float]:
    """PCK@0.1 and PCK@0.2 (UVC/CRW definition) over all videos, in sorted order."""
    if not records:
        raise ValueError("no JHMDB videos were evaluated")
    metric = PCK(sync_on_compute=False)
    for r in sorted(records, key=lambda r: r["video"]):
        metric.update(torch.from_numpy(r["pred"]), torch.from_numpy(r["gt"]))
    out = metric.compute()
    return {f"PCK@{a}": float(out[f"PCK@{a}"]) for a in (0.1, 0.2)}
