"""corrmae data modules and readers."""

from datamodules.frame_pairs import FramePairDataModule, FramePairDataset

__all__ = ["FramePairDataModule", "FramePairDataset"]
