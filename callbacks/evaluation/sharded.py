"""The one evaluation loop (shard, evaluate, gather, summarise), run by the callback and by ``eval-all``.

Videos are sorted by cost (frames x pixels) and rank r takes videos r, r + world_size, ...; every rank then
enters the same single ``all_gather_object`` (also ranks with no video), and every rank computes the same
scores from the sorted, merged per-video records, so no rank-0-only collective can deadlock and the result
equals the 1-process result exactly.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from callbacks.evaluation.benchmarks import Benchmark
from callbacks.evaluation.features import DenseFeatures, pos_embed_rule
from callbacks.evaluation.settings import Protocol


class RecordStore(TypingProtocol):
    """Where finished videos are kept across runs (eval-all's ``ResultStore``)."""

    def load(self, benchmark: str, video: str) -> dict | None:
        """The stored record of ``video``, or None."""

    def save(self, benchmark: str, video: str, record: dict) -> None:
        """Mark ``video`` finished with ``record``."""

    def partial_dir(self, benchmark: str) -> Path:
        """Where a video's predictions are written before they are moved into place."""

    def commit_predictions(self, benchmark: str, video: str) -> None:
        """Move a finished video's predictions into place."""


@dataclass
class ShardedResult:
    """Scores and merged records of one benchmark, this rank's preview pictures and its video counts."""

    scores: dict[str, float]
    records: list[dict]
    previews: list[np.ndarray] = field(default_factory=list)
    evaluated: int = 0
    reused: int = 0


def shard(videos: list, rank: int, world_size: int) -> list:
    """Videos of ``rank``: cost-sorted (longest first, name as tie-break), then every world_size-th one."""
    cost = [(-len(v) * int(np.prod(getattr(v, "size", (1, 1)))), v.name) for v in videos]
    order = sorted(range(len(videos)), key=lambda i: cost[i])
    return [videos[i] for i in order[rank::world_size]]


def gather_records(records: list[dict]) -> list[dict]:
    """All ranks' records on every rank (every rank must call this; a no-op without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(records)
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, records)
    return [r for part in gathered for r in part]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers on every rank (a no-op without a process group; every rank must call it).

    Why: BatchNorm running statistics drift apart under DDP (each rank updates them from its own batch and
    DDP re-broadcasts them only at the next forward, never for modules it ignores such as VideoMAC's EMA
    target), while the checkpoint holds rank 0's; evaluation must see that one model on every rank.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def evaluate_sharded(
    benchmark: Benchmark,
    model: DenseFeatures,
    videos: Sequence,
    protocol: Protocol,
    *,
    rank: int = 0,
    world_size: int = 1,
    short_side: int | None = 480,
    device: torch.device | str = "cpu",
    batch_frames: int = 8,
    preview: int = 0,
    store: RecordStore | None = None,
    write_predictions: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ShardedResult:
    """Evaluate this rank's share of ``videos``, merge every rank's records and score them.

    Args:
        benchmark: the registered benchmark.
        model: dense feature model (its train/eval mode is the caller's).
        videos: every video of the benchmark (the same list on every rank).
        protocol: the evaluation protocol.
        rank: this process's rank.
        world_size: number of processes.
        short_side: the DAVIS short side (``Benchmark.size`` maps it to each benchmark's size).
        device: where features and propagation run.
        batch_frames: frames per ``extract_features`` call.
        preview: overlay pictures of this many frames of this rank's first video (not gathered).
        store: finished videos are taken from it and new ones saved to it.
        write_predictions: write prediction files through ``store.partial_dir`` (needs ``store``).
        progress: called with the frame count after each video.
    """
    local = shard(list(videos), rank, world_size)
    result = ShardedResult(scores={}, records=[])
    options = {"size": benchmark.size(short_side), "device": device, "batch_frames": batch_frames}
    records = []
    with torch.no_grad(), pos_embed_rule(model, protocol.pos_embed):
        for n, video in enumerate(local):
            stored = store.load(benchmark.name, video.name) if store is not None else None
            if stored is not None:
                result.reused += 1
                if progress is not None:
                    progress(len(video))
                records.append(stored)
                continue
            out_dir = store.partial_dir(benchmark.name) if write_predictions else None
            shown = preview if n == 0 else 0
            (record,) = benchmark.evaluate(
                model, [video], protocol, out_dir=out_dir, preview=shown, progress=progress, **options
            )
            if "preview" in record:
                result.previews.append(record.pop("preview"))
            if store is not None:
                keep(store, benchmark.name, video.name, record, out_dir is not None)
            result.evaluated += 1
            records.append(record)
    result.records = gather_records(records)
    result.scores = benchmark.summarize(result.records)
    return result


def keep(store: RecordStore, benchmark: str, video: str, record: dict, predictions: bool) -> None:
    """Store a finished video: predictions moved into place first, then the record that marks it done."""
    if predictions:
        store.commit_predictions(benchmark, video)
    store.save(benchmark, video, record)
