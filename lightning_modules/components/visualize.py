"""Pure tensor functions that turn inputs/outputs into TensorBoard images (SiamMAE Figs. 2/5, VideoMAC 8)."""

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

from lightning_modules.components.losses import denormalize_prediction
from lightning_modules.components.patches import patchify, unpatchify


def imagenet_denormalize(x: Tensor) -> Tensor:
    """Undo ImageNet normalisation: (B, 3, H, W) -> (B, 3, H, W) in [0, 1]."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


def tile(images: Tensor, pad: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile a (R, C, 3, H, W) array of images into one (3, R*(H+pad)+pad, C*(W+pad)+pad) picture."""
    R, C, ch, H, W = images.shape
    x = F.pad(images, (pad, 0, pad, 0), value=pad_value)  # (R, C, 3, H+pad, W+pad)
    x = x.permute(2, 0, 3, 1, 4).reshape(ch, R * (H + pad), C * (W + pad))  # (3, R*(H+pad), C*(W+pad))
    return F.pad(x, (0, pad, 0, pad), value=pad_value)


def reconstruction_panels(
    frame: Tensor, pred: Tensor, mask: Tensor, patch_size: int, norm_pix: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Input, masked input and reconstruction of one frame, each (B, 3, H, W) in [0, 1].

    The reconstruction pastes the visible patches back. With ``norm_pix`` the prediction is in per-patch
    normalised units, so it is de-normalised with each *target* patch's own mean/std (display only; without
    this it looks like noise). Masked patches of the masked input are shown grey.

    Args:
        frame: (B, 3, H, W) ImageNet-normalised.
        pred: (B, L, p*p*3) prediction for ``frame``.
        mask: (B, L), 1 = masked (predicted) patch.
        patch_size: p.
        norm_pix: whether ``pred`` is in normalised-pixel units.
    """
    p = patch_size
    grid = (frame.shape[-2] // p, frame.shape[-1] // p)
    target = patchify(frame, p)  # (B, L, p*p*3)
    pred = pred.detach().float()
    if norm_pix:
        pred = denormalize_prediction(pred, target)
    m = mask.detach().float().unsqueeze(-1)  # (B, L, 1)
    recon = unpatchify(pred * m + target * (1 - m), p, grid)  # (B, 3, H, W) visible patches pasted back
    mask_img = unpatchify(m.expand_as(target), p, grid)  # (B, 3, H, W), 1 = masked
    img = imagenet_denormalize(frame)
    return img, img * (1 - mask_img) + 0.5 * mask_img, imagenet_denormalize(recon)


def reconstruction_grid(
    frame1: Tensor, frame2: Tensor, pred: Tensor, mask: Tensor, patch_size: int, norm_pix: bool = True
) -> Tensor:
    """SiamMAE Fig. 2-style picture, one row per sample: frame 1 | masked frame 2 | reconstruction | frame 2.

    Args:
        frame1: (B, 3, H, W) ImageNet-normalised.
        frame2: (B, 3, H, W) ImageNet-normalised.
        pred: (B, L, p*p*3) decoder output for frame 2.
        mask: (B, L), 1 = masked (predicted) patch.
        patch_size: p.
        norm_pix: whether ``pred`` is in normalised-pixel units (see ``reconstruction_panels``).

    Returns:
        (3, H', W') image in [0, 1].
    """
    f2, masked, recon = reconstruction_panels(frame2, pred, mask, patch_size, norm_pix)
    cols = [imagenet_denormalize(frame1), masked, recon, f2]
    return tile(torch.stack(cols, dim=1))  # (B rows, 4 cols)


def attention_grid(image: Tensor, attn: Tensor) -> Tensor:
    """[CLS] attention maps per head next to the image (SiamMAE Fig. 5).

    Args:
        image: (B, 3, H, W) ImageNet-normalised.
        attn: (B, heads, h, w) attention weights.

    Returns:
        (3, H', W') in [0, 1]: per row the image then one min-max-normalised map per head.
    """
    B, nh = attn.shape[:2]
    maps = F.interpolate(attn.float(), size=image.shape[-2:], mode="nearest")  # (B, nh, H, W)
    lo = maps.flatten(2).min(-1).values[..., None, None]
    hi = maps.flatten(2).max(-1).values[..., None, None]
    maps = (maps - lo) / (hi - lo).clamp_min(1e-12)  # each head scaled to [0, 1]
    maps = maps.unsqueeze(2).expand(B, nh, 3, *maps.shape[-2:])  # (B, nh, 3, H, W) grey
    img = imagenet_denormalize(image.float()).unsqueeze(1)  # (B, 1, 3, H, W)
    return tile(torch.cat([img, maps], dim=1))  # (B rows, 1+nh cols)


def mac_reconstruction_grid(
    frames: Tensor,
    pred_o: Tensor,
    pred_t: Tensor,
    mask_o: Tensor,
    mask_t: Tensor,
    patch_size: int,
    norm_pix: bool,
) -> Tensor:
    """VideoMAC Fig. 8-style picture, one row per pair: input | masked | reconstruction, frame t then t+1.

    Reconstructions paste the visible patches back; normalised-pixel predictions are shown with each target
    patch's own mean/std (display only).

    Args:
        frames: (B, 2, 3, H, W) ImageNet-normalised pair.
        pred_o: (B, L, p*p*3) online prediction of frame t.
        pred_t: (B, L, p*p*3) target prediction of frame t+1.
        mask_o: (B, L) mask of frame t, 1 = masked.
        mask_t: (B, L) mask of frame t+1.
        patch_size: p.
        norm_pix: predictions are in normalised-pixel units.

    Returns:
        (3, H', W') image in [0, 1].
    """
    cols = []
    for f, pred, mask in ((frames[:, 0], pred_o, mask_o), (frames[:, 1], pred_t, mask_t)):
        cols += reconstruction_panels(f, pred, mask, patch_size, norm_pix)  # input | masked | reconstruction
    return tile(torch.stack(cols, dim=1))  # (B rows, 6 cols)
