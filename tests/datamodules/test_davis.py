import warnings

import numpy as np
import pytest
from PIL import Image

from callbacks.evaluation.davis import eval_size
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.davis import (
    load_davis,
    read_index_png,
    read_palette,
    read_split,
    voc_palette,
    write_palette_png,
)


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    return write_davis_benchmark(
        tmp_path_factory.mktemp("d") / "DAVIS", seed=3, num_val=2, num_tune=1, num_frames=4, size=(48, 80)
    )


def test_reader_on_generated_benchmark(davis_root):
    seqs = load_davis(davis_root)
    assert [s.name for s in seqs] == read_split(davis_root, "val") == ["synth-val-00", "synth-val-01"]
    s = seqs[0]
    assert len(s) == 4 and s.size == (48, 80)
    frame = s.read_frame(2)
    assert frame.shape == (48, 80, 3) and frame.dtype == np.uint8
    masks = s.read_masks()
    assert masks.shape == (4, 48, 80) and masks[0].max() == s.num_objects >= 1
    assert np.array_equal(s.first_mask(), masks[0])
    assert np.array_equal(s.palette, voc_palette())
    assert load_davis(davis_root, "tune")[0].name == "synth-tune-02"
    assert len(load_davis(davis_root, max_videos=1)) == 1


def test_voc_palette_known_colours():
    pal = voc_palette()
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0] and pal[255].tolist() == [224, 224, 192]


def test_palette_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (7, 9)).astype(np.uint8)
    pal = rng.integers(0, 256, (256, 3)).astype(np.uint8)
    path = write_palette_png(tmp_path / "seq" / "00000.png", mask, pal)
    with Image.open(path) as img:
        assert img.mode == "P"
    # What davis2017-evaluation does: np.array(Image.open(path)).
    assert np.array_equal(np.array(Image.open(path)), mask)
    assert np.array_equal(read_index_png(path), mask) and np.array_equal(read_palette(path), pal)


def test_eval_size_rules():
    assert eval_size(480, 854, 480, 8) == (480, 856)
    assert eval_size(480, 854, 480, 16) == (480, 848)
    assert eval_size(480, 854, 480, 8, "dino64") == (480, 832)  # DINO floors to a multiple of 64
    assert eval_size(480, 910, 480, 8, "dino64") == (480, 896)
    assert eval_size(854, 480, 480, 16) == (848, 480)  # portrait
    assert eval_size(50, 83, None, 8) == (48, 80)
    with pytest.raises(ValueError, match="multiple of the feature stride"):
        eval_size(480, 854, 470, 16)


# ----------------------------------------------------------------------------- bad input, one test each
def _copy(root, tmp_path):
    import shutil

    return shutil.copytree(root, tmp_path / "DAVIS")


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="DAVIS root not found"):
        load_davis(tmp_path / "nope")


def test_sequence_in_split_but_absent(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    (root / "ImageSets/2017/val.txt").write_text("synth-val-00\nghost\n")
    with pytest.raises(FileNotFoundError, match="'ghost' is listed"):
        load_davis(root)


def test_missing_first_frame_mask(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    (root / "Annotations/480p/synth-val-01/00000.png").unlink()
    with pytest.raises(FileNotFoundError, match="synth-val-01/00000.png"):
        load_davis(root)


def test_annotation_size_differs_from_frame(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    path = root / "Annotations/480p/synth-val-00/00002.png"
    write_palette_png(path, np.zeros((40, 80), np.uint8), voc_palette())
    seq = load_davis(root)[0]
    with pytest.raises(ValueError, match="00002.png: annotation size"):
        seq.read_masks()
    write_palette_png(
        root / "Annotations/480p/synth-val-00/00000.png", np.ones((40, 80), np.uint8), voc_palette()
    )
    with pytest.raises(ValueError, match="00000.png: annotation size"):
        load_davis(root)


def test_ids_not_in_first_frame_warn_and_become_background(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    seq = load_davis(root)[0]
    mask = seq.read_masks()[1].copy()
    mask[:3, :3] = seq.num_objects + 2
    mask[5, 5] = 255  # void counts as background in semi-supervised evaluation
    write_palette_png(root / "Annotations/480p/synth-val-00/00001.png", mask, voc_palette())
    with pytest.warns(UserWarning, match="not in frame 0"):
        got = load_davis(root)[0].read_masks()[1]
    assert got[:3, :3].max() == 0 and got[5, 5] == 0 and got.max() <= seq.num_objects


def test_first_frame_gap_in_ids_warns(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    m = np.zeros((48, 80), np.uint8)
    m[10:20, 10:20] = 2  # id 1 absent: it can never be predicted
    write_palette_png(root / "Annotations/480p/synth-val-00/00000.png", m, voc_palette())
    with pytest.warns(UserWarning, match=r"ids \[1\] are absent"):
        seq = load_davis(root)[0]
    assert seq.num_objects == 2


def test_missing_split_file(davis_root, tmp_path):
    root = _copy(davis_root, tmp_path)
    (root / "ImageSets/2017/val.txt").unlink()
    with warnings.catch_warnings(), pytest.raises(FileNotFoundError, match="val.txt"):
        load_davis(root)
