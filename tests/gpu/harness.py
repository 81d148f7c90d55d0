"""What every section of the check shares: the device, time guards, error capture and timing.

Time guards are two-fold: each section gets a budget that its loops read (``Context.left``) to stop early,
and a hard SIGALRM a little after it, which raises ``SectionTimeout`` at the next Python bytecode (a running
CUDA kernel finishes first). A failing item or section records its error in the report and the run goes on.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tests.gpu.report import Report
from tests.gpu.sizes import Sizes


class SectionTimeout(Exception):
    """A section ran past its hard time limit."""


@dataclass
class Context:
    """Run-wide state handed to each section: device, sizes, report, and figures shared between sections."""

    device: torch.device
    sizes: Sizes
    report: Report
    shared: dict = field(default_factory=dict)
    section: str = ""
    deadline: float = float("inf")
    log: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        """Whether the check runs on a GPU."""
        return self.device.type == "cuda"

    def left(self) -> float:
        """Seconds left in the current section's budget."""
        return self.deadline - time.monotonic()

    def add(self, item: str, metric: str, value, unit: str = "", note: str = "") -> None:
        """Record a figure in the current section."""
        self.report.add(self.section, item, metric, value, unit, note)

    def note(self, text: str) -> None:
        """A sentence under the current section's table."""
        self.report.note(self.section, text)

    def record_error(self, item: str, err: BaseException) -> None:
        """An error row (type and message) plus the traceback in the run log."""
        msg = f"{type(err).__name__}: {err}".strip()
        self.add(item, "error", msg[:300])
        self.log.append(f"[{self.section} / {item}]\n{''.join(traceback.format_exception(err))}")
        free_memory()

    @contextlib.contextmanager
    def item(self, name: str, min_left: float = 0.0) -> Iterator[bool]:
        """Run one measurement; an exception becomes an error row. Yields False (and records a skip) when
        fewer than ``min_left`` seconds remain in the section's budget."""
        if self.left() < min_left:
            self.add(name, "skipped", f"time guard: {self.left():.0f} s left, needs ~{min_left:.0f} s")
            yield False
            return
        try:
            yield True
        except SectionTimeout:
            self.add(name, "error", "stopped by the section's hard time guard")
            raise
        except Exception as err:  # one broken measurement must not hide the others
            self.record_error(name, err)
            if "SectionTimeout" in str(err):  # wrapped on the way out (torch.compile's InductorError does)
                raise SectionTimeout(str(err)) from err


def free_memory() -> None:
    """Drop garbage and cached CUDA blocks (after an OOM or between models)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise ``SectionTimeout`` after ``seconds`` (SIGALRM; main thread on POSIX only, else no hard guard)."""

    def on_alarm(signum, frame):
        raise SectionTimeout(f"hard time guard: section ran past {seconds:.0f} s")

    try:
        previous = signal.signal(signal.SIGALRM, on_alarm)
    except (ValueError, AttributeError):  # not the main thread / no SIGALRM: soft budget only
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(ctx: Context, name: str, fn: Callable[[Context], None], budget: float) -> None:
    """Run one section under its budget; record its status, and its error if it fails."""
    ctx.section, ctx.deadline = name, time.monotonic() + budget
    t0 = time.monotonic()
    try:
        with hard_limit(budget + 30):  # soft guards stop loops first; this catches a stuck compile or build
            fn(ctx)
        ctx.report.status[name] = f"ran in {time.monotonic() - t0:.0f} s (budget {budget:.0f} s)"
    except Exception as err:
        ctx.record_error("section", err)
        ctx.report.status[name] = f"FAILED after {time.monotonic() - t0:.0f} s: {type(err).__name__}"
    finally:
        free_memory()
        ctx.report.write()


# ------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], object], device: torch.device, warmup: int, iters: int, budget: float
) -> dict[str, float]:
    """Median seconds per call after ``warmup`` calls; stops early (at least 1 timed call) on the budget.

    Returns median_s, first_s (the first warm-up call, which holds compilation), n (timed calls).
    """
    t_end = time.monotonic() + budget
    first = None
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        sync(device)
        first = time.perf_counter() - t0 if i == 0 else first
    times: list[float] = []
    while len(times) < iters and (not times or time.monotonic() < t_end):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "first_s": first or times[0], "n": len(times)}


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Peak GPU memory allocated above the level at entry, in MiB (``None`` on CPU)."""
    out: dict = {"peak_mib": None}
    if device.type != "cuda":
        yield out
        return
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield out
    sync(device)
    out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, iters: int) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype`` on random data (best of ``iters`` after warm-up)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    r = time_calls(lambda: torch.matmul(a, b), device, warmup=2, iters=iters, budget=20.0)
    return 2 * n**3 / r["median_s"]
