"""corrmae LightningModules (SiamMAE, VideoMAC) — re-exported so configs can say ``class_path: SiamMAE``."""

from lightning_modules.base import VideoSSLModule

__all__ = ["VideoSSLModule"]
