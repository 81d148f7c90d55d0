"""ResumableDataLoader: mid-epoch state, skipping without loading, lazy epoch, data-module hand-over."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from datamodules import FramePairDataModule
from datamodules.loader import ResumableDataLoader
from datamodules.sampling import EpochSampler
from datamodules.transforms import PairedTransform
from tests.helpers.video_helpers import write_index_folder


class Keys(Dataset):
    """Returns its (epoch, index) key and counts loads in this process."""

    def __init__(self, n: int):
        self.n, self.loads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        self.loads += 1
        return torch.tensor(key)


def loader(ds, workers=0):
    sampler = EpochSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    return ResumableDataLoader(ds, batch_size=3, sampler=sampler, drop_last=True, num_workers=workers)


def as_list(batches):
    return [b.tolist() for b in batches]


def test_resume_mid_epoch_yields_the_rest_without_loading_skipped_samples():
    full = loader(Keys(20))
    full.sampler.set_epoch(2)
    reference = as_list(full)  # 6 batches of epoch 2
    first = loader(Keys(20))
    first.sampler.set_epoch(2)
    it = iter(first)
    taken = [next(it).tolist() for _ in range(4)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 4, "batch_size": 3, "replicas": 1}
    ds = Keys(20)
    resumed = loader(ds)
    resumed.load_state_dict(state)
    rest = as_list(resumed)
    assert taken + rest == reference
    assert ds.loads == 2 * 3  # only the two remaining batches were loaded
    assert resumed.state_dict()["batches"] == 6
    assert as_list(resumed) == reference  # the skip applies once: the next pass is a whole epoch


def test_saved_state_of_another_epoch_does_not_skip():
    resumed = loader(Keys(20))
    resumed.load_state_dict({"epoch": 1, "batches": 4, "batch_size": 3, "replicas": 1})
    resumed.sampler.set_epoch(2)  # Lightning moved on to epoch 2
    assert len(as_list(resumed)) == 6


def test_iterator_is_lazy_so_workers_start_on_the_epoch_set_after_iter():
    dl = loader(Keys(12), workers=2)
    it = iter(dl)  # Lightning creates the iterator in setup_data, before set_epoch
    dl.sampler.set_epoch(5)
    assert {e for e, _ in next(it).tolist()} == {5}


def test_batch_size_change_warns():
    dl = loader(Keys(12))
    with pytest.warns(UserWarning, match="not the uninterrupted run's order"):
        dl.load_state_dict({"epoch": 0, "batches": 1, "batch_size": 4, "replicas": 1})


def test_datamodule_hands_a_restored_state_to_the_loader_it_builds_later(tmp_path):
    for i in range(3):
        write_index_folder(tmp_path / "JPEGImages" / f"v{i}", 6)
    kw = dict(image_size=16, batch_size=2, num_workers=0, gap_min=1, gap_max=2, repeated_sampling=2)
    dm = FramePairDataModule(str(tmp_path), **kw)
    assert dm.state_dict() == {}
    # batch_size 2 pairs = 1 video of repeated_sampling 2 per loader batch
    dm.load_state_dict({"train_loader": {"epoch": 0, "batches": 2, "batch_size": 1, "replicas": 1}})
    dl = dm.train_dataloader()
    batches = list(dl)
    assert len(batches) == 1 and dm.state_dict()["train_loader"]["batches"] == 3
    full = FramePairDataModule(str(tmp_path), **kw).train_dataloader()
    assert torch.equal(batches[0]["index"], list(full)[2]["index"])


def test_transform_output_is_contiguous():
    frames = np.random.default_rng(0).integers(0, 255, (2, 20, 30, 3), dtype=np.uint8)
    out = PairedTransform(16)(frames, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16) and out.is_contiguous()
