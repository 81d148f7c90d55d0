"""corrmae callbacks: label-propagation evaluation during training."""

from callbacks.checkpointing import AtomicCheckpointIO
from callbacks.data_health import SkippedVideosLogger
from callbacks.label_propagation import PropagationConfig
from callbacks.metrics import PCK, ConfusionMIoU, DavisJF
from callbacks.nonfinite import NonFiniteGuard
from callbacks.propagation_callback import LabelPropagationCallback
from callbacks.rank_loss import RankLossWatchdog

__all__ = [
    "AtomicCheckpointIO",
    "LabelPropagationCallback",
    "PropagationConfig",
    "DavisJF",
    "ConfusionMIoU",
    "PCK",
    "RankLossWatchdog",
    "NonFiniteGuard",
    "SkippedVideosLogger",
]
