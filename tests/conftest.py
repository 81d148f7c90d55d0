import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    """Every test starts from the same RNG state on 2 CPU threads."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def ddp_clean_env() -> dict:
    """Environment for a subprocess DDP run: no inherited rendezvous variables (EADDRINUSE otherwise)."""
    env = dict(os.environ)
    for k in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "GROUP_RANK"):
        env.pop(k, None)
    return env
