"""Run a per-file job in worker processes so that a native crash of a decoder costs one file, not the scan.

A corrupt video can kill the process decoding it (a segfault or abort inside FFmpeg or decord), which no
``try`` catches. ``isolated_map`` runs the job in a process pool and keeps only ``2 x workers`` files in
flight: when a worker dies the pool breaks, the files in flight become suspects, and each suspect is rerun
alone in its own process. The one that dies alone is reported as ``Crashed`` (with the signal); the others
get their normal result, and the scan goes on in a fresh pool. Used by ``corrmae index`` and ``corrmae
prepare``.
"""

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Crashed:
    """The process running the job on this item died (native crash) or hung past the timeout."""

    reason: str


def _context():
    """``fork`` where available: workers start in milliseconds and inherit the job function."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _child(fn: Callable, item: Any, conn) -> None:
    conn.send(fn(item))
    conn.close()


def run_isolated(fn: Callable, item: Any, timeout: float | None = None) -> Any:
    """``fn(item)`` in a fresh process: its result, or ``Crashed`` when the process dies or hangs."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, item, send), daemon=True)
    proc.start()
    send.close()
    try:
        if receive.poll(timeout):
            return receive.recv()
        if proc.is_alive():  # no answer within the timeout
            proc.kill()
            proc.join()
            return Crashed(f"the decoding process hung for more than {timeout:g} s and was killed")
    except EOFError:  # the child died before sending
        pass
    finally:
        receive.close()
    proc.join()
    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    return Crashed(f"the decoding process died ({how}): a native crash in the decoder")


def isolated_map(
    fn: Callable, items: Iterable, workers: int = 1, timeout: float | None = None
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(item))`` in completion order; a native crash yields ``(item, Crashed(...))``.

    Args:
        fn: picklable job; it should return errors it expects (``VideoReadError``) rather than raise. A
            Python exception it raises propagates (a bug, not bad data).
        items: picklable inputs.
        workers: processes in the pool.
        timeout: seconds a suspect may take when rerun alone (None: no limit).
    """
    pending, ctx = deque(items), _context()
    while pending:
        suspects = []
        with ProcessPoolExecutor(max(1, workers), mp_context=ctx) as pool:
            inflight: dict = {}
            while (pending or inflight) and not suspects:
                while pending and len(inflight) < 2 * max(1, workers):
                    item = pending.popleft()
                    inflight[pool.submit(fn, item)] = item
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    item = inflight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        suspects.append(item)
                        continue
                    yield item, result
            if suspects:  # every future still in flight fails the same way: all are suspects
                suspects += list(inflight.values())
        for item in suspects:
            yield item, run_isolated(fn, item, timeout)
