"""``decode_on: gpu``: decode a batch of JPEG frames on the training device and apply the paired augmentation.

Workers (``FramePairDataset(jpeg_bytes=True)``) send the raw JPEG files of each pair plus the parameters
``PairedTransform.draw`` took from the item's own generator, so the augmentation is the CPU path's,
parameter for parameter. Here ``torchvision.io.decode_jpeg`` decodes the whole batch in one call (batched
nvJPEG on CUDA; libjpeg-turbo on CPU, which is how the tests run this same code), then each pair is cropped,
resized, flipped and jittered by ``PairedTransform.apply``. Numerics against the CPU path: on the CPU both
decoders are libjpeg-turbo and the output is bit-identical (tested); on CUDA nvJPEG may differ from it by
a level or two on some pixels (IDCT / chroma upsampling), and the resize is the float antialiased bilinear
kernel rounded to uint8 instead of the CPU's integer kernel (at most one level apart).
"""

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from datamodules.transforms import PairedTransform


def decode_jpeg_pairs(batch: dict, transform: PairedTransform, device: torch.device) -> dict:
    """Replace ``jpeg`` (2B byte tensors) and ``params`` (B, 8) with uint8 ``frames`` (B, 2, 3, S, S).

    Raises:
        ValueError: naming the video, when a pair's two frames differ in size or the crop does not fit
            (frames of one folder must share the first frame's size; ``corrmae index`` checks it).
    """
    data, params = batch["jpeg"], batch["params"]
    if len(data) != 2 * len(params):
        raise ValueError(f"{len(data)} JPEG files for {len(params)} pairs (expected 2 per pair)")
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)  # 2B x (3, H, W) uint8
    videos = batch.get("video") or ["?"] * len(params)
    clips = []
    for b, p in enumerate(params):
        first, second = images[2 * b], images[2 * b + 1]
        top, left, h, w = (int(v) for v in p[:4])
        if first.shape != second.shape or top + h > first.shape[-2] or left + w > first.shape[-1]:
            raise ValueError(
                f"{videos[b]}: frames of sizes {tuple(first.shape[1:])} and {tuple(second.shape[1:])} do not "
                f"fit the crop (top {top}, left {left}, {h}x{w}) drawn for the first frame's size"
            )
        clips.append(transform.apply(torch.stack([first, second]), p))  # (2, 3, S, S)
    rest = {k: v for k, v in batch.items() if k not in ("jpeg", "params")}
    return {**rest, "frames": torch.stack(clips)}  # (B, 2, 3, S, S) uint8 on `device`
