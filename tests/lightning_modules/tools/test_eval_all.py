import csv

import numpy as np
import pytest
from PIL import Image

from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.davis import voc_palette, write_palette_png
from lightning_modules.tools.eval_all import main
from tests.helpers.benchmark_fixtures import write_jhmdb_fixture, write_vip_fixture


def _static_block_davis(root, frames=4, size=(48, 64)):
    """A static textured video whose objects are full-height, 8-px-aligned stripes.

    Top-1 propagation is then exact on the grid, and bilinear upsampling + argmax reproduces straight
    boundaries exactly (it would round the corners of a block, as in DINO's protocol).
    """
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mask = np.zeros(size, np.uint8)
    mask[:, 8:24], mask[:, 40:56] = 1, 2
    for t in range(frames):
        (root / "JPEGImages/480p/still").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"JPEGImages/480p/still/{t:05d}.jpg", quality=95)
        write_palette_png(root / f"Annotations/480p/still/{t:05d}.png", mask, voc_palette())
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("still\n")


def test_perfect_prediction_gives_jf_one(tmp_path):
    _static_block_davis(tmp_path / "data" / "DAVIS")
    scores = main(
        [
            "--model",
            "pixels",
            "--patch-size",
            "8",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--benchmarks",
            "davis",
            "--short-side",
            "0",
            "--topk",
            "1",
        ]
    )
    assert scores["davis"]["JF"] == 1.0 and scores["davis"]["J"] == 1.0
    pred = np.array(Image.open(tmp_path / "out/davis/still/00002.png"))
    assert np.array_equal(
        pred, np.array(Image.open(tmp_path / "data/DAVIS/Annotations/480p/still/00002.png"))
    )


def test_eval_all_pixels_on_all_benchmarks(tmp_path):
    data = tmp_path / "data"
    write_davis_benchmark(data / "DAVIS", num_val=2, num_tune=0, num_frames=4, size=(48, 64))
    write_vip_fixture(data / "VIP", num_videos=1, num_frames=3, size=(40, 40))
    write_jhmdb_fixture(data / "JHMDB", num_videos=1, num_frames=3, size=(48, 64))
    out = tmp_path / "out"
    scores = main(["--model", "pixels", "--data", str(data), "--out", str(out), "--short-side", "0"])
    assert set(scores) == {"davis", "vip", "jhmdb"}
    assert 0 < scores["davis"]["JF"] <= 1 and 0 < scores["vip"]["mIoU"] <= 1
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert rows[0]["backbone"].startswith("raw pixels") and float(rows[0]["J&F"]) == pytest.approx(
        100 * scores["davis"]["JF"], abs=1e-3
    )
    assert "| J&F |" in (out / "results.md").read_text()
    assert (out / "davis_per_object.csv").is_file() and (out / "vip_per_class.csv").is_file()
    seq = sorted((data / "DAVIS/JPEGImages/480p").iterdir())[0].name
    assert len(list((out / "davis" / seq).glob("*.png"))) == 4


def test_missing_benchmark_is_skipped(tmp_path, caplog):
    data = tmp_path / "data"
    write_vip_fixture(data / "VIP", num_videos=1, num_frames=2, size=(32, 32))
    scores = main(
        ["--model", "pixels", "--data", str(data), "--out", str(tmp_path / "o"), "--benchmarks", "davis,vip"]
    )
    assert set(scores) == {"vip"} and "skipping davis" in caplog.text
    assert "—" in (tmp_path / "o/results.md").read_text()  # DAVIS columns empty


def test_bad_output_dir_fails_up_front(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="not writable"):
        main(["--model", "pixels", "--data", str(tmp_path), "--out", str(blocker / "out")])


def test_needs_exactly_one_model(tmp_path):
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--out", str(tmp_path / "o")])
