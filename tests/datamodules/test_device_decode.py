"""decode_on: gpu: workers send JPEG bytes + augmentation parameters; the device decodes and augments.

Run on the CPU through the same code (torchvision's decode_jpeg with device="cpu").
"""

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import FramePairDataModule
from datamodules.readers import VideoReadError
from datamodules.synthetic import render_scene
from tests.datamodules.test_frame_pairs_lightning import Recorder


@pytest.fixture(scope="module")
def jpeg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpeg")
    for v in range(4):
        frames, _ = render_scene(v, 24, (48, 64), 2)  # textured content: a real test of the decoders
        (root / f"v{v}").mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(root / f"v{v}" / f"{i:05d}.jpg", quality=90)
    return root


def batches(root, decode_on, **kw):
    kw = {"image_size": 32, "batch_size": 4, "num_workers": 0, "gap_min": 2, "gap_max": 10,
          "color_jitter": 0.3, **kw}  # fmt: skip
    dm = FramePairDataModule(str(root), decode_on=decode_on, **kw)
    dm.setup("fit")
    return dm, list(dm.train_dataloader())


def test_worker_side_sends_bytes_and_parameters(jpeg_root):
    _, out = batches(jpeg_root, "gpu")
    b = out[0]
    assert "frames" not in b and len(b["jpeg"]) == 8 and b["jpeg"][0].dtype == torch.uint8
    assert b["jpeg"][0][:2].tolist() == [0xFF, 0xD8]  # undecoded JPEG files
    assert b["params"].shape == (4, 8) and b["gap"].shape == (4,)


def test_same_augmentation_as_the_cpu_path(jpeg_root):
    dm_cpu, cpu = batches(jpeg_root, "cpu")
    dm_gpu, gpu = batches(jpeg_root, "gpu")
    assert len(cpu) == len(gpu) == 2
    for a, b in zip(cpu, gpu):
        assert a["video"] == b["video"] and torch.equal(a["gap"], b["gap"])  # the same draws
        decoded = dm_gpu.on_before_batch_transfer(b, 0)  # no trainer: the CPU is the device
        assert decoded["frames"].dtype == torch.uint8 and decoded["frames"].shape == a["frames"].shape
        # Same crop, flip and jitter, and on the CPU both decoders are libjpeg-turbo (PIL, torchvision):
        # bit-identical. On CUDA, nvJPEG and the float resize may differ by a level or two.
        assert torch.equal(decoded["frames"], a["frames"])
        normed = [dm.on_after_batch_transfer(x, 0)["frames"] for dm, x in ((dm_cpu, a), (dm_gpu, decoded))]
        assert normed[1].dtype == torch.float32 and torch.equal(normed[0], normed[1])


def test_fit_with_decode_on_gpu_feeds_normalised_frames(jpeg_root):
    dm = FramePairDataModule(str(jpeg_root), decode_on="gpu", image_size=16, batch_size=2, num_workers=0,
                             gap_min=1, gap_max=5)  # fmt: skip
    model = Recorder()  # asserts float32 (2, 3, 16, 16) pairs reach training_step
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 4


def test_decode_on_gpu_needs_jpeg_folders(tmp_path, jpeg_root):
    with pytest.raises(ValueError, match="decode_on='gpu' decodes JPEG frame folders"):
        FramePairDataModule(str(jpeg_root), decode_on="gpu", backend="pyav")
    (tmp_path / "p").mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p" / f"{i}.png")
    dm = FramePairDataModule(str(tmp_path), decode_on="gpu", image_size=8, batch_size=2, gap_min=1,
                             gap_max=2, strict=True)  # fmt: skip
    dm.setup("fit")
    with pytest.raises(VideoReadError, match=r"0\.png: decode_on='gpu' needs JPEG frames"):
        dm.dataset[0]
