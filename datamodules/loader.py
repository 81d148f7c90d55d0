"""A DataLoader that Lightning checkpoints mid-epoch and resumes at the next unseen batch.

Lightning 2.x saves ``state_dict()`` of every train loader that has one (``fit_loop.state_dict()
["combined_loader"]``, also in ``every_n_train_steps`` checkpoints) and calls ``load_state_dict`` before it
creates the iterator of a run restarted mid-epoch. The state is the epoch and the number of batches this
loader has *yielded in the main process*: with a sized loader Lightning's fetcher does not prefetch, so
that is exactly the number of batches the training loop has taken; batches loaded ahead by workers
(``prefetch_factor``) live inside the iterator and are not counted.

Why the data module also saves it (``ResumableTrainLoader``): Lightning 2.6 restores loader states only
in ``fit_loop.setup_data`` when it is already restarting, but a ``configure_optimizers`` that reads
``trainer.estimated_stepping_batches`` (ours: the warm-up/cosine length) builds the train loader BEFORE
the checkpoint is restored, so Lightning's own hand-over never happens. The data module's
``state_dict`` / ``load_state_dict`` are public hooks restored before training starts, whatever the order.
"""

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
    """``DataLoader`` with ``state_dict`` / ``load_state_dict`` for exact mid-epoch resume.

    On resume the first ``batches`` batches of the saved epoch are skipped at the sampler (its ``start``
    attribute, as on ``EpochSampler``: nothing is decoded) or, for other samplers, drawn and dropped. The
    iterator is created lazily on the first ``next``, i.e. after Lightning's ``set_epoch``, so workers
    never start on the previous epoch's order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0  # epoch of the current (or last) iteration
        self._yielded = 0  # batches handed out in that iteration, counting skipped ones
        self._resume: dict | None = None

    def __iter__(self):
        return self._iterate()

    def _iterate(self):
        skip = self._pending_skip()
        it = super().__iter__()
        if skip and not hasattr(self.sampler, "start"):
            for _ in range(skip):  # generic samplers: load and drop (correct, not fast)
                next(it)
        self._yielded = skip
        for batch in it:
            self._yielded += 1
            yield batch

    def _pending_skip(self) -> int:
        """Batches to skip now: the saved count if this iteration is the saved epoch, else 0."""
        epoch = getattr(self.sampler, "epoch", 0)
        self._epoch, resume, self._resume = epoch, self._resume, None
        if resume is None or resume["epoch"] != epoch:
            return 0
        skip = min(resume["batches"], len(self))
        if hasattr(self.sampler, "start"):
            self.sampler.start = skip * self.batch_size
        return skip

    def state_dict(self) -> dict:
        """Epoch, batches taken in it, and the layout needed to interpret them."""
        replicas = getattr(self.sampler, "num_replicas", 1)
        return {
            "epoch": self._epoch,
            "batches": self._yielded,
            "batch_size": self.batch_size,
            "replicas": replicas,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume the saved epoch after its consumed batches (applied when the next iteration starts)."""
        layout = (state.get("batch_size"), state.get("replicas"))
        now = (self.batch_size, getattr(self.sampler, "num_replicas", 1))
        if layout != now:
            rank_zero_warn(
                f"resuming mid-epoch with (batch_size, world_size) {now} instead of {layout}: the rest "
                "of the epoch is not the uninterrupted run's order"
            )
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state["epoch"]))
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


class ResumableTrainLoader:
    """Mixin for a ``LightningDataModule``: checkpoints its train loader's position (see module docstring).

    Wrap the loader built in ``train_dataloader`` with ``self.track_train_loader(loader)``.
    """

    def track_train_loader(self, loader: ResumableDataLoader) -> ResumableDataLoader:
        """Remember the loader and hand it a state restored before it existed."""
        self._train_loader = loader
        pending = getattr(self, "_pending_loader_state", None)
        if pending is not None:
            loader.load_state_dict(pending)
            self._pending_loader_state = None
        return loader

    def state_dict(self) -> dict:
        """The train loader's epoch and batches taken (saved by Lightning in every checkpoint)."""
        loader = getattr(self, "_train_loader", None)
        return {"train_loader": loader.state_dict()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Pass the saved position to the loader now, or when ``train_dataloader`` builds it."""
        state = state_dict.get("train_loader")
        loader = getattr(self, "_train_loader", None)
        if state is not None and loader is not None:
            loader.load_state_dict(state)
        else:
            self._pending_loader_state = state
