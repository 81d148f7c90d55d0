import numpy as np
import pytest

from datamodules.jhmdb import NUM_JOINTS, load_jhmdb
from datamodules.vip import load_vip
from tests.helpers.benchmark_fixtures import write_jhmdb_fixture, write_vip_fixture


def test_vip_reader(tmp_path):
    write_vip_fixture(tmp_path / "VIP", num_videos=2, num_frames=3, size=(40, 32))
    for root in (tmp_path / "VIP", tmp_path / "VIP" / "VIP_Fine"):  # parent or VIP_Fine itself
        videos = load_vip(root)
        assert [v.name for v in videos] == ["videos1", "videos2"]
    v = videos[0]
    assert [p.name for p in v.frame_paths] == ["000000000001.jpg", "000000000026.jpg", "000000000051.jpg"]
    assert v.read_frame(1).shape == (40, 32, 3)
    label = v.read_label(0)
    assert label.shape == (40, 32) and set(np.unique(label)) <= {0, 2, 4, 8}


def test_vip_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="VIP root not found"):
        load_vip(tmp_path / "nope")
    root = write_vip_fixture(tmp_path / "VIP", num_videos=1, num_frames=2, size=(24, 24))
    (root / "lists/val_videos.txt").write_text("videos1\nvideos9\n")
    with pytest.raises(FileNotFoundError, match="'videos9' is listed"):
        load_vip(root)


def test_jhmdb_reader_uvc_list(tmp_path):
    root = write_jhmdb_fixture(tmp_path / "JHMDB", num_videos=2, num_frames=4, size=(30, 40))
    videos = load_jhmdb(root)
    assert [v.name for v in videos] == ["wave/clip_0", "run/clip_1"]
    v = videos[0]
    assert len(v) == 4 and v.size == (30, 40) and v.joints.shape == (4, NUM_JOINTS, 2)
    from scipy.io import loadmat

    pos = loadmat(root / "joint_positions/wave/clip_0/joint_positions.mat")["pos_img"]
    assert np.allclose(v.joints[2, 5], pos[:, 5, 2] - 1)  # 1-based MATLAB -> 0-based (x, y)


def test_jhmdb_official_split_files_and_truncation(tmp_path):
    root = write_jhmdb_fixture(tmp_path / "JHMDB", num_videos=2, num_frames=4, size=(30, 40))
    (root / "testlist_split1.txt").unlink()
    (root / "splits").mkdir()
    (root / "splits/wave_test_split1.txt").write_text("clip_0.avi 2\nother.avi 1\n")
    (root / "Rename_Images/wave/clip_0/00004.png").unlink()  # annotation longer than the frames
    videos = load_jhmdb(root)
    assert [v.name for v in videos] == ["wave/clip_0"] and len(videos[0]) == 3 == len(videos[0].joints)


def test_jhmdb_missing_split(tmp_path):
    (tmp_path / "JHMDB").mkdir()
    with pytest.raises(FileNotFoundError, match="testlist_split1.txt"):
        load_jhmdb(tmp_path / "JHMDB")
