"""Propagation tuning on a benchmark's ``tune`` split, shared by ``corrmae demo`` and ``corrmae study``.

A coordinate search over the encoder layer that feeds propagation (ViT systems with a ``feature_layer``),
the softmax temperature and top-k, on DAVIS-format sequences at their native size; the chosen setting is
then scored once on each test split. The layer is set only inside ``feature_layer`` and restored after, so
a model leaves the search as it entered it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from callbacks.evaluation.davis import evaluate_davis, summarize_davis
from callbacks.evaluation.features import DenseFeatures
from callbacks.evaluation.settings import PropagationConfig


@torch.no_grad()
def davis_jf(model: DenseFeatures, videos: list, cfg: PropagationConfig) -> dict[str, float]:
    """J&F of one feature model on DAVIS-format sequences at their native size."""
    return summarize_davis(evaluate_davis(model, videos, cfg, size=None))


@contextmanager
def feature_layer(model: DenseFeatures, layer: int | None) -> Iterator[None]:
    """Propagate from encoder block ``layer`` (None: the model's own choice) within the block."""
    if layer is None:
        yield
        return
    own = model.feature_layer
    model.feature_layer = layer
    try:
        yield
    finally:
        model.feature_layer = own


def layer_choices(model: DenseFeatures, all_layers: bool) -> list[int | None]:
    """Encoder depths to try: None for non-ViT features, else blocks 1..depth (or only the configured one).

    An intermediate depth still goes through the encoder's final norm (``vit.extract_patch_features``).
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "feature_layer"):
        return [None]
    depth = len(encoder.blocks)
    return list(range(1, depth + 1)) if all_layers else [model.feature_layer or depth]


def tune(model: DenseFeatures, videos: list, base: PropagationConfig, grid: dict) -> tuple[dict, float]:
    """Coordinate search on the tune split: layer x temperature at the base top-k, then top-k at the best.

    Returns the best setting ``{"layer", "temperature", "topk"}`` and its tune J&F.
    """
    best, best_jf = None, -1.0
    for layer in layer_choices(model, grid["all_layers"]):
        for tau in grid["temperature"]:
            with feature_layer(model, layer):
                jf = davis_jf(model, videos, replace(base, temperature=tau))["JF"]
            if jf > best_jf:
                best, best_jf = {"layer": layer, "temperature": tau, "topk": base.topk}, jf
    for k in grid["topk"]:
        if k != base.topk:
            with feature_layer(model, best["layer"]):
                jf = davis_jf(model, videos, replace(base, temperature=best["temperature"], topk=k))["JF"]
            if jf > best_jf:
                best, best_jf = {**best, "topk": k}, jf
    return best, best_jf


def score(
    model: DenseFeatures, tune_videos: list, tests: dict[str, list], base: PropagationConfig, grid: dict
) -> dict[str, dict]:
    """Tune on ``tune``, then evaluate once on each test split with the chosen setting (one result each)."""
    model.eval()
    best, tune_jf = tune(model, tune_videos, base, grid)
    cfg = replace(base, temperature=best["temperature"], topk=best["topk"])
    results = {}
    for split, videos in tests.items():
        with feature_layer(model, best["layer"]):
            val = davis_jf(model, videos, cfg)
        results[split] = {
            **best,
            "tune_JF": tune_jf,
            "val_JF": val["JF"],
            "val_J": val["J"],
            "val_F": val["F"],
        }
    return results
