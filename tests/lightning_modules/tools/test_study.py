"""The CPU study (``corrmae study``) end to end on tiny data, and its variant handling."""

import csv

import pytest
import yaml

import lightning_modules.tools.study as study
import lightning_modules.tools.study_variants as study_variants
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.photo_benchmark import write_photo_benchmark
from datamodules.synthetic import write_synthetic_videos

TINY_BASE = {
    "model": {
        "class_path": "SiamMAE",
        "init_args": dict(
            img_size=32,
            patch_size=8,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mask_ratio=0.75,
            decoder_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
            base_lr=0.01,
            warmup_epochs=0,
            log_images_every_n_steps=0,
        ),  # fmt: skip
    },
    "data": {
        "class_path": "FramePairDataModule",
        "init_args": dict(
            root="unused",
            gap_min=1,
            gap_max=3,
            image_size=32,
            repeated_sampling=2,
            batch_size=2,
            num_workers=0,
        ),  # fmt: skip
    },
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 100,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True, "save_top_k": 0},
            }
        ],  # fmt: skip
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "unused", "name": "unused"},
        },  # fmt: skip
    },
}


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    """Tiny videos, a 1+1 sequence benchmark and a config dir with a base and two variants."""
    videos = tmp_path / "demo" / "videos"
    write_synthetic_videos(videos / "synthetic", 2, num_frames=8, size=(64, 80), seed=1)
    write_davis_benchmark(tmp_path / "demo" / "davis", num_val=1, num_tune=1, num_frames=4, size=(32, 48))
    photos = write_photo_benchmark(tmp_path / "demo" / "photos", counts={"val": 1, "tune": 1, "hard": 1},
                                   num_frames=4, size=(32, 48))  # fmt: skip
    monkeypatch.setattr(study, "prepare_demo_data", lambda *a, **k: videos)
    monkeypatch.setattr(study, "ensure_photo_benchmark", lambda *a, **k: photos)
    configs = tmp_path / "configs"
    configs.mkdir()
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(TINY_BASE))
    (configs / "base.yaml").write_text(yaml.safe_dump({"model": {"init_args": {"mask_ratio": 0.6}}}))
    (configs / "a_plain.yaml").write_text("{}\n")
    delta = {"study": {"videos": "synthetic"}, "model": {"init_args": {"mask_ratio": 0.5}}}
    (configs / "b_generated.yaml").write_text(yaml.safe_dump(delta))
    return tmp_path, configs


def test_study_end_to_end_writes_table(tiny_study):
    tmp_path, configs = tiny_study
    out = tmp_path / "out"
    argv = ["--out", str(out), "--data", str(tmp_path / "demo"), "--configs", str(configs), "--quick",
            "--recipe", str(tmp_path / "recipe.yaml"),
            "--variants", "a_plain", "b_generated", "--max-steps", "2", "--threads", "1",
            "--num-val", "1", "--num-tune", "1"]  # fmt: skip
    study.main(argv)
    rows = list(csv.DictReader(open(out / "results.csv")))
    tests = ["synthetic", "photos", "photos-hard"]
    features = [(r["variant"], r["features"], r["benchmark"]) for r in rows]
    expected = [
        (v, f, t)
        for v, f in [
            ("a_plain", "trained"),
            ("a_plain", "random init"),
            ("pixels/8", "raw pixels"),
            ("b_generated", "trained"),
            ("b_generated", "random init"),
        ]
        for t in tests
    ]
    assert features == expected  # fmt: skip
    for r in rows:
        assert 0.0 <= float(r["val_JF"]) <= 1.0 and 0.0 <= float(r["tune_JF"]) <= 1.0
    assert [int(r["steps"]) for r in rows if r["features"] == "trained"] == [2] * 6
    by_key = {k: r for k, r in zip(features, rows)}
    # same architecture and seed: the random-init baseline is shared (and identical) across variants
    for t in tests:
        assert (
            by_key["a_plain", "random init", t]["val_JF"] == by_key["b_generated", "random init", t]["val_JF"]
        )
    # photos and photos-hard share the setting tuned on the photos' tune split; synthetic has its own
    hard, photo = by_key["a_plain", "trained", "photos-hard"], by_key["a_plain", "trained", "photos"]
    assert hard["tune_JF"] == photo["tune_JF"] and hard["val_JF"] != photo["val_JF"]
    assert by_key["a_plain", "trained", "synthetic"]["tune_JF"] != photo["tune_JF"]
    assert rows[0]["layer"] == "2" and by_key["pixels/8", "raw pixels", "photos"]["layer"] == ""
    table = (out / "results.md").read_text()
    assert "| variant | features | benchmark | steps |" in table and "b_generated" in table
    # the delta actually applied (mask 0.5) and the study-only section was stripped from the CLI config
    saved = yaml.safe_load((out / "tb" / "b_generated" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["mask_ratio"] == 0.5
    # recipe, then the study's base.yaml (mask 0.6), then the variant: a_plain runs with base.yaml's change
    plain = yaml.safe_load((out / "tb" / "a_plain" / "version_0" / "config.yaml").read_text())
    assert plain["model"]["init_args"]["mask_ratio"] == 0.6 and plain["model"]["init_args"]["embed_dim"] == 32
    assert saved["data"]["init_args"]["root"].endswith("videos/synthetic")
    assert "study" not in yaml.safe_load((out / "configs" / "b_generated.yaml").read_text())
    assert list((out / "tb" / "a_plain" / "version_0").glob("events.out.tfevents.*"))


def test_variant_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study:\n  videos: kinetics\n")
    with pytest.raises(ValueError, match="kinetics"):
        study_variants.split_variant(bad)
    with pytest.raises(ValueError, match="nope"):
        study_variants.variant_files(tmp_path, ["nope"])
    assert study_variants.variant_files(tmp_path, None) == [bad]  # base.yaml is never a variant
