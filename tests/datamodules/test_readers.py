import importlib
import logging
import sys

import av
import numpy as np
import pytest
from PIL import Image

from datamodules import torchcodec_reader
from datamodules.readers import (
    BackendUnavailableError,
    DecordReader,
    FrameFolderReader,
    PyAVReader,
    VideoReadError,
    auto_video_backend,
    open_reader,
)
from datamodules.synthetic import render_scene, write_video
from datamodules.torchcodec_reader import TorchCodecReader, torchcodec_available
from tests.helpers.video_helpers import decode_index, index_frames, write_index_folder, write_index_video

N = 60
# torchcodec is a dev dependency; it needs FFmpeg's shared libraries, which .ci/run installs.
NEEDS_TORCHCODEC = pytest.mark.skipif(not torchcodec_available(), reason="torchcodec or FFmpeg libs missing")
TORCHCODEC = pytest.param("torchcodec", marks=NEEDS_TORCHCODEC)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_index_video(tmp_path_factory.mktemp("clip") / "clip.mp4", N, fps=25)


@pytest.fixture
def fresh_auto():
    """``auto_video_backend`` caches its choice per process: start and leave each test with a clean cache."""
    auto_video_backend.cache_clear()
    yield
    auto_video_backend.cache_clear()


@pytest.mark.parametrize("backend", [TORCHCODEC, "decord", "pyav"])
def test_video_backends_return_exact_frames(clip, backend):
    reader = open_reader(clip, backend)
    assert reader.num_frames == N and reader.fps == pytest.approx(25)
    rng = np.random.default_rng(0)
    for _ in range(15):
        idx = [int(i) for i in rng.integers(0, N, size=2)] + [N - 1, 0]  # unordered, near the end, repeats ok
        frames = reader.read(idx)
        assert frames.shape == (4, 32, 64, 3) and frames.dtype == np.uint8
        assert [decode_index(f) for f in frames] == idx
    assert [decode_index(f) for f in reader.read([7, 7])] == [7, 7]


@pytest.mark.parametrize("gop", [1, 12])
@NEEDS_TORCHCODEC
def test_torchcodec_reads_the_same_frames_as_pyav(tmp_path, gop):
    """Exact on an intra-only clip (GOP 1); within decoder tolerance with P/B frames."""
    frames, _ = render_scene(3, 40, (64, 96), 2)
    path = write_video(tmp_path / f"g{gop}.mp4", frames, gop=gop)
    idx = [0, 5, 17, 39, 22]
    a = open_reader(path, "torchcodec", num_frames=40).read(idx).astype(int)
    b = open_reader(path, "pyav", num_frames=40).read(idx).astype(int)
    assert a.shape == b.shape == (5, 64, 96, 3)
    if gop == 1:
        assert np.array_equal(a, b)
    else:
        assert np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() <= 16


def test_auto_backend_choice(clip, tmp_path, fresh_auto):
    expected = TorchCodecReader if torchcodec_available() else DecordReader  # torchcodec: maintained
    assert isinstance(open_reader(clip), expected)
    assert isinstance(open_reader(write_index_folder(tmp_path / "f", 3)), FrameFolderReader)


def test_missing_decord_names_package_and_auto_falls_back(clip, monkeypatch, fresh_auto):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(BackendUnavailableError, match="pip install decord"):
        open_reader(clip, "decord")
    assert isinstance(open_reader(clip, "auto"), PyAVReader)


def test_torchcodec_without_ffmpeg_libs_says_what_to_install(clip, monkeypatch, fresh_auto, caplog):
    real_import = importlib.import_module

    def no_ffmpeg(name, *a):
        if name.startswith("torchcodec"):
            raise RuntimeError("Could not load libtorchcodec: libavutil.so.57: cannot open shared object")
        return real_import(name, *a)

    monkeypatch.setattr(torchcodec_reader.importlib, "import_module", no_ffmpeg)
    with pytest.raises(BackendUnavailableError, match=r"libavutil\.so\.57.*apt-get install libavcodec59"):
        open_reader(clip, "torchcodec")
    with caplog.at_level(logging.INFO, logger="datamodules.readers"):
        readers = [open_reader(clip, "auto") for _ in range(3)]
    assert all(isinstance(r, DecordReader) for r in readers)
    lines = [r.getMessage() for r in caplog.records if "torchcodec unavailable" in r.getMessage()]
    assert len(lines) == 1 and "using decord" in lines[0]  # one log line per process, not per video


def test_frame_folder_reader(tmp_path):
    folder = write_index_folder(tmp_path / "JPEGImages" / "vid", 12, step=5)  # YT-VOS names 00000, 00005, ...
    reader = open_reader(folder, "frames", fps=6)
    assert reader.num_frames == 12 and reader.fps == 6
    assert [decode_index(f) for f in reader.read([11, 3, 0])] == [11, 3, 0]


def test_frame_folder_natural_order(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(index_frames(11)[i]).save(tmp_path / f"{i}.png")
    reader = FrameFolderReader(tmp_path)
    assert [decode_index(f) for f in reader.read([0, 1, 2])] == [1, 2, 10]


def test_grayscale_and_rgba_frames_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 10), 200, np.uint8), mode="L").save(tmp_path / "0.png")
    Image.fromarray(np.full((8, 10, 4), 100, np.uint8), mode="RGBA").save(tmp_path / "1.png")
    frames = FrameFolderReader(tmp_path).read([0, 1])
    assert frames.shape == (2, 8, 10, 3)
    assert (frames[0] == 200).all() and (frames[1] == 100).all()


def test_frames_of_different_sizes_name_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "1.png")
    reader = FrameFolderReader(tmp_path)
    with pytest.raises(VideoReadError, match=r"1\.png.*12x8 differs from the first frame's 10x8"):
        reader.read([0, 1])
    with pytest.raises(VideoReadError, match=r"1\.png"):
        reader.check_sizes()


def test_empty_folder_and_wrong_backend(tmp_path, clip):
    with pytest.raises(VideoReadError, match="no image files"):
        FrameFolderReader(tmp_path)
    with pytest.raises(VideoReadError, match="needs a directory"):
        open_reader(clip, "frames")
    with pytest.raises(VideoReadError, match="this is a directory"):
        open_reader(tmp_path, "pyav")


def _faststart_clip(path, n):
    """moov atom first: a truncated copy still opens, but its last frames are gone."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=30, options={"g": "12"})
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        for f in index_frames(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


@pytest.mark.parametrize("backend", [TORCHCODEC, "decord", "pyav"])
@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "garbage", "missing"])
def test_bad_video_files_raise_naming_the_file(clip, tmp_path, backend, kind):
    bad = tmp_path / f"{kind}.mp4"
    data = clip.read_bytes()
    if kind == "zero_byte":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match=f"{kind}.mp4") as info:
        open_reader(bad, backend).read([0, 1])
    assert info.value.path == str(bad)


def test_truncated_faststart_mp4(tmp_path):
    full = _faststart_clip(tmp_path / "full.mp4", 100)
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    reader = PyAVReader(bad)  # the header still claims 100 frames
    assert [decode_index(f) for f in reader.read([0, 10])] == [0, 10]
    with pytest.raises(VideoReadError, match=r"cut\.mp4: frames \[99\] could not be decoded"):
        reader.read([10, 99])
    with pytest.raises(VideoReadError, match=r"cut\.mp4"):  # decord refuses the file outright
        DecordReader(bad).read([0, 99])


@pytest.mark.parametrize("backend", [TORCHCODEC, "decord", "pyav"])
def test_out_of_range_index(clip, backend):
    with pytest.raises(VideoReadError, match=r"\[60\] out of range for 60 frames"):
        open_reader(clip, backend).read([0, 60])
    capped = open_reader(clip, backend, num_frames=30)  # an index's decoded count caps the header's
    assert capped.num_frames == 30
    with pytest.raises(VideoReadError, match="out of range"):
        capped.read([40])


def test_corrupt_image_in_folder_names_the_file(tmp_path):
    write_index_folder(tmp_path, 3)
    good = (tmp_path / "00001.jpg").read_bytes()
    (tmp_path / "00001.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (tmp_path / "00002.jpg").write_bytes(b"garbage")
    reader = FrameFolderReader(tmp_path)
    with pytest.raises(VideoReadError, match=r"00001\.jpg: cannot (open|decode)"):
        reader.read([0, 1])
    with pytest.raises(VideoReadError, match=r"00002\.jpg: cannot open"):
        reader.read([2])


@pytest.mark.parametrize("seek_threshold", [0, 5, 64])  # always re-seek / mixed / always walk forward
def test_pyav_seek_or_walk_gives_exact_frames(clip, seek_threshold):
    reader = PyAVReader(clip, seek_threshold=seek_threshold)
    rng = np.random.default_rng(1)
    for _ in range(10):
        idx = [int(i) for i in rng.integers(0, N, size=3)]
        assert [decode_index(f) for f in reader.read(idx)] == idx
