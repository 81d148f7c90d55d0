"""RankLossWatchdog's pieces without DDP: liveness of a peer process and the message naming it."""

import os
import signal
import socket
import subprocess
import sys
import time

from callbacks.rank_loss import RankLossWatchdog, process_gone


def test_process_gone_sees_killed_and_zombie_processes():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not process_gone(proc.pid)
        proc.send_signal(signal.SIGKILL)
        for _ in range(100):  # not reaped yet: a zombie still counts as gone
            if process_gone(proc.pid):
                break
            time.sleep(0.05)
        assert process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert process_gone(proc.pid)  # reaped


def test_lost_rank_is_named_with_pid_and_host():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dog = RankLossWatchdog()
    dog.peers, dog.rank = [(socket.gethostname(), os.getpid()), (socket.gethostname(), dead.pid)], 0
    assert dog.lost_ranks() == [1]
    message = dog.describe(dog.lost_ranks())
    assert f"rank 1 (pid {dead.pid} on host {socket.gethostname()}) was lost" in message
    assert "stopping rank 0" in message and "--ckpt_path last" in message
    dog.peers[1] = ("another-host", 1)
    assert dog.lost_ranks() == [] and "ranks on other hosts [1]" in dog.describe([])
