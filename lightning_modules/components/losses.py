"""Reconstruction losses on per-patch normalised pixels (MAE ``norm_pix_loss``)."""

from torch import Tensor


def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise each patch by its own mean and variance (MAE §3, "normalized pixels").

    Args:
        target: (B, L, P) patchified pixels.
        eps: added to the variance; MAE uses 1e-6.

    Returns:
        (B, L, P).
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def denormalize_prediction(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Map a normalised-pixel prediction back to pixels using each *target* patch's mean/std.

    Why: with ``norm_pix_loss`` the raw prediction has no brightness or contrast, so it looks like noise.
    This borrows the ground truth's patch statistics, which is for display only (it leaks low frequencies).
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return pred * (var + eps) ** 0.5 + mean


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """Mean squared error averaged over the masked patches only.

    Args:
        pred: (B, L, P) predicted patches.
        target: (B, L, P) patchified pixels (un-normalised).
        mask: (B, L), 1 for patches that count (masked = removed from the encoder input).
        norm_pix: normalise target patches first.

    Returns:
        Scalar loss: sum_l mask_l * mean_P (pred - target)^2 / sum_l mask_l.
    """
    if norm_pix:
        target = normalize_patches(target)
    per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, L)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def masked_consistency(pred: Tensor, pred_target: Tensor, mask: Tensor) -> Tensor:
    """MSE between two predictions on masked patches; the second is detached (a fixed target)."""
    return masked_mse(pred, pred_target.detach(), mask, norm_pix=False)
