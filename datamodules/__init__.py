"""corrmae data modules and readers."""

from datamodules.frame_pairs import FramePairDataModule, FramePairDataset  # noqa: E402

__all__ = ["FramePairDataModule", "FramePairDataset"]
