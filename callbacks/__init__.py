"""corrmae callbacks: label-propagation evaluation during training."""

from callbacks.propagation_callback import LabelPropagationCallback

__all__ = ["LabelPropagationCallback"]
