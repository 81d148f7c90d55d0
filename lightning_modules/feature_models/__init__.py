"""Dense feature models for evaluation, all meeting ``callbacks.evaluation.features.DenseFeatures``.

- ``loader``: ``load_feature_model``, the one entry point (a corrmae checkpoint, a timm name plus
  published weights, the official VideoMAC encoders, or raw pixels).
- ``checkpoint``: corrmae Lightning checkpoints rebuilt as their system (SiamMAE / VideoMAC).
- ``timm_features``: timm backbones; ``weight_layouts``: published checkpoint layouts to timm keys.
- ``videomac_official``: the authors' released VideoMAC encoders.
- ``pixels``: the raw-pixel baseline.
"""

from lightning_modules.feature_models.loader import load_feature_model

__all__ = ["load_feature_model"]
