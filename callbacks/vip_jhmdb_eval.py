"""VIP body-part (mIoU) and JHMDB pose (PCK) propagation cores; see ``callbacks/propagation_eval.py``.

VIP (UVC/CRW protocol): frames at 560x560; the labels are the classes present in frame 0; predictions are
argmax'ed at 560x560 and nearest-resized to the GT size; one 20x20 confusion matrix over all frames of all
videos (frame 0 included, as its GT copy, like UVC); mIoU = nanmean over the 20 classes.
JHMDB (CRW/UVC protocol): frames at 320x320; joints as Gaussian heatmaps (sigma 0.5 cell) on the feature
grid plus a background channel; top-k weighted decoding; PCK with the 0.6 x GT-box-diagonal scale, frame 0
skipped, macro mean over joints.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from callbacks.label_propagation import PropagationConfig, propagate_video
from callbacks.metrics import ConfusionMIoU, confusion_iou
from callbacks.propagation_eval import FeatureFn, _preview_frames, overlay, video_features
from callbacks.protocol_steps import decode_labels, first_frame_labels, resize_id_map
from callbacks.protocols import Protocol, as_protocol
from datamodules.davis import voc_palette
from datamodules.vip import EVAL_SIZE as VIP_SIZE
from datamodules.vip import NUM_CLASSES

# ------------------------------------------------------------------------------------------ VIP


def evaluate_vip(
    feature_fn: FeatureFn,
    stride: int,
    videos: Sequence,
    cfg: Protocol | PropagationConfig,
    out_dir: str | Path | None = None,
    size: tuple[int, int] = VIP_SIZE,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Body-part propagation; one record ``{"video", "confusion": (20, 20) int64}`` per video.

    ``cfg`` is the protocol (a bare ``PropagationConfig`` = legacy); ``size`` the eval frame size.
    """
    protocol = as_protocol(cfg, "vip")
    records = []
    for n, video in enumerate(videos):
        feats = video_features(
            feature_fn, video.read_frame, len(video), size, stride, device, batch_frames, protocol
        )
        gt0 = video.read_label(0)
        classes = np.unique(gt0[gt0 < NUM_CLASSES])  # only classes present in frame 0 can be predicted
        lookup = np.full(256, 0, dtype=np.int64)
        lookup[classes] = np.arange(len(classes))
        first = first_frame_labels(lookup[gt0], size, stride, len(classes), protocol).to(feats)  # (L, h, w)
        soft = propagate_video(feats, first, protocol.propagation)  # (T, L, h, w)
        confusion = ConfusionMIoU(NUM_CLASSES, sync_on_compute=False)  # per video; ranks merge the records
        preds = []
        for t in range(len(video)):
            gt = gt0 if t == 0 else video.read_label(t)
            if t == 0 and protocol.vip_first_frame == "gt":
                pred = gt0.astype(np.int64)  # frame 0 is the given annotation (UVC)
            else:  # CRW also scores frame 0 as its grid labels decoded back (its "roundtrip")
                chan = decode_labels(soft[t], stride, size, size, protocol).cpu()  # (560, 560) channel ids
                pred = resize_id_map(classes[chan.numpy()], gt.shape, protocol).numpy()  # to the GT size
            preds.append(pred)
            confusion.update(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)))
            if out_dir is not None:
                path = Path(out_dir) / video.name / f"{video.frame_paths[t].stem}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pred.astype(np.uint8)).save(path)
        record = {"video": video.name, "confusion": confusion.hist.cpu().numpy()}
        if n == 0 and preview:
            pal = voc_palette()
            idx = _preview_frames(len(video), preview)
            record["preview"] = np.stack([overlay(video.read_frame(t), preds[t], pal) for t in idx])
        records.append(record)
        if progress is not None:
            progress(len(video))
    return records


def vip_class_iou(records: Sequence[dict]) -> Tensor:
    """Per-class IoU (20,) of the confusion matrices summed over all videos (NaN for absent classes)."""
    if not records:
        raise ValueError("no VIP videos were evaluated")
    return confusion_iou(torch.from_numpy(np.sum([r["confusion"] for r in records], axis=0)))


def summarize_vip(records: Sequence[dict]) -> dict[str, float]:
    """Mean IoU (nanmean over the 20 classes, background included) of the summed confusion matrices."""
    return {"mIoU": float(np.nanmean(vip_class_iou(records).numpy()))}


# ------------------------------------------------------------------------------------------ JHMDB
def evaluate_jhmdb(
    feature_fn: FeatureFn,
    stride: int,
    videos: Sequence,
    cfg: Protocol | PropagationConfig,
    out_dir: str | Path | None = None,
    size: tuple[int, int] = (320, 320),
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    topk_decode: int = 3,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Keypoint propagation; one record ``{"video", "pred", "gt"}`` ((T, 15, 2) original px) per video."""
    from callbacks.metrics import heatmaps_from_joints, joints_from_heatmaps

    protocol = as_protocol(cfg, "jhmdb")
    records = []
    for video in videos:
        feats = video_features(
            feature_fn, video.read_frame, len(video), size, stride, device, batch_frames, protocol
        )
        grid = tuple(feats.shape[-2:])
        h_o, w_o = video.size
        scale = np.array([grid[1] / w_o, grid[0] / h_o])  # original px -> grid cells (x, y)
        first = heatmaps_from_joints(torch.as_tensor(video.joints[0] * scale), grid).to(feats)  # (16, h, w)
        soft = propagate_video(feats, first, protocol.propagation)  # (T, 16, h, w)
        soft[0] = first  # frame 0 uses the GT heatmap itself
        pred = (
            joints_from_heatmaps(soft[:, :-1], topk=topk_decode).cpu().numpy().astype(np.float64)
        )  # grid xy
        visible = pred[..., 0] >= 0
        pred = np.where(visible[..., None], pred / scale, -1.0)  # (T, 15, 2) original px; -1 = not visible
        records.append({"video": video.name, "pred": pred, "gt": np.asarray(video.joints, dtype=np.float64)})
        if progress is not None:
            progress(len(video))
    return records


def summarize_jhmdb(records: Sequence[dict]) -> dict[str, float]:
    """PCK@0.1 and PCK@0.2 (UVC/CRW definition) over all videos, in sorted order."""
    from callbacks.metrics import PCK

    if not records:
        raise ValueError("no JHMDB videos were evaluated")
    metric = PCK(sync_on_compute=False)
    for r in sorted(records, key=lambda r: r["video"]):
        metric.update(torch.from_numpy(r["pred"]), torch.from_numpy(r["gt"]))
    out = metric.compute()
    return {f"PCK@{a}": float(out[f"PCK@{a}"]) for a in (0.1, 0.2)}
