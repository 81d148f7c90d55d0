import csv
import faulthandler
import os
from pathlib import Path

import pytest

from datamodules import FramePairDataModule
from datamodules.index import build_index, find_sources, main, probe, read_index
from tests.helpers.video_helpers import write_index_folder, write_index_video


@pytest.fixture
def kinetics_root(tmp_path):
    """Kinetics layout <root>/<split>/<class>/<id>.mp4 with one short, one empty and one corrupt video."""
    write_index_video(tmp_path / "train" / "abseiling" / "a.mp4", 20, size=(32, 64), fps=25)
    write_index_video(tmp_path / "train" / "zumba" / "b.mp4", 12, size=(32, 64), fps=30)
    write_index_video(tmp_path / "train" / "zumba" / "short.mp4", 3, size=(32, 64))
    (tmp_path / "train" / "zumba" / "empty.mp4").write_bytes(b"")
    (tmp_path / "val" / "x").mkdir(parents=True)
    (tmp_path / "val" / "x" / "corrupt.mp4").write_bytes(b"not a video" * 100)
    (tmp_path / ".hidden").mkdir()
    write_index_video(tmp_path / ".hidden" / "skip.mp4", 10, size=(32, 64))
    return tmp_path


def test_build_index_decoded_counts_and_drops(kinetics_root, caplog):
    out, summary = build_index(kinetics_root, gap_min=4)
    assert out == kinetics_root / "index.csv"
    assert (summary.kept, summary.too_short, summary.unreadable) == (2, 1, 2)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "num_frames", "fps", "width", "height"]
    assert [(r["path"], r["num_frames"], r["fps"], r["width"], r["height"]) for r in rows] == [
        ("train/abseiling/a.mp4", "20", "25", "64", "32"),
        ("train/zumba/b.mp4", "12", "30", "64", "32"),
    ]
    assert any("corrupt.mp4" in r.getMessage() for r in caplog.records)
    rows = read_index(out)
    assert rows[0].path == str(kinetics_root / "train" / "abseiling" / "a.mp4") and rows[0].num_frames == 20


def test_frame_folders_yt_vos_layout(tmp_path):
    write_index_folder(tmp_path / "JPEGImages" / "vid1", 8, step=5)
    write_index_folder(tmp_path / "JPEGImages" / "vid2", 6)
    write_index_folder(tmp_path / "Annotations" / "vid1", 8)  # masks must not be indexed as videos
    assert find_sources(tmp_path, videos=False) == [
        tmp_path / "JPEGImages" / "vid1",
        tmp_path / "JPEGImages" / "vid2",
    ]
    out, summary = build_index(tmp_path, gap_min=4, backend="frames", folder_fps=6)
    assert summary.kept == 2
    assert [(r.num_frames, r.fps, r.width) for r in read_index(out)] == [(8, 6.0, 64), (6, 6.0, 64)]


def test_folder_with_mixed_sizes_is_unreadable(tmp_path):
    from PIL import Image

    write_index_folder(tmp_path / "v", 6, size=(32, 64))
    Image.new("RGB", (10, 10)).save(tmp_path / "v" / "00099.jpg")
    _, summary = build_index(tmp_path, gap_min=1)
    assert (summary.kept, summary.unreadable) == (0, 1)


def test_training_reads_the_index(kinetics_root):
    build_index(kinetics_root, gap_min=4)
    dm = FramePairDataModule(str(kinetics_root), image_size=16, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert [(s.path.rsplit("/", 1)[-1], s.num_frames) for s in dm.dataset.sources] == [
        ("a.mp4", 20),
        ("b.mp4", 12),
    ]
    assert dm.dataset[0]["frames"].shape == (2, 2, 3, 16, 16)  # repeated_sampling 2 pairs of one video


def test_cli_main_prints_summary(kinetics_root, tmp_path, capsys):
    main(["--root", str(kinetics_root), "--out", str(tmp_path / "idx.csv"), "--gap-min", "15"])
    out = capsys.readouterr().out
    assert "indexed 1 videos" in out and "dropped 2 shorter than 16 frames" in out and "2 unreadable" in out
    assert len(read_index(tmp_path / "idx.csv", root=kinetics_root)) == 1


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_index(tmp_path / "nope")
    with pytest.raises(ValueError, match="no video files"):
        build_index(tmp_path)


def test_bad_index_file(tmp_path):
    (tmp_path / "index.csv").write_text("path,num_frames\na.mp4,3\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_index(tmp_path / "index.csv")


def probe_or_abort(path, folder_fps=30.0):
    """A test backend: a native crash (SIGABRT, as a segfaulting decoder would) on files named CRASH*."""
    if path.name.startswith("CRASH"):
        faulthandler.disable()  # pytest's crash dump would only add noise
        os.abort()
    return probe(path, folder_fps)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_kills_the_decoder_is_isolated(kinetics_root, workers):
    crash = kinetics_root / "train" / "zumba" / "CRASH.mp4"
    crash.write_bytes((kinetics_root / "train" / "zumba" / "b.mp4").read_bytes())
    out, summary = build_index(kinetics_root, gap_min=4, workers=workers, probe_fn=probe_or_abort)
    assert (summary.kept, summary.too_short, summary.unreadable) == (2, 1, 3)  # the scan completed
    assert [Path(r.path).name for r in read_index(out)] == ["a.mp4", "b.mp4"]
    with open(kinetics_root / "index_failures.csv") as f:
        failures = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(failures) == {"CRASH.mp4", "empty.mp4", "corrupt.mp4"}
    assert "SIGABRT" in failures["CRASH.mp4"] and "native crash" in failures["CRASH.mp4"]
