"""SiamMAE system: masking, loss, reproducibility, training, TensorBoard images, CLI fast_dev_run."""

import lightning as L
import pytest
import timm
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from lightning_modules import SiamMAE
from lightning_modules.cli import main
from lightning_modules.components.losses import masked_mse, normalize_patches
from lightning_modules.components.patches import patchify
from lightning_modules.components.visualize import attention_grid, reconstruction_grid
from tests.helpers.tiny_models import tiny_siammae_args

TINY = tiny_siammae_args()


def tiny(**kw):
    return SiamMAE(**{**TINY, **kw})


def test_asymmetric_masking_frame1_whole_frame2_exact_count():
    m = tiny(mask_ratio=0.75)
    f = torch.randn(3, 2, 3, 32, 32)
    latent1, latent2, _, _, mask, grid = m.forward_encoder(f[:, 0], f[:, 1])
    assert grid == (4, 4) and latent1.shape == (3, 17, 32) and latent2.shape == (3, 1 + 4, 32)
    assert torch.equal(mask.sum(1), torch.full((3,), 12.0))


def test_symmetric_and_joint_encoder_shapes():
    f = torch.randn(2, 2, 3, 32, 32)
    latent1, latent2, *_ = tiny(mask_ratio=0.5, symmetric_masking=True).forward_encoder(f[:, 0], f[:, 1])
    assert latent1.shape == latent2.shape == (2, 9, 32)
    m = tiny(mask_ratio=0.75, encoder_mode="joint")
    latent1, latent2, *_ = m.forward_encoder(f[:, 0], f[:, 1])
    assert latent1.shape == (2, 17, 32) and latent2.shape == (2, 5, 32)
    assert torch.equal(latent1[:, 0], latent2[:, 0])  # one shared [CLS] in the joint pass


@pytest.mark.parametrize("enc", ["siamese", "joint"])
@pytest.mark.parametrize("dec", ["cross_self", "cross", "joint"])
def test_every_variant_runs_and_backprops(enc, dec):
    m = tiny(encoder_mode=enc, decoder_mode=dec)
    loss, pred, mask = m(torch.randn(2, 2, 3, 32, 32))
    assert pred.shape == (2, 16, 8 * 8 * 3) and torch.isfinite(loss)
    loss.backward()
    assert m.encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_forward_loss_counts_masked_frame2_patches_only():
    m = tiny()
    f2 = torch.randn(2, 3, 32, 32)
    pred = torch.randn(2, 16, 192)
    mask = (torch.arange(16) % 3 == 0).float().expand(2, 16)
    loss = m.forward_loss(f2, pred, mask)
    pred2 = pred.clone()
    pred2[mask == 0] = 0.0
    assert torch.allclose(m.forward_loss(f2, pred2, mask), loss)
    target = normalize_patches(patchify(f2, 8))
    assert torch.isclose(m.forward_loss(f2, target, mask), torch.tensor(0.0), atol=1e-6)
    raw = tiny(norm_pix_loss=False).forward_loss(f2, pred, mask)
    assert torch.isclose(raw, masked_mse(pred, patchify(f2, 8), mask, norm_pix=False))


def test_frame1_informs_the_prediction():
    m = tiny().eval()
    f = torch.randn(1, 2, 3, 32, 32)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    _, pred, mask = m(f, g())
    f_other = f.clone()
    f_other[:, 0] = torch.randn(1, 3, 32, 32)
    _, pred_other, mask_other = m(f_other, g())
    assert torch.equal(mask, mask_other) and not torch.allclose(pred, pred_other)


def test_grid_ratio_validated():
    with pytest.raises(ValueError, match="grid"):
        tiny(mask_pattern="grid", mask_ratio=0.95)


def test_mask_generator_is_a_function_of_seed_step_rank():
    m = tiny(mask_seed=5)
    x = torch.randn(2, 16, 4)
    draw = lambda gen: m.random_masking(x, 0.75, (4, 4), gen)[1]  # noqa: E731
    a, b = draw(m.mask_generator(0, torch.device("cpu"))), draw(m.mask_generator(0, torch.device("cpu")))
    c = draw(tiny(mask_seed=6).mask_generator(0, torch.device("cpu")))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_extract_features_contract_and_timm_loading():
    m = tiny().eval()
    assert m.feature_stride == 8
    assert m.extract_features(torch.randn(2, 3, 48, 88)).shape == (2, 32, 6, 11)
    src = timm.create_model(
        "vit_small_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
    )
    m.load_encoder_state_dict(src.state_dict())  # head.* dropped, timm names
    assert torch.equal(m.encoder.blocks[1].mlp.fc1.weight, src.blocks[1].mlp.fc1.weight)
    prefixed = {"state_dict": {f"encoder.{k}": v for k, v in m.encoder.state_dict().items()}}
    tiny().load_encoder_state_dict(prefixed)


def test_visualisation_images():
    f1, f2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    mask = (torch.rand(2, 16) < 0.75).float()
    perfect = normalize_patches(patchify(f2, 8))  # a perfect normalised-pixel prediction
    img = reconstruction_grid(f1, f2, perfect, mask, 8, norm_pix=True)
    assert img.shape == (3, 2 + 2 * 34, 2 + 4 * 34) and img.min() >= 0 and img.max() <= 1
    recon, truth = img[:, 2:34, 2 + 2 * 34 : 2 + 2 * 34 + 32], img[:, 2:34, 2 + 3 * 34 : 2 + 3 * 34 + 32]
    assert torch.allclose(recon, truth, atol=1e-4)  # de-normalised with target stats = frame 2
    att = attention_grid(f1, torch.rand(2, 3, 4, 4))
    assert att.shape == (3, 2 + 2 * 34, 2 + 4 * 34) and att.min() >= 0 and att.max() <= 1


class Losses(L.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


def test_training_decreases_loss_and_logs_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    f1 = torch.nn.functional.interpolate(torch.randn(4, 3, 4, 4), size=32, mode="bilinear")
    batch = {"frames": torch.stack([f1, f1.roll(8, dims=-1)], dim=1)}  # frame 2 = frame 1 shifted one patch
    # lr = base_lr * 1 / 256 (no datamodule: per-device batch counts as 1) = 2e-3, constant (min_lr_ratio=1)
    m = tiny(mask_ratio=0.5, norm_pix_loss=False, base_lr=0.512, warmup_epochs=0, min_lr_ratio=1.0)
    m.hparams.log_images_every_n_steps = 10
    losses = Losses()
    trainer = L.Trainer(
        max_steps=20, accelerator="cpu", logger=TensorBoardLogger(tmp_path), callbacks=[losses],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(m, DataLoader([batch] * 20, batch_size=None))
    v = losses.values
    assert len(v) == 20 and sum(v[-5:]) / 5 < 0.85 * sum(v[:5]) / 5, v
    acc = EventAccumulator(str(tmp_path / "lightning_logs" / "version_0")).Reload()
    assert {"train/reconstruction", "train/cls_attention"} <= set(acc.Tags()["images"])
    assert "train/loss_step" in acc.Tags()["scalars"] and "train/lr" in acc.Tags()["scalars"]


def test_fast_dev_run_through_cli(tmp_path, repo_root):
    from datamodules.synthetic import write_synthetic_videos

    write_synthetic_videos(tmp_path / "videos", num_videos=3, num_frames=12, size=(48, 64), seed=0)
    main([
        "fit", "--config", str(repo_root / "configs/demo/siammae_tiny.yaml"),
        "--data.root", str(tmp_path / "videos"), "--trainer.fast_dev_run=2", "--trainer.accelerator=cpu",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])  # fmt: skip


def test_shared_arguments_are_hparams_and_survive_the_checkpoint_loader(tmp_path):
    from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint

    m = tiny(weight_decay=0.1, mask_seed=7, base_lr=1e-3, feature_layer=1, nonfinite="raise")
    assert (m.hparams.weight_decay, m.hparams.mask_seed, m.hparams.warmup_epochs) == (0.1, 7, 40.0)
    assert m.hparams.max_nonfinite_skips == 10 and m.hparams.embed_dim == 32
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, tmp_path / "m.ckpt")
    loaded = load_corrmae_checkpoint(tmp_path / "m.ckpt", class_path="lightning_modules.SiamMAE")
    assert dict(loaded.hparams) == dict(m.hparams) and loaded.feature_layer == 1


class NoBatchSize(L.LightningDataModule):
    def train_dataloader(self):
        f = torch.randn(2, 2, 3, 32, 32)
        return DataLoader([{"frames": f}] * 2, batch_size=None)


def test_lr_scaling_needs_the_data_modules_batch_size():
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match="NoBatchSize has no positive integer batch_size"):
        trainer.fit(tiny(log_images_every_n_steps=0), datamodule=NoBatchSize())
