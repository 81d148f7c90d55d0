"""VideoMAC system: losses, EMA timing, target exclusion (optimiser, DDP), timm weights, CLI run."""

import lightning as L
import pytest
import timm
import torch
from torch.utils.data import DataLoader

import lightning_modules.videomac as videomac_mod
from lightning_modules import VideoMAC
from lightning_modules.cli import main


def tiny(**kw) -> VideoMAC:
    args = dict(
        encoder_name="resnet18", decoder_dim=8, warmup_epochs=0, log_images_every_n_steps=0, base_lr=0.01
    )
    return VideoMAC(**{**args, **kw})


def test_loss_definitions_hand_computed():
    model = tiny(norm_pix_loss=False, consistency_weight=2.0)
    f_t, f_t1 = torch.full((1, 3, 32, 64), 2.0), torch.full((1, 3, 32, 64), 3.0)
    pred_o = torch.zeros(1, 2, 3072, requires_grad=True)
    pred_t = torch.full((1, 2, 3072), 0.5)
    mask = torch.tensor([[1.0, 0.0]])  # only patch 0 counts
    losses = model.forward_loss(f_t, f_t1, pred_o, pred_t, mask, mask)
    assert losses["loss_online"].item() == pytest.approx(4.0)  # (0 - 2)^2
    assert losses["loss_target"].item() == pytest.approx(6.25)  # (0.5 - 3)^2
    assert losses["loss_consistency"].item() == pytest.approx(0.25)  # (0 - 0.5)^2
    assert losses["loss"].item() == pytest.approx(4.0 + 6.25 + 2.0 * 0.25)
    losses["loss"].backward()
    # gradient of L_o + gamma L_c on the masked patch only: 2(p - 2)/P + 2 * 2(p - 0.5)/P at p = 0
    torch.testing.assert_close(pred_o.grad[0, 0], torch.full((3072,), (-4.0 - 2.0) / 3072))
    assert (pred_o.grad[0, 1] == 0).all()


def test_symmetric_and_asymmetric_masks():
    g = torch.Generator().manual_seed(0)
    m_o, m_t = tiny().random_masking(4, (7, 7), g, "cpu")
    assert torch.equal(m_o, m_t) and int(m_o[0].sum()) == 49 - 12  # 12 of 49 visible at ratio 0.75
    m_o, m_t = tiny(symmetric_masking=False).random_masking(4, (7, 7), g, "cpu")
    assert not torch.equal(m_o, m_t) and torch.equal(m_o.sum((1, 2, 3)), m_t.sum((1, 2, 3)))


def test_target_frozen_ignored_by_ddp_and_encoder_loads_into_timm():
    model = tiny()
    assert all(not p.requires_grad for p in model.target.parameters())
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    assert ignored and all(n.startswith("target.") for n in ignored)
    assert {f"target.{n}" for n in model.target.state_dict()} <= ignored
    dense = timm.create_model("resnet18", num_classes=0)
    dense.load_state_dict(model.online.encoder.encoder_state_dict(), strict=True)
    # from a Lightning checkpoint's state dict: strip the prefix
    prefix = "online.encoder.model."
    state = {k[len(prefix) :]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    dense.load_state_dict(state, strict=True)
    assert any(k.startswith("target.") for k in model.state_dict())  # checkpointed


@pytest.mark.parametrize(("stage", "stride", "expected"), [(4, 32, 32), (4, 16, 16), (4, 8, 8), (3, 32, 16)])
def test_extract_features_strides(stage, stride, expected):
    model = tiny(feature_stage=stage, feature_stride=stride).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = model.extract_features(x)
    assert model.feature_stride == expected
    assert f.shape[-2:] == (64 // expected, 64 // expected)
    assert not any(v.is_meta for v in model.state_dict().values())  # the dilated encoder holds no weights
    if stride < 32 and stage == 4:  # the dilated view runs the very same weights as timm's dilated model
        dense = timm.create_model("resnet18", num_classes=0, output_stride=stride).eval()
        dense.load_state_dict(model.online.encoder.encoder_state_dict())
        torch.testing.assert_close(f, dense.forward_features(x))


def pair_batches(n: int, size: int = 64):
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 2, 3, size, size, generator=g)
    batch = {"frames": frames, "gap": torch.ones(2, dtype=torch.int64), "index": torch.arange(2)}
    return [batch] * n


def test_ema_after_each_real_optimizer_step_and_target_not_in_optimizer(tmp_path, monkeypatch):
    calls = []
    real = videomac_mod.update_ema
    monkeypatch.setattr(
        videomac_mod, "update_ema", lambda t, o, m, buffers: calls.append(m) or real(t, o, m, buffers)
    )
    model = tiny(ema_momentum=0.9)
    before = [p.clone() for p in model.target.parameters()]
    trainer = L.Trainer(
        max_steps=2, accumulate_grad_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DataLoader(pair_batches(4), batch_size=None))
    assert calls == [0.9, 0.9]  # 4 micro-batches, 2 optimiser steps
    in_opt = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.online.parameters()}
    assert not in_opt & {id(p) for p in model.target.parameters()}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.target.parameters(), strict=True))


def test_online_loss_decreases_on_a_repeated_batch():
    torch.manual_seed(0)
    model = tiny(decoder_dim=16)
    opt = torch.optim.AdamW(model.trainable_module().parameters(), lr=1e-2, betas=(0.9, 0.95))
    batch = pair_batches(1)[0]["frames"]
    history = []
    for _ in range(20):
        losses, *_ = model(batch, torch.Generator().manual_seed(1))
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        videomac_mod.update_ema(model.target, model.online, 0.9, buffers="keep")
        history.append(losses["loss_online"].item())
    assert history[-1] < 0.9 * history[0], history
    assert sum(history[-5:]) < sum(history[:5]), history


def test_minkowski_backend_raises_clear_error():
    with pytest.raises(ValueError, match="MinkowskiEngine"):
        tiny(sparse_backend="minkowski")


def test_fast_dev_run_through_cli(tmp_path, monkeypatch):
    from datamodules.synthetic import write_synthetic_videos

    write_synthetic_videos(tmp_path / "videos", 8, 6, (64, 80), 0)
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "--config", str(CONFIG), "--data.root", str(tmp_path / "videos"),
         "--trainer.fast_dev_run=2", "--trainer.accelerator=cpu"]
    )  # fmt: skip


CONFIG = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs" / "demo" / "videomac_tiny.yaml"


@pytest.mark.parametrize("stride", [16, 8])
def test_official_resnet_features_dilate_on_the_same_weights(stride):
    from lightning_modules.components.official_resnet import VideoMACResNet

    model = tiny(encoder_variant="official", init="official", feature_stride=stride).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = model.extract_features(x)
        dense = VideoMACResNet("resnet18", output_stride=stride).eval()
        dense.load_state_dict(model.online.encoder.state_dict(), strict=True)
        torch.testing.assert_close(f, dense(x))
    assert model.feature_stride == stride and f.shape == (1, 512, 64 // stride, 64 // stride)
    with pytest.raises(ValueError, match="natural strides"):
        tiny(encoder_name="convnextv2_atto", encoder_variant="official", feature_stride=stride)


def test_official_variant_trains_and_exports_in_the_official_layout(tmp_path):
    """A corrmae-trained official encoder is a converted official checkpoint: eval-all loads it."""
    from lightning_modules.feature_models.loader import build_feature_extractor

    torch.manual_seed(0)
    model = tiny(encoder_variant="official", init="official")
    losses, *_ = model(pair_batches(1)[0]["frames"], torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.online.encoder.parameters())
    path = str(tmp_path / "mac-r18.pth")
    torch.save(model.online.encoder.state_dict(), path)  # the official encoders' keys are the converted ones
    feats = build_feature_extractor(model="videomac_resnet18", weights=path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(feats.extract_features(x), model.online.encoder(x))
    assert feats.feature_stride == 32
    torch.save({"state_dict": model.state_dict()}, tmp_path / "corrmae.pth")  # a corrmae state dict
    from_ckpt = build_feature_extractor(model="videomac_resnet18", weights=str(tmp_path / "corrmae.pth"))
    torch.testing.assert_close(from_ckpt.encoder.state_dict(), model.online.encoder.state_dict())
    stage3 = build_feature_extractor(model="videomac_resnet18", weights=path, stage=3)
    assert stage3.feature_stride == 16 and stage3.extract_features(x).shape == (1, 256, 4, 6)
    with pytest.raises(ValueError, match=r"mac-r18\.pth.*resnet50.*missing keys"):
        build_feature_extractor(model="videomac_resnet50", weights=path)
    with pytest.raises(ValueError, match="--weights"):
        build_feature_extractor(model="videomac_resnet18")
    with pytest.raises(ValueError, match="videomac_resnet18"):
        build_feature_extractor(model="videomac_r18", weights=path)


def test_compile_model_compiles_the_online_network_in_place():
    model = tiny(compile_model=True)
    keys = list(model.state_dict())
    model.configure_model()  # what the Trainer calls
    assert list(model.state_dict()) == keys  # checkpoints stay interchangeable
    assert model.online.encoder._compiled_call_impl is not None
    assert model.online.decoder._compiled_call_impl is not None
    assert model.target.encoder._compiled_call_impl is None  # the EMA target runs eagerly
