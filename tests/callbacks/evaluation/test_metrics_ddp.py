"""Real 2-process (gloo) reduction of DavisJF / ConfusionMIoU / PCK equals the single-process result."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from callbacks.evaluation.metrics import PCK, ConfusionMIoU, DavisJF

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def _data():
    rng = np.random.default_rng(0)
    seqs = []
    for i in range(5):  # uneven shards: rank 0 gets 3 sequences, rank 1 gets 2
        gt = np.zeros((6, 30, 40), np.uint8)
        gt[:, 5:15, 5:20], gt[:, 18:28, 10:35] = 1, 2
        pred = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, 3, gt.shape), gt).astype(np.uint8)
        seqs.append((f"video-{i}", torch.from_numpy(pred), torch.from_numpy(gt)))
    return seqs


def _run(seqs, rank=0, world=1):
    davis, miou = DavisJF(), ConfusionMIoU(num_classes=3)
    pck = PCK(num_joints=2)
    for name, pred, gt in seqs[rank::world]:
        davis.update(pred, gt, 2, name)
        miou.update(pred, gt)
        pck.update(pred[:, :2, :2].double(), gt[:, :2, :2].double() + 1)
    return {**davis.compute(), "mIoU": miou.compute()["mIoU"], "PCK": pck.compute()["PCK@0.2"]}


def _worker(rank, world, port, path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out = _run(_data(), rank, world)
        if rank == 0:
            torch.save(out, path)
    finally:
        dist.destroy_process_group()


def test_two_rank_reduction_equals_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, port, str(path)), nprocs=2, join=True)
    ddp, single = torch.load(path), _run(_data())
    assert ddp.keys() == single.keys()
    for k in single:
        assert torch.equal(ddp[k], single[k]), k
