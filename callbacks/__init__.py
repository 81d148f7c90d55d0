"""corrmae callbacks: label-propagation evaluation during training."""
