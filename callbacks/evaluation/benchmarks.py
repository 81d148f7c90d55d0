"""The benchmarks, listed once: directory name, loader, evaluate, summarise and evaluation size.

Every ``evaluate`` has the signature ``(model, videos, protocol, *, size, out_dir, device, batch_frames,
preview, progress) -> records`` and honours all of it; ``summarize(records)`` turns the records of any
number of ranks into the scores, in a fixed (sorted) order.
"""

from collections.abc import Callable
from dataclasses import dataclass

from callbacks.evaluation.davis import evaluate_davis, load_davis_benchmark, summarize_davis
from callbacks.evaluation.jhmdb import evaluate_jhmdb, load_jhmdb_benchmark, summarize_jhmdb
from callbacks.evaluation.vip import evaluate_vip, load_vip_benchmark, summarize_vip
from datamodules.jhmdb import EVAL_SIZE as JHMDB_SIZE
from datamodules.vip import EVAL_SIZE as VIP_SIZE


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's pieces.

    Attributes:
        name: the name used in metric keys (``val/<name>_JF``) and protocol tables.
        dir_name: its folder under eval-all's ``--data`` (official layout).
        load: ``(root, split, max_videos) -> videos``; ``split`` is a DAVIS split file stem.
        evaluate: the protocol loop (see the module docstring).
        summarize: records -> scores.
        size: ``evaluate``'s ``size`` from a requested DAVIS short side: DAVIS takes it (None = native size),
            VIP and JHMDB keep their protocol's fixed square.
    """

    name: str
    dir_name: str
    load: Callable
    evaluate: Callable
    summarize: Callable[[list], dict[str, float]]
    size: Callable[[int | None], object]


BENCHMARKS: dict[str, Benchmark] = {
    "davis": Benchmark("davis", "DAVIS", load_davis_benchmark, evaluate_davis, summarize_davis, lambda s: s),
    "vip": Benchmark("vip", "VIP", load_vip_benchmark, evaluate_vip, summarize_vip, lambda _: VIP_SIZE),
    "jhmdb": Benchmark(
        "jhmdb", "JHMDB", load_jhmdb_benchmark, evaluate_jhmdb, summarize_jhmdb, lambda s: JHMDB_SIZE
    ),
}


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
