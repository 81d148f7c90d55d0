import numpy as np

from datamodules.benchmark_gen import main, write_davis_benchmark
from datamodules.davis import load_davis
from tests.helpers.tree_digest import tree_digest


def test_deterministic_from_seed(tmp_path):
    kw = dict(num_val=2, num_tune=1, num_frames=3, size=(32, 48))
    a = write_davis_benchmark(tmp_path / "a", seed=1, **kw)
    b = write_davis_benchmark(tmp_path / "b", seed=1, **kw)
    c = write_davis_benchmark(tmp_path / "c", seed=2, **kw)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)


def test_layout_readable_and_scenes_move(tmp_path):
    root = tmp_path / "DAVIS"
    main(
        [
            "--out",
            str(root),
            "--seed",
            "0",
            "--num-val",
            "3",
            "--num-tune",
            "2",
            "--frames",
            "8",
            "--size",
            "48",
            "64",
        ]
    )
    val, tune = load_davis(root, "val"), load_davis(root, "tune")
    assert len(val) == 3 and len(tune) == 2 and not {s.name for s in val} & {s.name for s in tune}
    for s in val:
        masks = s.read_masks()
        assert 1 <= s.num_objects <= 3
        assert set(np.unique(masks[0])) == set(range(s.num_objects + 1))  # every object visible in frame 0
        assert (masks[0] != masks[-1]).mean() > 0.01  # real motion


def test_ensure_benchmark_keeps_a_matching_one_and_rewrites_another_size(tmp_path):
    from datamodules.benchmark_gen import ensure_davis_benchmark

    root = tmp_path / "davis"
    write_davis_benchmark(root, num_val=1, num_tune=1, num_frames=3, size=(32, 48))
    marker = root / "keep.txt"
    marker.write_text("x")
    ensure_davis_benchmark(root, num_val=1, num_tune=1)
    assert marker.is_file()  # same size: untouched
    ensure_davis_benchmark(root, num_val=2, num_tune=1)
    assert not marker.is_file()
    assert len((root / "ImageSets/2017/val.txt").read_text().split()) == 2
