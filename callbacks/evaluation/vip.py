"""VIP body-part propagation, scored by mean IoU (UVC/CRW protocol, CRW ``eval_vip.py``).

Frames at 560x560; the labels are the classes present in frame 0; predictions are decoded at 560x560 and
nearest-resized to the GT size; one 20x20 confusion matrix over all frames of all videos (frame 0 included,
as its GT copy like UVC, or as its decoded grid labels like CRW); mIoU = nanmean over the 20 classes.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from callbacks.evaluation.features import DenseFeatures, video_features
from callbacks.evaluation.labels import decode_labels, first_frame_labels, resize_id_map
from callbacks.evaluation.metrics import ConfusionMIoU, confusion_iou
from callbacks.evaluation.preview import overlay, preview_frames
from callbacks.evaluation.propagation import propagate_video
from callbacks.evaluation.protocols import as_protocol
from callbacks.evaluation.settings import PropagationConfig, Protocol
from datamodules.davis import voc_palette, write_palette_png
from datamodules.vip import EVAL_SIZE, NUM_CLASSES, load_vip


def load_vip_benchmark(root: str | Path, split: str = "val", max_videos: int | None = None) -> list:
    """The VIP validation videos; ``split`` is DAVIS's notion (VIP's protocol has one evaluation list)."""
    return load_vip(root, max_videos=max_videos)


def evaluate_vip(
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
    """Body-part propagation; one record ``{"video", "confusion": (20, 20) int64, "preview"?}`` per video.

    Args:
        model: dense feature model.
        videos: VIP videos.
        cfg: the protocol (a bare ``PropagationConfig`` = legacy).
        size: evaluation frame size (H, W); the protocol's is 560x560.
        out_dir: if given, predicted class maps go to ``<out_dir>/<video>/<stem>.png`` at the GT size.
        device: where features and propagation run.
        batch_frames: frames per ``extract_features`` call.
        preview: overlay pictures of this many frames are kept for the first video (0 = none).
        progress: called with the frame count after each video.
    """
    protocol = as_protocol(cfg, "vip")
    records = []
    for n, video in enumerate(videos):
        shown = set(preview_frames(len(video), preview)) if n == 0 else set()
        records.append(vip_record(model, video, protocol, tuple(size), out_dir, device, batch_frames, shown))
        if progress is not None:
            progress(len(video))
    return records


def vip_record(
    model: DenseFeatures,
    video,
    protocol: Protocol,
    size: tuple[int, int],
    out_dir: str | Path | None,
    device: torch.device | str,
    batch_frames: int,
    shown: set[int],
) -> dict:
    """One video: propagate the frame-0 classes, decode every frame, count the confusion matrix.

    ``shown`` frames are also returned as overlay pictures (``record["preview"]``); only those predictions
    are kept, so memory does not grow with the video's length.
    """
    stride = model.feature_stride
    feats = video_features(model, video.read_frame, len(video), size, device, batch_frames, protocol)
    gt0 = video.read_label(0)
    classes = np.unique(gt0[gt0 < NUM_CLASSES])  # only classes present in frame 0 can be predicted
    lookup = np.full(256, 0, dtype=np.int64)
    lookup[classes] = np.arange(len(classes))
    first = first_frame_labels(lookup[gt0], size, stride, len(classes), protocol).to(feats)  # (L, h, w)
    soft = propagate_video(feats, first, protocol.propagation)  # (T, L, h, w)
    confusion = ConfusionMIoU(NUM_CLASSES, sync_on_compute=False)  # per video; ranks merge the records
    palette, overlays = voc_palette(), []
    for t in range(len(video)):
        gt = gt0 if t == 0 else video.read_label(t)
        if t == 0 and protocol.vip_first_frame == "gt":
            pred = gt0.astype(np.int64)  # frame 0 is the given annotation (UVC)
        else:  # CRW also scores frame 0 as its grid labels decoded back (its "roundtrip")
            chan = decode_labels(soft[t], stride, size, size, protocol).cpu()  # (H_r, W_r) channel ids
            pred = resize_id_map(classes[chan.numpy()], gt.shape, protocol).numpy()  # to the GT size
        confusion.update(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)))
        if out_dir is not None:
            write_palette_png(Path(out_dir) / video.name / f"{video.frame_paths[t].stem}.png", pred, palette)
        if t in shown:
            overlays.append(overlay(video.read_frame(t), pred, palette))
    record = {"video": video.name, "confusion": confusion.hist.cpu().numpy()}
    if overlays:
        record["preview"] = np.stack(overlays)
    return record


def vip_class_iou(records: Sequence[dict]) -> Tensor:
    """Per-class IoU (20,) of the confusion matrices summed over all videos (NaN for absent classes)."""
    if not records:
        raise ValueError("no VIP videos were evaluated")
    return confusion_iou(torch.from_numpy(np.sum([r["confusion"] for r in records], axis=0)))


def summarize_vip(records: Sequence[dict]) -> dict[str, float]:
    """Mean IoU (nanmean over the 20 classes, background included) of the summed confusion matrices."""
    return {"mIoU": float(np.nanmean(vip_class_iou(records).numpy()))}
