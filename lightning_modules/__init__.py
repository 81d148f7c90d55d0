"""corrmae LightningModules (SiamMAE, VideoMAC) — re-exported so configs can say ``class_path: SiamMAE``."""

from lightning_modules.base import VideoSSLModule
from lightning_modules.feature_models import load_feature_model
from lightning_modules.siammae import SiamMAE
from lightning_modules.videomac import VideoMAC

__all__ = ["SiamMAE", "VideoMAC", "VideoSSLModule", "load_feature_model"]
