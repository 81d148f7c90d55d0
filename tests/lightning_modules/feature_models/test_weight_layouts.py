"""Published checkpoint layouts: synthetic state dicts in each layout give the same encoder weights."""

import pytest
import timm
import torch

from lightning_modules.feature_models.weight_layouts import detect_layout, encoder_state_dict


@pytest.fixture(scope="module")
def vit_state():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dino_plain_backbone(vit_state):
    state, layout = encoder_state_dict(dict(vit_state))
    assert layout == "plain" and _same(state, vit_state)


def test_dino_full_checkpoint_takes_the_teacher_and_strips_prefixes(vit_state):
    full = {
        "student": {f"module.backbone.{k}": v + 1 for k, v in vit_state.items()},
        "teacher": {
            **{f"backbone.{k}": v for k, v in vit_state.items()},
            "head.mlp.0.weight": torch.zeros(2),
        },
        "optimizer": {"state": {}},
        "epoch": 100,
        "args": None,
    }
    state, layout = encoder_state_dict(full)
    assert layout == "dino-full" and _same(state, vit_state)
    student, key = encoder_state_dict(full, checkpoint_key="student")
    assert key == "key:student" and torch.equal(student["cls_token"], vit_state["cls_token"] + 1)


def test_mae_and_cropmae_drop_the_decoder(vit_state):
    decoder = {"mask_token": torch.zeros(1, 1, 8), "decoder_embed.weight": torch.zeros(8, 192)}
    decoder |= {"decoder_pos_embed": torch.zeros(1, 197, 8), "decoder_pred.weight": torch.zeros(768, 8)}
    mae = {"model": {**vit_state, **decoder}, "optimizer": {}, "epoch": 1, "scaler": {}, "args": None}
    state, layout = encoder_state_dict(mae)
    assert layout == "mae" and _same(state, vit_state)
    cross = {"decoder_blocks.0.multihead_attn.in_proj_weight": torch.zeros(24, 8)}
    crop = {"model": {**vit_state, **decoder, **cross}, "optimizer": {}, "epoch": 1, "args": None}
    state, layout = encoder_state_dict(crop)
    assert layout == "cropmae" and _same(state, vit_state)


def test_corrmae_checkpoint_and_module_state(vit_state):
    weights = {**{f"encoder.{k}": v for k, v in vit_state.items()}, "decoder.pred.weight": torch.zeros(1)}
    ckpt = {"state_dict": weights, "hyper_parameters": {"encoder_name": "vit_tiny_patch16_224"}, "epoch": 3}
    state, layout = encoder_state_dict(ckpt)
    assert layout == "corrmae" and _same(state, vit_state)
    state, layout = encoder_state_dict(dict(ckpt["state_dict"]))
    assert layout == "corrmae-module" and _same(state, vit_state)


def test_ddp_wrapped_state_dict(vit_state):
    state, layout = encoder_state_dict({"state_dict": {f"module.{k}": v for k, v in vit_state.items()}})
    assert layout == "state_dict" and _same(state, vit_state)


def test_unknown_layouts_and_keys_are_named():
    with pytest.raises(ValueError, match="unrecognised checkpoint layout.*epoch"):
        detect_layout({"epoch": 3, "net": {"w": 1}})
    with pytest.raises(ValueError, match="checkpoint_key 'teacher' not in"):
        encoder_state_dict({"model": {"w": torch.zeros(1)}}, checkpoint_key="teacher")


def test_timm_features_load_a_dino_full_checkpoint(tmp_path, vit_state):
    from lightning_modules import load_feature_model

    full = {"teacher": {f"backbone.{k}": v for k, v in vit_state.items()}, "student": {}, "epoch": 1}
    torch.save(full, tmp_path / "checkpoint.pth")
    net = load_feature_model(model="vit_tiny_patch16_224", weights=str(tmp_path / "checkpoint.pth"))
    assert torch.equal(net.model.pos_embed, vit_state["pos_embed"])
    torch.save({"teacher": {}, "student": full["teacher"], "epoch": 1}, tmp_path / "student.pth")
    net = load_feature_model(
        model="vit_tiny_patch16_224", weights=str(tmp_path / "student.pth"), checkpoint_key="student"
    )
    assert torch.equal(net.model.cls_token, vit_state["cls_token"])
