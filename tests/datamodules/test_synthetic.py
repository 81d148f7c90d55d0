import av
import numpy as np
import pytest

from datamodules.synthetic import (
    TEXTURE_KINDS,
    make_texture,
    render_scene,
    write_synthetic_videos,
    write_video,
)


def test_render_scene_shapes_ids_and_determinism():
    frames, masks = render_scene(seed=7, num_frames=12, size=(48, 64), num_objects=4)
    assert frames.shape == (12, 48, 64, 3) and frames.dtype == np.uint8
    assert masks.shape == (12, 48, 64) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= set(range(5)) and masks.max() >= 1
    again_frames, again_masks = render_scene(seed=7, num_frames=12, size=(48, 64), num_objects=4)
    np.testing.assert_array_equal(frames, again_frames)
    np.testing.assert_array_equal(masks, again_masks)
    other, _ = render_scene(seed=8, num_frames=12, size=(48, 64), num_objects=4)
    assert not np.array_equal(frames, other)


def test_objects_move_scale_and_background_pans():
    frames, masks = render_scene(seed=3, num_frames=40, size=(64, 64), num_objects=3)
    ys, xs = np.nonzero(masks[0] == 3)  # the front object is never occluded
    ye, xe = np.nonzero(masks[-1] == 3)
    assert abs(ys.mean() - ye.mean()) + abs(xs.mean() - xe.mean()) > 2  # it moved
    areas = [(masks[t] == 3).sum() for t in range(40)]
    assert max(areas) > 1.15 * min(areas)  # it changed scale
    bg = (masks[0] == 0) & (masks[-1] == 0)
    assert np.abs(frames[0][bg].astype(int) - frames[-1][bg].astype(int)).mean() > 3  # background moves


def test_occlusion_hides_deeper_objects():
    # Over many frames some deeper object loses pixels to a front one: its mask is not its full shape.
    _, masks = render_scene(seed=1, num_frames=60, size=(48, 48), num_objects=5)
    counts = np.array([[(m == k).sum() for k in range(1, 6)] for m in masks])
    assert (counts > 0).all(axis=0).any()  # objects stay in view
    assert (counts[:, :-1].min(axis=0) < counts[:, :-1].max(axis=0) * 0.85).any()


@pytest.mark.parametrize("kind", TEXTURE_KINDS)
def test_textures_are_not_flat(kind):
    u, v = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 32))
    rgb = make_texture(kind, np.random.default_rng(0))(u, v)
    assert rgb.shape == (32, 32, 3)
    assert rgb.std(axis=(0, 1)).max() > 0.05


def test_write_video_roundtrip(tmp_path):
    frames, _ = render_scene(seed=0, num_frames=10, size=(32, 48), num_objects=2)
    path = write_video(tmp_path / "v.mp4", frames, fps=25)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)])
        assert float(s.average_rate) == 25 and s.codec_context.name == "h264"
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12  # lossy but close


def test_write_video_rejects_odd_size(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))


def test_write_synthetic_videos(tmp_path):
    paths = write_synthetic_videos(tmp_path, num_videos=2, num_frames=6, size=(32, 32), seed=1)
    assert [p.name for p in paths] == ["synthetic_0000.mp4", "synthetic_0001.mp4"]
    assert all(p.stat().st_size > 0 for p in paths)
