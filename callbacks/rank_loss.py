"""A rank that dies under DDP stops the others quickly, with a message naming it, instead of a hang.

Without it a SIGKILLed rank (OOM killer, preemption, a native crash) leaves the others blocked in their next
collective until the process-group timeout (Lightning's ``DDPStrategy(timeout=...)``: 30 minutes by default)
or, with gloo, exiting with "Connection closed by peer" that names no rank.

``RankLossWatchdog`` records every rank's host and pid when fit starts (one ``all_gather_object``), then a
daemon thread polls the ranks on its own host every ``poll_s`` seconds. When one is gone (or a zombie) it
prints ``rank R (pid P on host H) was lost ...`` to stderr, kills this node's other ranks that Lightning
launched and exits the process with ``exit_code``. A collective that fails first gets the same message and
exit from ``on_exception``; if no local rank is dead, it names the ranks on other hosts and lets Lightning
re-raise. Ranks on other hosts are otherwise left to the collective timeout, so set it in production
(``strategy: {class_path: lightning.pytorch.strategies.DDPStrategy, init_args: {timeout: "0:10:00"}}``).
The CLI installs the watchdog by default; it does nothing in a single process.
"""

import os
import signal
import socket
import sys
import threading
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs on this host (exited, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


class RankLossWatchdog(Callback):
    """Stops a DDP rank whose peer died, naming the peer (see the module docstring).

    Args:
        poll_s: seconds between liveness checks of the ranks on this host.
        exit_code: exit status of a rank stopped because a peer was lost.
        settle_s: after a failed collective, how long to look for the dead local peer before naming it.
    """

    def __init__(self, poll_s: float = 1.0, exit_code: int = 1, settle_s: float = 3.0):
        self.poll_s, self.exit_code, self.settle_s = poll_s, exit_code, settle_s
        self.peers: list[tuple[str, int]] = []
        self.rank = 0
        self._children: dict = {}
        self._stop: threading.Event | None = None  # made in on_fit_start: ddp_spawn pickles callbacks

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Learn every rank's (host, pid) and start watching the local ones."""
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        peers: list = [None] * trainer.world_size
        torch.distributed.all_gather_object(peers, (socket.gethostname(), os.getpid()))
        self.peers, self.rank = [tuple(p) for p in peers], trainer.global_rank
        self._children = {proc.pid: proc for proc in getattr(trainer.strategy.launcher, "procs", [])}
        self._stop = threading.Event()
        watch = threading.Thread(target=self._watch, args=(trainer,), name="rank-loss-watchdog", daemon=True)
        watch.start()

    def lost_ranks(self) -> list[int]:
        """Ranks on this host whose process is gone (a launched child that exited with 0 just finished)."""
        host = socket.gethostname()
        lost = []
        for r, (h, pid) in enumerate(self.peers):
            if r == self.rank or h != host:
                continue
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                gone = child.returncode != 0
            else:
                gone = process_gone(pid)
            if gone:
                lost.append(r)
        return lost

    def describe(self, lost: list[int]) -> str:
        """A message naming the lost ranks (or, if none is visible, the ranks on other hosts)."""
        if lost:
            names = ", ".join(f"rank {r} (pid {self.peers[r][1]} on host {self.peers[r][0]})" for r in lost)
            return (
                f"corrmae: {names} was lost (its process is gone); stopping rank {self.rank} instead of "
                f"waiting in a collective. Resume with --ckpt_path last."
            )
        remote = [r for r, (h, _) in enumerate(self.peers) if h != socket.gethostname()]
        return (
            f"corrmae: a collective failed on rank {self.rank}; no rank on this host died, so the lost one "
            f"is among the ranks on other hosts {remote}. Resume with --ckpt_path last."
        )

    def _watch(self, trainer: L.Trainer) -> None:
        stop = self._stop
        while not stop.wait(self.poll_s):
            lost = self.lost_ranks()
            if lost:
                self._abort(trainer, self.describe(lost))

    def _abort(self, trainer: L.Trainer, message: str) -> None:
        """Print, take this node's launched ranks down too, and leave now (the main thread may be blocked)."""
        print(message, file=sys.stderr, flush=True)
        launcher = trainer.strategy.launcher
        for proc in getattr(launcher, "procs", []):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        os._exit(self.exit_code)

    def stop(self) -> None:
        """Stop watching (normal end of training: ranks may now exit at different times)."""
        if self._stop is not None:
            self._stop.set()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Training is over on this rank."""
        self.stop()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A failed collective: name the lost rank and leave (none visible: Lightning re-raises)."""
        if not self.peers or self._stop is None or self._stop.is_set():
            return
        self.stop()
        if isinstance(exception, (RuntimeError, torch.distributed.DistError)):
            # A killed peer's sockets close a moment before its process is reaped: give it a few polls.
            lost = self.lost_ranks()
            for _ in range(int(self.settle_s / 0.1)):
                if lost:
                    break
                time.sleep(0.1)
                lost = self.lost_ranks()
            if not lost:
                print(self.describe(lost), file=sys.stderr, flush=True)
                return
            # Lightning's teardown could block on the broken process group: close the loggers and leave now.
            for logger in trainer.loggers:
                try:
                    logger.finalize("failed")
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            self._abort(trainer, self.describe(lost))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Never outlive the fit."""
        self.stop()
