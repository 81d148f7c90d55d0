"""Bad input, one test per case (the auditable list).

Each case ends in a clear error naming the file and the problem, or a logged and counted skip — never a
crash mid-epoch and never a silently wrong number. Lower-level variants live next to the code they test
(tests/datamodules/test_readers.py, test_frame_pairs.py, test_davis.py,
tests/lightning_modules/tools/test_eval_all.py); these go through the entry points a user meets: a whole
training epoch of the DataModule, ``corrmae eval-all``, ``corrmae fit``.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datamodules import FramePairDataModule, FramePairDataset
from datamodules.benchmark_gen import write_davis_benchmark
from datamodules.davis import load_davis, voc_palette, write_palette_png
from datamodules.frame_pairs import VideoSource
from datamodules.readers import VideoReadError
from datamodules.transforms import PairedTransform
from lightning_modules import SiamMAE
from lightning_modules.cli import main as cli_main
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.tools.eval_all import main as eval_all
from tests.helpers.video_helpers import decode_index, write_index_folder, write_index_video
from tests.lightning_modules.tools.test_eval_all import _static_block_davis

LOGGER = "datamodules"  # the dataset logs from datamodules.pair_dataset
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ helpers
def video_root(tmp_path, n=3, frames=12):
    """``<tmp>/videos/train/cls/{0,1,2}.mp4``: small H.264 clips whose pixels encode the frame index."""
    root = tmp_path / "videos"
    for i in range(n):
        write_index_video(root / "train" / "cls" / f"{i}.mp4", frames)
    return root


def run_epoch(root, **kw) -> tuple[FramePairDataModule, list[dict]]:
    """Set up the DataModule and iterate one full training epoch (what ``fit`` does)."""
    dm = FramePairDataModule(str(root), image_size=16, batch_size=2, num_workers=0, **kw)
    dm.setup("fit")
    return dm, list(dm.train_dataloader())


def assert_counted_skip(root, bad_name, caplog, expected_skips, reason):
    """A full epoch completes without the bad video, ``skipped`` counts it, one warning names it."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dm, batches = run_epoch(root)
    videos = [v for b in batches for v in b["video"]]
    assert len(videos) == dm.dataset.pairs_per_epoch and not any(v.endswith(bad_name) for v in videos)
    assert dm.skipped >= expected_skips  # the bad video, once per epoch (replacements may hit it again)
    records = [r.getMessage() for r in caplog.records if bad_name in r.getMessage()]
    assert len(records) == 1 and reason in records[0], records  # logged once per file, with the reason


@pytest.fixture(scope="module")
def davis_src(tmp_path_factory):
    return write_davis_benchmark(
        tmp_path_factory.mktemp("bad") / "DAVIS", seed=4, num_val=2, num_tune=0, num_frames=4, size=(48, 64)
    )


@pytest.fixture
def davis(davis_src, tmp_path):
    """A private copy of the generated DAVIS benchmark under ``<tmp>/data/DAVIS``."""
    return shutil.copytree(davis_src, tmp_path / "data" / "DAVIS")


def eval_pixels(tmp_path, *extra):
    """``corrmae eval-all`` with the raw-pixel baseline on ``<tmp>/data`` (DAVIS only, native size)."""
    args = ["--model", "pixels", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    return eval_all([*args, "--benchmarks", "davis", "--short-side", "0", *extra])


def tiny_siammae_checkpoint(path, **hparam_changes):
    """A checkpoint as ``corrmae fit`` writes it (state dict + hyper-parameters + LightningCLI class path)."""
    init = yaml.safe_load((REPO / "configs/demo/siammae_tiny.yaml").read_text())["model"]["init_args"]
    model = SiamMAE(**init)
    hparams = {**model.hparams, "_class_path": "lightning_modules.siammae.SiamMAE", **hparam_changes}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    return path


# ------------------------------------------------------------------------------------------------ cases
def test_missing_root(tmp_path):
    with pytest.raises(ValueError, match=r"nope'? does not exist"):
        FramePairDataModule(str(tmp_path / "nope")).setup("fit")
    with pytest.raises(FileNotFoundError, match="DAVIS root not found: .*nope"):
        load_davis(tmp_path / "nope")
    with pytest.raises(SystemExit, match="no benchmark directory found under .*nope"):
        eval_all(["--model", "pixels", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.* is an empty directory"):
        FramePairDataModule(str(tmp_path / "empty")).setup("fit")
    (tmp_path / "empty" / "notes.txt").write_text("no videos")
    with pytest.raises(ValueError, match="no usable videos"):
        FramePairDataModule(str(tmp_path / "empty")).setup("fit")


def test_corrupt_truncated_mp4(tmp_path, caplog):
    root = video_root(tmp_path)
    good = (root / "train/cls/0.mp4").read_bytes()
    (root / "train/cls/3_cut.mp4").write_bytes(good[: len(good) // 3])  # sorted last: video 3
    assert_counted_skip(root, "3_cut.mp4", caplog, expected_skips=1, reason="3_cut.mp4")  # 2 pairs/video
    with pytest.raises(VideoReadError, match=r"3_cut\.mp4: ") as info:
        run_epoch(root, strict=True)
    assert info.value.path.endswith("3_cut.mp4")


def test_zero_byte_file(tmp_path, caplog):
    root = video_root(tmp_path)
    (root / "train/cls/3_empty.mp4").write_bytes(b"")
    assert_counted_skip(root, "3_empty.mp4", caplog, expected_skips=1, reason="empty file (0 bytes)")
    with pytest.raises(VideoReadError, match=r"3_empty\.mp4: empty file \(0 bytes\)"):
        run_epoch(root, strict=True)


def test_video_shorter_than_gap(tmp_path):
    """Documented clamp (frame_pairs docstring): gap ~ U{min(gap_min, n-1)..n-1}; ``gap`` tells the truth."""
    path = write_index_video(tmp_path / "short.mp4", 3, size=(64, 64))
    identity = PairedTransform(image_size=64, crop_scale=(1.0, 1.0), hflip=False)
    ds = FramePairDataset([VideoSource(str(path))], identity, gap_min=4, gap_max=48, repeated_sampling=8)
    item = ds[0]  # one video: its 8 pairs
    assert item["gap"].tolist() == [2] * 8  # n - 1, not the impossible 4..48
    for frames in item["frames"]:
        first, second = (decode_index(f.permute(1, 2, 0).numpy()) for f in frames)  # uint8 (3, S, S)
        assert second - first == 2  # the frames really are `gap` apart
    assert ds.skipped == 0


def test_single_frame_video(tmp_path, caplog):
    root = video_root(tmp_path)
    write_index_video(root / "train/cls/3_single.mp4", 1)
    assert_counted_skip(root, "3_single.mp4", caplog, expected_skips=1, reason="1 frame(s), a pair needs 2")
    run_epoch(root, strict=True)  # strict only raises for unreadable files: a 1-frame video is not corrupt


def test_grayscale_and_rgba_frames(tmp_path, davis):
    folder = tmp_path / "frames" / "JPEGImages" / "gray_rgba"
    folder.mkdir(parents=True)
    for i in range(4):
        mode, shape = ("L", (32, 32)) if i % 2 == 0 else ("RGBA", (32, 32, 4))
        Image.fromarray(np.full(shape, 60 * i, np.uint8), mode=mode).save(folder / f"{i:05d}.png")
    dm, batches = run_epoch(tmp_path / "frames", gap_min=1, gap_max=3)
    frames = torch.cat([b["frames"] for b in batches])
    assert frames.shape == (2, 2, 3, 16, 16) and torch.isfinite(frames).all() and dm.skipped == 0
    # DAVIS frames: a grayscale JPEG is read as RGB at the sequence size.
    seq_dir = davis / "JPEGImages/480p/synth-val-00"
    Image.open(seq_dir / "00001.jpg").convert("L").save(seq_dir / "00001.jpg")
    seq = load_davis(davis)[0]
    assert seq.read_frame(1).shape == (48, 64, 3)


def test_frames_of_different_sizes_in_one_folder(tmp_path, caplog):
    root = tmp_path / "frames"
    for name in ("a", "b"):
        write_index_folder(root / "JPEGImages" / name, 6)
    odd = write_index_folder(root / "JPEGImages" / "c_odd", 2)
    Image.open(odd / "00001.jpg").resize((48, 32)).save(odd / "00001.jpg")  # every pair of c_odd hits it
    assert_counted_skip(
        root, "c_odd/00001.jpg", caplog, expected_skips=1, reason="differs from the first frame's 64x32"
    )
    with pytest.raises(VideoReadError, match=r"c_odd/00001\.jpg: frame size 48x32 differs"):
        run_epoch(root, strict=True)


def test_davis_annotation_size_differs_from_frame(tmp_path, davis):
    bad = davis / "Annotations/480p/synth-val-01/00002.png"
    write_palette_png(bad, np.zeros((40, 64), np.uint8), voc_palette())
    with pytest.raises(
        ValueError, match=r"synth-val-01/00002\.png: annotation size \(40, 64\) != frame size"
    ):
        eval_pixels(tmp_path)
    first = davis / "Annotations/480p/synth-val-00/00000.png"
    write_palette_png(first, np.ones((40, 64), np.uint8), voc_palette())
    with pytest.raises(ValueError, match=r"synth-val-00/00000\.png: annotation size"):
        eval_pixels(tmp_path)  # frame 0 is checked when the benchmark is indexed, before any computation


def test_palette_ids_not_in_first_frame(tmp_path):
    """Ids absent from frame 0 can never be evaluated (davis2017-evaluation): warned, then background."""
    root = tmp_path / "data" / "DAVIS"
    _static_block_davis(root)  # still video, stripes 1 and 2: top-1 propagation is exact
    path = root / "Annotations/480p/still/00002.png"
    mask = np.array(Image.open(path))
    mask[:8, 28:36] = 7  # a new object in the background
    write_palette_png(path, mask, voc_palette())
    with pytest.warns(UserWarning, match=r"still/00002\.png: ids \[7\] are not in frame 0"):
        scores = eval_pixels(tmp_path, "--patch-size", "8", "--topk", "1")
    assert scores["davis"]["JF"] == 1.0  # not a silently lowered score from an object nobody could predict


def test_missing_first_frame_mask(tmp_path, davis):
    (davis / "Annotations/480p/synth-val-01/00000.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing first-frame annotation .*synth-val-01/00000\.png"):
        eval_pixels(tmp_path)


def test_sequence_in_val_txt_but_absent(tmp_path, davis):
    (davis / "ImageSets/2017/val.txt").write_text("synth-val-00\nghost\n")
    with pytest.raises(FileNotFoundError, match=r"'ghost' is listed in the split file but .*ghost has no"):
        eval_pixels(tmp_path)


def test_checkpoint_for_a_different_architecture(tmp_path):
    ckpt = tiny_siammae_checkpoint(tmp_path / "tiny.ckpt")
    out = ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"tiny\.ckpt does not match timm model ResNet: \d+ missing keys "
                                         r"\['conv1.weight'.*unexpected keys \['cls_token'"):  # fmt: skip
        eval_all(["--model", "resnet18", "--weights", str(ckpt), *out])
    shapes = r"tiny\.ckpt does not match timm model VisionTransformer: .*other shapes \(cls_token: file "
    with pytest.raises(ValueError, match=shapes + r"\(1, 1, 32\) vs model \(1, 1, 384\)"):
        eval_all(["--model", "vit_small_patch16_224", "--weights", str(ckpt), *out])
    deeper = tiny_siammae_checkpoint(tmp_path / "deeper.ckpt", depth=3)  # hparams disagree with the weights
    with pytest.raises(
        ValueError, match=r"deeper\.ckpt does not match SiamMAE: missing \['encoder\.blocks\.2"
    ):
        eval_all(["--ckpt", str(deeper), *out])
    wider = tiny_siammae_checkpoint(tmp_path / "wider.ckpt", embed_dim=48)
    with pytest.raises(ValueError, match=r"wider\.ckpt does not match SiamMAE: .*encoder\.cls_token: file"):
        eval_all(["--ckpt", str(wider), *out])
    assert isinstance(load_corrmae_checkpoint(ckpt), SiamMAE)  # the unmodified checkpoint loads


def test_non_writable_output_directory(tmp_path):
    """Running as root makes chmod ineffective, so the unwritable path is one under a regular FILE."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit, match=r"output directory .*a_file/out is not writable"):
        eval_all(["--model", "pixels", "--data", str(tmp_path), "--out", str(blocker / "out")])
    if os.geteuid() != 0:  # a read-only directory only blocks non-root users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit, match="locked/out is not writable"):
            eval_all(["--model", "pixels", "--data", str(tmp_path), "--out", str(locked / "out")])
    # Training: both fail before any data is touched (the data root below does not even exist).
    fit = ["fit", "--config", str(REPO / "configs/demo/siammae_tiny.yaml"),
           "--data.root", str(tmp_path / "no_data"), "--trainer.max_steps", "1"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"TensorBoardLogger save_dir .*a_file/runs is not writable"):
        cli_main([*fit, "--trainer.logger.init_args.save_dir", str(blocker / "runs")])
    ckpt_cb = "--trainer.callbacks+=ModelCheckpoint"
    with pytest.raises(SystemExit, match=r"checkpoint directory .*a_file/ckpts is not writable"):
        cli_main([*fit, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), ckpt_cb,
                  f"--trainer.callbacks.dirpath={blocker / 'ckpts'}"])  # fmt: skip


def test_skipped_videos_reach_the_training_logs(tmp_path):
    """The skip count is a logged metric of the run, not only a DataModule attribute."""
    import lightning as L

    root = video_root(tmp_path, n=2)
    (root / "train/cls/2_cut.mp4").write_bytes((root / "train/cls/0.mp4").read_bytes()[:500])
    dm = FramePairDataModule(str(root), image_size=32, batch_size=2, num_workers=0, gap_min=1, gap_max=4)
    model = SiamMAE(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_dim=32,
                    decoder_depth=1, decoder_num_heads=2, log_images_every_n_steps=0)  # fmt: skip
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["train/skipped_videos"].item() == dm.skipped >= 1


# ---------------------------------------------------------------- list entries, weights files, index, OUT
@pytest.mark.parametrize("entry", ["../escape", "a/b", "/tmp/abs", "..", "c:\\\\x"])
def test_split_entry_with_path_separator_or_dotdot(tmp_path, davis, entry):
    (davis / "ImageSets/2017/val.txt").write_text(f"synth-val-00\n{entry}\n")
    with pytest.raises(ValueError, match=r"val\.txt: entry .* must be a plain name \(no path separator"):
        eval_pixels(tmp_path)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "data/escape").exists()


def test_vip_and_jhmdb_list_entries_cannot_leave_out(tmp_path):
    from datamodules.jhmdb import load_jhmdb
    from datamodules.vip import load_vip
    from tests.helpers.benchmark_fixtures import write_jhmdb_fixture, write_vip_fixture

    vip = write_vip_fixture(tmp_path / "VIP", num_videos=1, num_frames=2, size=(32, 32))
    (vip / "lists/val_videos.txt").write_text("..\n")
    with pytest.raises(ValueError, match=r"val_videos\.txt: entry '\.\.' must be a plain name"):
        load_vip(vip)
    jhmdb = write_jhmdb_fixture(tmp_path / "JHMDB", num_videos=1, num_frames=2, size=(32, 32))
    listing = jhmdb / "testlist_split1.txt"
    listing.write_text("/d/joint_positions/a/v/joint_positions.mat /d/Rename_Images/../../etc\n")
    with pytest.raises(ValueError, match=r"testlist_split1\.txt: entry '\.\./\.\.' must be 2 plain names"):
        load_jhmdb(jhmdb)


@pytest.mark.parametrize(
    "content, message",
    [
        ([torch.zeros(3)], r"is not a state dict \(a list"),
        (torch.zeros(3), r"is not a state dict \(a Tensor"),
        (
            {"conv1.weight": torch.zeros(3), "note": "hello", "step": 3},
            r"2 entries are not tensors \(\['note'",
        ),
        (
            {"epoch": 3, "args": {"lr": 0.1}},
            r"unrecognised checkpoint layout; top-level keys \['args', 'epoch'\]",
        ),
    ],
)
def test_weights_file_that_is_not_a_state_dict(tmp_path, content, message):
    torch.save(content, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=r"w\.pth.*" + message):
        eval_all(["--model", "resnet18", "--weights", str(tmp_path / "w.pth"), "--data", str(tmp_path),
                  "--out", str(tmp_path / "out")])  # fmt: skip


@pytest.mark.parametrize(
    "text, message",
    [
        ("path label\na.mp4 3\n", r"lacks columns .*its header row is \['path label'\]"),  # VideoMAE style
        ("", "the file is empty"),
        ("path,num_frames,fps,width,height,fps\na.mp4,3,30,64,48,30\n", r"header repeats columns \['fps'\]"),
        ("path,num_frames,fps,width,height\na.mp4,3,30,64,48,7\n", "line 2: 6 fields, the header has 5"),
    ],
)
def test_index_csv_with_wrong_columns(tmp_path, text, message):
    from datamodules.index import read_index

    (tmp_path / "index.csv").write_text(text)
    with pytest.raises(ValueError, match=r"index\.csv.*" + message):
        read_index(tmp_path / "index.csv")


def test_out_that_is_a_file(tmp_path, davis):
    blocker = tmp_path / "out"
    blocker.write_text("results from elsewhere")
    with pytest.raises(SystemExit, match=r"--out .*out is a file, not a directory"):
        eval_pixels(tmp_path)
    from lightning_modules.tools.export import main as export

    with pytest.raises(SystemExit, match=r"export: --out .*out is a file"):
        export(["--ckpt", str(tiny_siammae_checkpoint(tmp_path / "t.ckpt")), "--out", str(blocker)])
    assert blocker.read_text() == "results from elsewhere"
