"""corrmae callbacks: label-propagation evaluation during training, atomic checkpoints, rank-loss watchdog.

The evaluation itself (protocols, propagation, benchmarks, measures) is the ``callbacks.evaluation`` package.
"""

from callbacks.checkpointing import AtomicCheckpointIO
from callbacks.data_health import SkippedVideosLogger
from callbacks.evaluation.metrics import PCK, ConfusionMIoU, DavisJF
from callbacks.evaluation.settings import PropagationConfig
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
