"""corrmae prepare: mixed/corrupt/short inputs, crash isolation, resume, shards, and a killed run."""

import csv
import faulthandler
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from datamodules import FramePairDataModule
from datamodules.convert import convert_video, output_size
from datamodules.index import read_index
from datamodules.prepare import main, prepare
from datamodules.readers import open_reader
from datamodules.synthetic import write_video
from tests.helpers.video_helpers import decode_index, write_index_video

REPO = Path(__file__).resolve().parents[2]


def convert_or_abort(src, dst, **options):
    """A test backend: the converting process dies natively (SIGABRT) on files named CRASH*."""
    if src.name.startswith("CRASH"):
        faulthandler.disable()  # pytest's crash dump would only add noise
        os.abort()
    return convert_video(src, dst, **options)


@pytest.fixture
def mixed_root(tmp_path):
    """mp4s of two sizes (one odd), an MPEG-4 .avi, a 3-frame clip, a corrupt and an empty file."""
    root = tmp_path / "src"
    write_index_video(root / "train" / "a" / "v0.mp4", 24, size=(64, 96))
    write_index_video(root / "train" / "b" / "v1.mp4", 20, size=(32, 64), fps=25)
    frames = np.random.default_rng(0).integers(0, 255, (12, 50, 74, 3), dtype=np.uint8)
    with av.open(str(root / "train" / "b" / "odd.avi"), "w") as c:  # odd-sized input, another codec
        s = c.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 74, 50, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    write_index_video(root / "val" / "short.mp4", 3, size=(32, 32))
    (root / "val" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(800))
    (root / "val" / "empty.mp4").write_bytes(b"")
    return root


def failures(path):
    with open(path) as f:
        return {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}


def test_output_size_keeps_aspect_and_even_sides():
    assert output_size(340, 256, 256) == (340, 256)
    assert output_size(1920, 1080, 256) == (456, 256)
    assert output_size(74, 50, 32) == (48, 32)  # 47.36 -> 48 (even)


@pytest.mark.parametrize("fmt", ["jpeg", "mp4"])
def test_prepare_mixed_inputs(mixed_root, tmp_path, fmt):
    out = tmp_path / "out"
    s = prepare(mixed_root, out, fmt, short_side=32, keyint=4, gap_min=4, progress=False)
    assert (s.converted, s.skipped_done, s.indexed, s.too_short) == (4, 0, 3, 1)
    assert set(failures(out / "failures.csv")) == {"corrupt.mp4", "empty.mp4"}
    rows = {Path(r.path).relative_to(out).as_posix(): r for r in read_index(out / "index.csv")}
    suffix = ".mp4" if fmt == "mp4" else ""
    assert set(rows) == {f"train/a/v0{suffix}", f"train/b/v1{suffix}", f"train/b/odd{suffix}"}
    assert [(r.num_frames, r.width, r.height) for r in rows.values()] == [(24, 48, 32), (12, 48, 32),
                                                                         (20, 64, 32)]  # fmt: skip
    assert rows[f"train/b/v1{suffix}"].fps == 25
    if fmt == "mp4":
        with av.open(str(out / "train/a/v0.mp4")) as c:
            keys = [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.is_keyframe]
        assert np.diff(keys).max() <= 4 and keys[0] == 0
    dm = FramePairDataModule(str(out), image_size=16, batch_size=2, num_workers=0, gap_min=1, gap_max=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # --data.root OUT trains
    assert batch["frames"].shape == (2, 2, 3, 16, 16)


def test_prepared_frames_are_the_source_frames(tmp_path):
    write_index_video(tmp_path / "src" / "v.mp4", 30, size=(64, 64))
    prepare(tmp_path / "src", tmp_path / "out", "jpeg", short_side=64, progress=False)
    frames = open_reader(tmp_path / "out" / "v", "frames").read([0, 13, 29])
    assert [decode_index(f) for f in frames] == [0, 13, 29]


def test_native_crash_is_recorded_and_the_run_completes(mixed_root, tmp_path):
    crash = mixed_root / "train" / "a" / "CRASH.mp4"
    crash.write_bytes((mixed_root / "train" / "a" / "v0.mp4").read_bytes())
    out = tmp_path / "out"
    s = prepare(mixed_root, out, "jpeg", short_side=32, workers=2, convert=convert_or_abort, progress=False)
    assert s.converted == 4 and s.indexed == 3
    reasons = failures(out / "failures.csv")
    assert set(reasons) == {"CRASH.mp4", "corrupt.mp4", "empty.mp4"} and "SIGABRT" in reasons["CRASH.mp4"]
    assert not (out / "train" / "a" / "CRASH").exists() and not list(out.rglob(".*.partial"))


def test_rerun_skips_finished_outputs_and_ignores_partials(mixed_root, tmp_path):
    out = tmp_path / "out"
    prepare(mixed_root, out, "mp4", short_side=32, progress=False)
    stamp = (out / "train/a/v0.mp4").stat().st_mtime_ns
    (out / "train/b/.odd.mp4.partial").write_bytes(b"half a video")  # what a kill mid-write leaves
    (out / "train/b/v1.mp4").unlink()  # not finished yet
    (out / ".prepare" / "done-0-of-1.csv").write_text("")  # a ledger lost: outputs are re-probed
    s = prepare(mixed_root, out, "mp4", short_side=32, progress=False)
    assert (s.converted, s.skipped_done, len(s.failures)) == (1, 3, 2)  # v1; the 2 bad files fail again
    assert (out / "train/a/v0.mp4").stat().st_mtime_ns == stamp
    assert len(read_index(out / "index.csv")) == 3


def test_shards_split_the_work_and_the_last_index_covers_all(mixed_root, tmp_path):
    out = tmp_path / "out"
    a = prepare(mixed_root, out, "jpeg", short_side=32, shard=(0, 2), progress=False)
    b = prepare(mixed_root, out, "jpeg", short_side=32, shard=(1, 2), progress=False)
    assert a.converted + b.converted == 4 and len(a.failures) + len(b.failures) == 2
    assert (out / "failures-0-of-2.csv").is_file() and (out / "failures-1-of-2.csv").is_file()
    assert b.indexed == 3 and len(read_index(out / "index.csv")) == 3


def test_bad_arguments(mixed_root, tmp_path):
    with pytest.raises(ValueError, match="must not be inside --root"):
        prepare(mixed_root, mixed_root / "out", progress=False)
    with pytest.raises(ValueError, match="0 <= K < N"):
        prepare(mixed_root, tmp_path / "o", shard=(2, 2), progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        prepare(mixed_root, tmp_path / "file", progress=False)
    with pytest.raises(SystemExit):
        main(["--root", str(mixed_root), "--out", str(tmp_path / "o"), "--shard", "2"])


def test_cli_prints_counts_and_sizes(mixed_root, tmp_path, capsys):
    main(["--root", str(mixed_root), "--out", str(tmp_path / "o"), "--short-side", "32", "--no-progress"])
    out = capsys.readouterr().out
    assert "4 converted" in out and "2 failed" in out and "disk: source" in out and "-> prepared" in out


@pytest.mark.slow
def test_killed_prepare_resumes_to_the_uninterrupted_result(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(10):
        write_video(src / f"v{i}.mp4", rng.integers(0, 255, (90, 96, 128, 3), dtype=np.uint8), gop=30)
    cmd = [sys.executable, "-m", "lightning_modules", "prepare", "--root", str(src), "--short-side", "96",
           "--format", "mp4", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env, start_new_session=True)
    ledger = tmp_path / "killed" / ".prepare" / "done-0-of-1.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.is_file() and len(ledger.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(ledger.read_text().splitlines())
    assert done_before < 10, "the run finished before it could be killed"
    subprocess.run([*cmd, "--out", str(tmp_path / "killed")], env=env, check=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "clean")], env=env, check=True)
    killed = [(Path(r.path).name, r.num_frames, r.width) for r in read_index(tmp_path / "killed/index.csv")]
    clean = [(Path(r.path).name, r.num_frames, r.width) for r in read_index(tmp_path / "clean/index.csv")]
    assert killed == clean and len(clean) == 10
    assert not list((tmp_path / "killed").rglob(".*.partial"))
