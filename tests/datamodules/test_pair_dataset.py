"""Repeated sampling done right: one open and one read per video, its R pairs in the same batch."""

import torch

import datamodules.pair_dataset as pair_dataset
from datamodules import FramePairDataModule
from datamodules.loader import ResumableDataLoader
from datamodules.pair_dataset import collate_pairs
from datamodules.readers import open_reader
from datamodules.sampling import EpochSampler, gap_bounds, sample_generator, sample_pair
from tests.helpers.video_helpers import decode_index, write_index_folder, write_index_video

N = 6


def folder_root(tmp_path, n=N, frames=30):
    for i in range(n):
        write_index_folder(tmp_path / "JPEGImages" / f"v{i}", frames + i, size=(32, 32))
    return tmp_path


def data_module(root, **kw):
    kw = {"image_size": 32, "crop_scale": (1.0, 1.0), "hflip": False, "num_workers": 0, "gap_min": 2,
          "gap_max": 12, **kw}  # fmt: skip
    dm = FramePairDataModule(str(root), **kw)
    dm.setup("fit")
    return dm


def frame_ids(frames):
    """Frame indices painted into uint8 (2, 3, S, S) frames."""
    return [decode_index(f.permute(1, 2, 0).numpy()) for f in frames]


def test_one_open_and_one_read_per_video_per_epoch(tmp_path, monkeypatch):
    opens, reads = [], []

    def counting_open(path, *args, **kw):
        reader = open_reader(path, *args, **kw)
        opens.append(str(path))
        read = reader.read
        reader.read = lambda idx: reads.append(list(idx)) or read(idx)
        return reader

    monkeypatch.setattr(pair_dataset, "open_reader", counting_open)
    dm = data_module(folder_root(tmp_path), repeated_sampling=4, batch_size=8)
    batches = list(dm.train_dataloader())
    assert sum(len(b["video"]) for b in batches) == N * 4  # the epoch still holds N x R pairs
    assert sorted(opens) == sorted(str(s.path) for s in dm.dataset.sources)  # N opens, not R x N
    assert len(reads) == N and all(r == sorted(r) for r in reads)  # one sorted read of all 2R frames


def test_pairs_of_a_video_share_a_batch_and_are_distinct_draws(tmp_path):
    dm = data_module(folder_root(tmp_path), repeated_sampling=3, batch_size=6)
    batches = list(dm.train_dataloader())
    assert len(batches) == N // 2  # 2 videos x 3 pairs per batch
    seen = []
    for b in batches:
        assert b["frames"].shape == (6, 2, 3, 32, 32) and b["frames"].dtype == torch.uint8
        assert b["video"][:3] == [b["video"][0]] * 3 and b["video"][3:] == [b["video"][3]] * 3
        assert b["index"].tolist() == [b["index"][0].item()] * 3 + [b["index"][3].item()] * 3
        for frames, gap in zip(b["frames"], b["gap"].tolist()):
            first, second = frame_ids(frames)
            assert second - first == gap  # each pair really is its own gap apart
        seen += b["video"][::3]
        starts = [frame_ids(f)[0] for f in b["frames"]]
        assert len(set(starts)) > 1 or len(set(b["gap"].tolist())) > 1  # not one pair repeated
    assert sorted(seen) == sorted(s.path for s in dm.dataset.sources)  # an epoch is each video once


def test_r1_reproduces_one_pair_per_item(tmp_path):
    """R = 1: item i is exactly the pair that (seed, epoch, i) draws: gap, start, then the crop."""
    dm = data_module(folder_root(tmp_path), repeated_sampling=1, batch_size=2, crop_scale=(0.5, 1.0))
    ds = dm.dataset
    for index in range(N):
        g = sample_generator(0, 3, index)
        reader = open_reader(ds.sources[index].path, "frames")
        start, gap = sample_pair(reader.num_frames, *gap_bounds(2, 12, "frames", reader.fps), g)
        expected = ds.transform(reader.read([start, start + gap]), g)
        item = ds[(3, index)]
        assert torch.equal(item["frames"][0], expected) and item["gap"].tolist() == [gap]


def test_mid_epoch_resume_with_r2(tmp_path):
    dm = data_module(folder_root(tmp_path), repeated_sampling=2, batch_size=4)
    full = list(dm.train_dataloader())
    loader = data_module(tmp_path, repeated_sampling=2, batch_size=4).train_dataloader()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    assert state["batches"] == 1 and state["batch_size"] == 2  # the loader batches videos
    resumed = data_module(tmp_path, repeated_sampling=2, batch_size=4).train_dataloader()
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 1
    for a, b in zip(rest, full[1:]):
        assert torch.equal(a["frames"], b["frames"]) and a["video"] == b["video"]


def test_ddp_shards_by_video_with_r2(tmp_path):
    ds = data_module(folder_root(tmp_path, n=8), repeated_sampling=2, batch_size=4).dataset
    shards = []
    for rank in (0, 1):
        sampler = EpochSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        loader = ResumableDataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_pairs)
        shards.append([v for b in loader for v in b["video"]])
    assert len(shards[0]) == len(shards[1]) == 8  # 4 videos x 2 pairs per rank
    assert not set(shards[0]) & set(shards[1])  # disjoint videos: a video's pairs never span ranks
    assert set(shards[0]) | set(shards[1]) == {s.path for s in ds.sources}


def test_bad_video_replaced_with_all_r_pairs_and_counted(tmp_path):
    root = tmp_path / "videos"
    for i in range(3):
        write_index_video(root / f"{i}.mp4", 20)
    (root / "3_cut.mp4").write_bytes((root / "0.mp4").read_bytes()[:400])
    dm = data_module(root, repeated_sampling=2, batch_size=4, backend="pyav", image_size=16)
    batches = list(dm.train_dataloader())
    videos = [v for b in batches for v in b["video"]]
    assert len(videos) == 8 and not any(v.endswith("3_cut.mp4") for v in videos)
    assert all(b["frames"].shape[0] == 4 for b in batches)  # the replacement fills both pairs
    assert dm.skipped >= 1
