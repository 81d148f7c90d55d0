"""Bad input is never silent: the number of unreadable videos the data module skipped reaches the logs."""

import lightning as L


class SkippedVideosLogger(L.Callback):
    """Logs ``train/skipped_videos`` (the data module's ``skipped`` count so far) at every epoch end.

    The systems install one by default (``VideoSSLModule.configure_callbacks``). A data module without an
    integer ``skipped`` (or plain dataloaders) logs nothing.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Log the count so far (one value per epoch)."""
        skipped = getattr(trainer.datamodule, "skipped", None)
        if isinstance(skipped, int):
            pl_module.log("train/skipped_videos", float(skipped), on_epoch=True, sync_dist=False)
