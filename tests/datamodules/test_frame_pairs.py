import logging

import numpy as np
import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from datamodules import FramePairDataModule, FramePairDataset
from datamodules.frame_pairs import VideoSource
from datamodules.readers import VideoReadError
from datamodules.sampling import EpochSampler, gap_bounds, sample_generator, sample_pair
from datamodules.transforms import PairedTransform, sample_crop
from tests.helpers.video_helpers import decode_index, write_index_folder, write_index_video

SIZE = (64, 64)  # square, so a full-area crop is the whole frame and the frame-index bands survive
MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)


def to_uint8(frame_chw: torch.Tensor) -> np.ndarray:
    return frame_chw.permute(1, 2, 0).numpy()  # the dataset hands out uint8 (3, H, W) frames


def pairs(ds, key=None):
    """(frames (2, 3, S, S), gap) of every pair of every item (or of item ``key``)."""
    items = [ds[key]] if key is not None else [ds[i] for i in range(len(ds))]
    return [(f, g.item()) for item in items for f, g in zip(item["frames"], item["gap"])]


def identity_transform():
    return PairedTransform(image_size=SIZE[0], crop_scale=(1.0, 1.0), hflip=False)


def folder_dataset(tmp_path, lengths, **kw):
    sources = [
        VideoSource(str(write_index_folder(tmp_path / f"v{i}", n, SIZE))) for i, n in enumerate(lengths)
    ]
    return FramePairDataset(sources, identity_transform(), backend="frames", **kw)


def test_sample_pair_gap_is_inclusive_and_both_endpoints_hit():
    g = torch.Generator().manual_seed(0)
    draws = [sample_pair(200, 4, 48, g) for _ in range(3000)]
    gaps = np.array([gap for _, gap in draws])
    assert gaps.min() == 4 and gaps.max() == 48
    assert all(0 <= s and s + gap <= 199 for s, gap in draws)


def test_gap_clamped_for_short_videos_and_two_frames_minimum():
    g = torch.Generator().manual_seed(0)
    gaps = {sample_pair(10, 4, 48, g)[1] for _ in range(500)}
    assert gaps == set(range(4, 10))  # clamped to n-1 = 9, still uniform over what fits
    assert {sample_pair(3, 4, 48, g) for _ in range(20)} == {(0, 2)}  # shorter than gap_min: the widest pair
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_pair(1, 4, 48, g)


def test_gap_bounds_units():
    assert gap_bounds(4, 48, "frames", fps=25) == (4, 48)
    assert gap_bounds(4, 48, "frames", fps=6, frame_step=5) == (1, 9)  # YouTube-VOS: 5 native frames per file
    assert gap_bounds(0.2, 0.4, "seconds", fps=25) == (5, 10)
    assert gap_bounds(0.2, 0.4, "seconds", fps=50) == (10, 20)
    assert gap_bounds(0.01, 0.02, "seconds", fps=25) == (1, 1)  # never a zero gap


def test_dataset_pairs_match_their_gap(tmp_path):
    ds = folder_dataset(tmp_path, [120], repeated_sampling=300)
    gaps = []
    for frames, gap in pairs(ds):
        first, second = (decode_index(to_uint8(f)) for f in frames)
        assert second - first == gap  # frame 2 is the later one
        gaps.append(gap)
    assert len(gaps) == 300 and min(gaps) == 4 and max(gaps) == 48


def test_frame_step_counts_native_frames(tmp_path):
    ds = folder_dataset(tmp_path, [60], frame_step=5, repeated_sampling=50)
    for frames, gap in pairs(ds):
        first, second = (decode_index(to_uint8(f)) for f in frames)
        assert gap == 5 * (second - first) and 5 <= gap <= 45


def test_single_frame_video_never_sampled(tmp_path):
    ds = folder_dataset(tmp_path, [1, 30], repeated_sampling=4)
    videos = {v for e in range(4) for i in range(len(ds)) for v in ds[(e, i)]["video"]}
    assert videos == {str(tmp_path / "v1")}
    assert ds.skipped >= 4  # each epoch's item of the 1-frame video was replaced (a redraw may hit it again)


def test_paired_transform_same_crop_and_flip_for_both_frames():
    h, w = 60, 80
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    first = torch.stack([xx * 2, yy * 3, (xx + yy) % 200], -1).to(
        torch.uint8
    )  # (H, W, 3), every pixel distinct
    second = first + 40  # the same content, brighter: the difference must stay constant after a shared crop
    t = PairedTransform(image_size=32, crop_scale=(0.3, 0.6), hflip=True)
    outs = [t(torch.stack([first, second]), torch.Generator().manual_seed(s)) for s in range(8)]
    for out in outs:
        assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
        diff = out[1].int() - out[0].int()
        assert (diff - 40).abs().max() <= 1  # integer resize: rounding may differ by one level
    assert not torch.allclose(outs[0], outs[1])  # different generators: different crops


def test_paired_transform_crop_matches_sampled_box():
    frame = torch.arange(40 * 40 * 3).remainder(251).view(40, 40, 3).to(torch.uint8)
    t = PairedTransform(image_size=40, crop_scale=(0.5, 1.0), hflip=False)
    out = t(torch.stack([frame, frame]), torch.Generator().manual_seed(3))
    top, left, h, w = sample_crop(40, 40, (0.5, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(3))
    crop = frame[top : top + h, left : left + w].permute(2, 0, 1).float()[None]
    expected = torch.nn.functional.interpolate(crop, size=(40, 40), mode="bilinear", antialias=True)[0]
    assert (out[0].float() - expected).abs().max() <= 1  # the uint8 kernel vs the float one, rounded


def test_determinism_is_a_function_of_epoch_and_index(tmp_path):
    ds = folder_dataset(tmp_path, [50, 50], repeated_sampling=3)
    a, b = ds[(1, 1)], ds[(1, 1)]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["gap"], b["gap"])
    ds.set_epoch(1)
    assert torch.equal(ds[1]["frames"], a["frames"])  # int keys use the dataset's epoch
    others = [tuple(ds[(e, 1)]["gap"].tolist()) for e in range(2, 12)]
    assert len(set(others)) > 1  # a new epoch draws new gaps
    assert sample_generator(0, 1, 4).initial_seed() != sample_generator(0, 4, 1).initial_seed()


def test_epoch_sampler_yields_epoch_keys_and_shards(tmp_path):
    ds = folder_dataset(tmp_path, [5] * 10, repeated_sampling=2)
    shards = [EpochSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0) for r in (0, 1)]
    for s in shards:
        s.set_epoch(3)
    keys = [list(s) for s in shards]
    assert all(epoch == 3 for k in keys for epoch, _ in k)
    assert sorted(i for k in keys for _, i in k) == list(range(10))  # disjoint, complete


@pytest.fixture
def video_root(tmp_path):
    for i in range(3):
        write_index_video(
            tmp_path / "train" / "cls" / f"{i}.mp4", 30 + 10 * i, size=(32, 64)
        )  # decord fails below 64 px wide
    return tmp_path


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_datamodule_batch_format(video_root, backend):
    dm = FramePairDataModule(str(video_root), backend=backend, image_size=32, batch_size=4, num_workers=0,
                             repeated_sampling=2)  # fmt: skip
    dm.setup("fit")
    assert len(dm.dataset) == 3 and dm.dataset.pairs_per_epoch == 6
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (4, 2, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert batch["video"][0] == batch["video"][1] and batch["video"][2] == batch["video"][3]  # R=2 together
    normed = dm.on_after_batch_transfer(batch, 0)["frames"]
    assert normed.dtype == torch.float32 and torch.allclose(
        normed, (batch["frames"].float() / 255 - MEAN) / STD
    )
    assert batch["gap"].dtype == torch.int64 and batch["gap"].shape == (4,)
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (4,)
    assert isinstance(batch["video"], list) and all(v.endswith(".mp4") for v in batch["video"])
    assert ((batch["gap"] >= 4) & (batch["gap"] <= 48)).all()


def test_two_workers_give_the_same_batches_as_the_main_process(video_root):
    def batches(workers):
        dm = FramePairDataModule(
            str(video_root), image_size=16, batch_size=2, num_workers=workers, timeout=60
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(2)
        return list(loader)

    main, workers = batches(0), batches(2)
    assert len(main) == len(workers) == 3
    for a, b in zip(main, workers):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["index"], b["index"])


def test_corrupt_file_strict_raises_else_skips_and_counts(video_root, caplog):
    bad = video_root / "train" / "cls" / "3_corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    strict = FramePairDataModule(str(video_root), backend="pyav", strict=True, image_size=16)
    strict.setup("fit")
    with pytest.raises(VideoReadError, match="3_corrupt.mp4"):
        strict.dataset[3]  # sources are sorted: the corrupt file is video 3
    lenient = FramePairDataModule(str(video_root), backend="pyav", image_size=16)
    lenient.setup("fit")
    with caplog.at_level(logging.WARNING, logger="datamodules.pair_dataset"):
        items = [lenient.dataset[(e, 3)] for e in (0, 1)]  # the corrupt video, in two epochs
    assert all(not v.endswith("3_corrupt.mp4") for item in items for v in item["video"])
    assert lenient.skipped >= 2  # a replacement drawn at random may hit the corrupt file again
    assert sum("3_corrupt.mp4" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_missing_root_and_empty_dir(tmp_path):
    with pytest.raises(ValueError, match="nope.*does not exist"):
        FramePairDataModule(str(tmp_path / "nope")).setup("fit")
    with pytest.raises(ValueError, match=f"{tmp_path}.*empty directory"):
        FramePairDataModule(str(tmp_path)).setup("fit")
    (tmp_path / "readme.txt").write_text("no videos here")
    with pytest.raises(ValueError, match="no usable videos"):
        FramePairDataModule(str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="index_file.*missing.csv"):
        FramePairDataModule(str(tmp_path), index_file=str(tmp_path / "missing.csv")).setup("fit")


def test_bad_config_values():
    with pytest.raises(ValueError, match="gap_min"):
        FramePairDataModule("x", gap_min=10, gap_max=4)
    with pytest.raises(ValueError, match="integer"):
        FramePairDataModule("x", gap_min=0.5, gap_max=1.5)
    with pytest.raises(ValueError, match="divisible by repeated_sampling=2"):
        FramePairDataModule("x", batch_size=5, repeated_sampling=2)


def test_seconds_unit_on_video(video_root):
    dm = FramePairDataModule(str(video_root), gap_unit="seconds", gap_min=0.2, gap_max=0.3, image_size=16)
    dm.setup("fit")  # write_index_video writes 30 fps: 6..9 frames
    gaps = {g for e in range(4) for i in range(3) for g in dm.dataset[(e, i)]["gap"].tolist()}
    assert gaps <= set(range(6, 10)) and len(gaps) > 1


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_single_frame_mp4_without_index_is_skipped(video_root, backend):
    write_index_video(video_root / "train" / "cls" / "9_single.mp4", 1, size=(32, 64))
    dm = FramePairDataModule(str(video_root), backend=backend, image_size=16, strict=True)
    dm.setup("fit")
    items = [dm.dataset[(e, i)] for e in (0, 1) for i in range(len(dm.dataset))]  # strict: only corrupt raise
    assert not any(v.endswith("9_single.mp4") for item in items for v in item["video"])
    assert dm.skipped >= 2
