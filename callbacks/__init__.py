"""corrmae callbacks: label-propagation evaluation during training (the evaluation itself is
``callbacks.evaluation``), atomic checkpoints, the rank-loss watchdog."""

from callbacks.checkpointing import AtomicCheckpointIO
from callbacks.evaluation.metrics import PCK, ConfusionMIoU, DavisJF
from callbacks.evaluation.settings import PropagationConfig
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
]
