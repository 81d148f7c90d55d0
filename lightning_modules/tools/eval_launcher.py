"""eval-all on one or more devices: a ``Trainer.test`` whose ranks each evaluate a shard of every benchmark.

The LightningModule here is only a launcher (Lightning starts the processes and the process group); the
evaluation itself is ``callbacks.evaluation.sharded.evaluate_sharded``, the loop the training callback runs.
"""

from dataclasses import dataclass

import lightning as L
import torch

from callbacks.evaluation.benchmarks import get_benchmark
from callbacks.evaluation.settings import Protocol
from callbacks.evaluation.sharded import evaluate_sharded, shard
from lightning_modules.tools.eval_progress import benchmark_progress
from lightning_modules.tools.eval_store import ResultStore

PREDICTIONS = ("davis",)  # benchmarks whose label maps are written (palette PNGs for davis2017-evaluation)


@dataclass(frozen=True)
class EvalOptions:
    """How eval-all runs (not what it measures, which is the protocol's).

    Attributes:
        short_side: DAVIS short side; None = native size.
        batch_frames: frames per ``extract_features`` call.
        progress: draw a progress bar per benchmark on rank 0.
    """

    short_side: int | None = 480
    batch_frames: int = 8
    progress: bool = True


class PropagationEvaluator(L.LightningModule):
    """Runs every requested benchmark in ``on_test_epoch_end`` on this rank's shard and merges all ranks.

    Args:
        extractor: the dense feature model.
        benchmarks: benchmark name -> its videos.
        protocols: benchmark name -> its protocol.
        store: finished videos under eval-all's ``--out``.
        options: how to run.
    """

    def __init__(
        self,
        extractor: torch.nn.Module,
        benchmarks: dict[str, list],
        protocols: dict[str, Protocol],
        store: ResultStore,
        options: EvalOptions,
    ):
        super().__init__()
        self.extractor = extractor
        self.benchmarks, self.protocols, self.store, self.options = benchmarks, protocols, store, options
        self.scores: dict[str, dict[str, float]] = {}
        self.records: dict[str, list[dict]] = {}
        self.reused = self.evaluated = 0

    def test_step(self, batch, batch_idx):
        """Nothing per batch: the work is per video, in ``on_test_epoch_end``."""

    def on_test_start(self) -> None:
        """Rank 0 checks who owns OUT (refuse / restart / resume) before any rank reads or writes it."""
        if self.trainer.is_global_zero:
            kept = self.store.claim()
            if kept:
                print(f"eval-all: resuming in {self.store.out}: {kept} finished videos are reused")
        self.trainer.strategy.barrier()

    def on_test_epoch_end(self) -> None:
        """Evaluate this rank's videos of each benchmark; every rank enters every gather."""
        self.extractor.eval()
        world, shown = self.trainer.world_size, self.options.progress and self.global_rank == 0
        for name, videos in self.benchmarks.items():
            with benchmark_progress(name, shard(videos, self.global_rank, world), shown) as advance:
                result = evaluate_sharded(
                    get_benchmark(name), self.extractor, videos, self.protocols[name], rank=self.global_rank,
                    world_size=world, short_side=self.options.short_side, device=self.device,
                    batch_frames=self.options.batch_frames, store=self.store,
                    write_predictions=name in PREDICTIONS, progress=advance,
                )  # fmt: skip
            self.records[name], self.scores[name] = result.records, result.scores
            self.evaluated += result.evaluated
            self.reused += result.reused
        print(f"eval-all (rank {self.global_rank}): {self.evaluated} videos evaluated, {self.reused} reused")
