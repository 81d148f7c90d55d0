"""The photo benchmark generator: ids and splits, occlusion order, exact masks, determinism."""

import re
from dataclasses import replace

import numpy as np
import pytest

from datamodules.davis import load_davis
from datamodules.photo_benchmark import (
    TUNE_PHOTOS,
    VAL_PHOTOS,
    ensure_photo_benchmark,
    load_photos,
    main,
    write_photo_benchmark,
)
from datamodules.photo_scene import draw_scene, render
from tests.helpers.tree_digest import tree_digest

SMALL = dict(num_frames=4, size=(48, 80))


def _flat_photos(names):
    """Photos of one distinct flat colour each (exactly representable after the 255 scaling)."""
    colours = {n: np.array([(37 * i + 20) % 256, (91 * i + 60) % 256, (53 * i + 140) % 256]) / 255.0
               for i, n in enumerate(names)}  # fmt: skip
    return {n: np.broadcast_to(c, (120, 200, 3)).copy() for n, c in colours.items()}, colours


def test_ids_splits_and_disjoint_photos(tmp_path):
    root = tmp_path / "photos"
    main(["--out", str(root), "--num-val", "3", "--num-tune", "2", "--num-hard", "2", "--frames", "5",
          "--size", "48", "80"])  # fmt: skip
    allowed = {"val": VAL_PHOTOS, "tune": TUNE_PHOTOS, "hard": VAL_PHOTOS}
    assert not set(VAL_PHOTOS) & set(TUNE_PHOTOS)
    for split, count in (("val", 3), ("tune", 2), ("hard", 2)):
        seqs = load_davis(root, split)
        assert len(seqs) == count
        for i, s in enumerate(seqs):
            m = re.fullmatch(rf"photo-{split}-(\d\d)-(\w+)", s.name)
            assert m and int(m.group(1)) == i and m.group(2) in allowed[split]
            masks = s.read_masks()
            assert masks.shape == (5, 48, 80) and 1 <= s.num_objects <= 3
            assert set(np.unique(masks[0])) == set(
                range(s.num_objects + 1)
            )  # every object visible in frame 0
            assert set(np.unique(masks)) <= set(range(s.num_objects + 1))  # the look-alike is never labelled
            assert (masks[0] != masks[-1]).mean() > 0.005  # objects move
            frames = np.stack([s.read_frame(t) for t in range(len(s))]).astype(float)
            assert np.abs(frames[0] - frames[-1]).mean() > 5  # and so does the camera


def test_deterministic_from_seed(tmp_path):
    counts = {"val": 1, "tune": 1, "hard": 1}
    a = write_photo_benchmark(tmp_path / "a", seed=3, counts=counts, **SMALL)
    b = write_photo_benchmark(tmp_path / "b", seed=3, counts=counts, **SMALL)
    c = write_photo_benchmark(tmp_path / "c", seed=4, counts=counts, **SMALL)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)


def test_occlusion_order_front_most_labelled_object_wins():
    photos = load_photos(VAL_PHOTOS, short_side=110)
    overlaps, shuffled = 0, False
    for seed in range(6):
        spec = draw_scene(np.random.default_rng(seed), photos, "coffee", 3, 10, (48, 64), hard=True)
        labels = [b.label for b in spec.blobs]
        assert sorted(labels) == [0, 1, 2, 3]  # three objects and one unlabelled look-alike
        shuffled |= labels != sorted(labels)  # depth order is drawn, not the id order
        _, masks, layers = render(spec, photos, return_layers=True)
        expected = np.zeros_like(masks)
        for j, blob in enumerate(spec.blobs):  # deepest first: each layer overwrites what is behind it
            expected[layers[:, j]] = blob.label
        assert np.array_equal(masks, expected)
        overlaps += int((layers.sum(1) >= 2).sum())
    assert overlaps > 0 and shuffled  # the check above really exercised occlusion


def test_masks_are_exact_where_the_texture_is_shown():
    names = ("bg", "a", "b", "c")
    photos, colours = _flat_photos(names)
    for hard in (False, True):
        spec = draw_scene(np.random.default_rng(1), photos, "bg", 3, 6, (40, 64), hard=hard)
        if hard:
            spec = replace(spec, lighting=())  # flat colours stay flat
        frames, masks, layers = render(spec, photos, return_layers=True)
        palette = {0: colours["bg"], **{b.label: colours[b.photo] for b in spec.blobs if b.label}}
        front = np.full(masks.shape, -1)
        for j in range(len(spec.blobs)):
            front[layers[:, j]] = j
        for t in range(len(frames)):
            for label, colour in palette.items():
                shown = (masks[t] == label) & ~((front[t] >= 0) & (masks[t] == 0))
                assert np.array_equal(frames[t][shown], np.tile(np.round(colour * 255), (shown.sum(), 1)))
        if hard:  # the look-alike wears its twin's colour but is background in the mask
            twin = next(j for j, b in enumerate(spec.blobs) if b.label == 0)
            visible = front == twin
            assert visible.any() and (masks[visible] == 0).all()
            twin_colour = colours[spec.blobs[twin].photo]
            assert np.array_equal(frames[visible], np.tile(np.round(twin_colour * 255), (visible.sum(), 1)))


def test_hard_scenes_drift_in_lighting_and_move_faster():
    photos = load_photos(VAL_PHOTOS, short_side=110)
    easy = draw_scene(np.random.default_rng(0), photos, "astronaut", 2, 8, (48, 64))
    hard = draw_scene(np.random.default_rng(0), photos, "astronaut", 2, 8, (48, 64), hard=True)
    assert not easy.lighting and len(hard.lighting) == 5

    def speed(spec):
        return np.mean(
            [abs(b.cx.amp * b.cx.omega) + abs(b.cy.amp * b.cy.omega) for b in spec.blobs if b.label]
        )

    assert speed(hard) > speed(easy)


def test_ensure_keeps_a_matching_benchmark_and_rewrites_another(tmp_path):
    root = tmp_path / "photos"
    counts = {"val": 1, "tune": 1}
    ensure_photo_benchmark(root, counts=counts, **SMALL)
    marker = root / "keep.txt"
    marker.write_text("x")
    ensure_photo_benchmark(root, counts=counts, **SMALL)
    assert marker.is_file()
    ensure_photo_benchmark(root, counts={"val": 2, "tune": 1}, **SMALL)
    assert not marker.is_file() and len(load_davis(root, "val")) == 2


def test_bad_requests_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown photo benchmark splits"):
        write_photo_benchmark(tmp_path / "x", counts={"test": 1}, **SMALL)
    with pytest.raises(ValueError, match="lena"):
        load_photos(("lena",), 64)
    photos, _ = _flat_photos(("bg",))
    with pytest.raises(ValueError, match="another photo"):
        draw_scene(np.random.default_rng(0), photos, "bg", 1, 4, (32, 32))
