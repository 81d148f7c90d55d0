"""Every protocol rule on small hand-built cases (the oracle comparison: README 'Evaluation protocols')."""

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from callbacks.evaluation.cv2_resize import resize_linear_uint8
from callbacks.evaluation.davis import eval_size
from callbacks.evaluation.features import pos_embed_rule, preprocess_frames
from callbacks.evaluation.flags import add_protocol_arguments, overrides_from_args
from callbacks.evaluation.labels import decode_labels, first_frame_labels, resize_id_map
from callbacks.evaluation.protocols import PROTOCOL_NAMES, as_protocol, describe, get_protocol
from callbacks.evaluation.settings import override
from lightning_modules.components.pos_embed import dino_interpolate_pos_embed, resample_pos_embed


# ------------------------------------------------------------------------------------------ frames
def test_width_rules():
    assert eval_size(480, 854, 480, 8, "dino64") == (480, 832)  # DINO floors the long side to 64
    assert eval_size(480, 910, 480, 8, "dino64") == (480, 896)
    assert eval_size(480, 1152, 480, 16, "dino64") == (480, 1152)
    assert eval_size(854, 480, 480, 16, "dino64") == (832, 480)  # portrait: the height is floored
    assert eval_size(480, 854, 480, 8, "stride") == (480, 856)  # legacy: nearest multiple of the stride
    assert eval_size(480, 854, 480, 16, "stride") == (480, 848)
    assert get_protocol("dino", "davis").width_rule == get_protocol("siammae", "davis").width_rule == "dino64"
    assert get_protocol("legacy", "davis").width_rule == "stride"


def test_cv2_uint8_resize_hand_computed():
    # 4 -> 3 columns: taps (0, 1) w (1707, 341), (1, 2) w (1024, 1024), (2, 3) w (341, 1707); fixed-point sums
    row = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    assert resize_linear_uint8(row, (1, 3)).tolist() == [[17, 150, 246]]
    # 2 -> 4 columns: 255 * 512 / 2048 = 63.75 in float; 8-bit: ((130560 >> 4) * 2048 >> 16 + 2) >> 2 = 64
    up = resize_linear_uint8(np.array([[0, 255]], dtype=np.uint8), (1, 4))
    assert up.tolist() == [[0, 64, 191, 255]]
    same = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(resize_linear_uint8(same, (2, 2)), same)
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_uint8(same.astype(np.float32), (1, 1))


def test_frame_resize_rule_and_normalisation_constants():
    frame = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)[None]  # (1, 1, 2, 3)
    dino = get_protocol("dino", "davis")
    x = preprocess_frames(frame, (1, 4), dino)  # (1, 3, 1, 4)
    raw = torch.tensor([0, 64, 191, 255]) / 255.0
    torch.testing.assert_close(x[0, 0, 0], (raw - 0.485) / 0.228)  # DINO's R std 0.228
    torch.testing.assert_close(x[0, 1, 0], (raw - 0.456) / 0.224)
    crw = get_protocol("crw", "vip")
    y = preprocess_frames(frame, (1, 4), crw)
    torch.testing.assert_close(y[0, 0, 0], (torch.tensor([0, 0.25, 0.75, 1.0]) - 0.485) / 0.229)  # float path
    assert get_protocol("siammae", "davis").std[0] == 0.228 and get_protocol("siammae", "vip").std[0] == 0.229
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frame.astype(np.float32), (1, 4), dino)


# ------------------------------------------------------------------------------------------ labels
def _ids(h=30, w=854):
    return (np.arange(w)[None, :].repeat(h, 0) % 7).astype(np.uint8)  # stripes of width 1 (ids 0..6)


def test_one_step_label_downsampling_is_pil_nearest_from_the_original_size():
    ids = _ids(48, 854)
    one = first_frame_labels(ids, (48, 832), 16, 7, get_protocol("dino", "davis")).argmax(0)  # grid 3 x 52
    pil = np.array(Image.fromarray(ids).resize((52, 3), Image.NEAREST))
    assert np.array_equal(one.numpy(), pil)
    two = first_frame_labels(ids, (48, 832), 16, 7, get_protocol("legacy", "davis")).argmax(0)
    assert not torch.equal(one, two)  # the two-step path picks other source columns


def test_bilinear_crw_labels_are_soft():
    ids = np.zeros((16, 16), np.uint8)
    ids[:, 8:] = 1
    soft = first_frame_labels(ids, (16, 16), 8, 2, get_protocol("crw", "davis"))  # 2 x 2 grid
    assert soft.shape == (2, 2, 2)
    torch.testing.assert_close(soft.sum(0), torch.ones(2, 2))
    hard = first_frame_labels(ids, (16, 16), 8, 2, get_protocol("dino", "davis"))
    assert set(hard.unique().tolist()) == {0.0, 1.0}


def test_vip_nearest_rule_pil_vs_torch():
    ids = (torch.arange(560).repeat(560, 1) % 20).T.contiguous()  # (560, 560), ids vary along rows
    pil = resize_id_map(ids, (1080, 1920), get_protocol("siammae", "vip"))
    ref = np.array(Image.fromarray(ids.numpy().astype(np.uint8)).resize((1920, 1080), Image.NEAREST))
    assert np.array_equal(pil.numpy(), ref)
    legacy = resize_id_map(ids, (1080, 1920), get_protocol("legacy", "vip"))
    assert 0 < int((legacy != pil).any(1).sum()) <= 18  # torch nearest-exact picks other rows for 560 -> 1080


# ------------------------------------------------------------------------------------------ decoding
def test_crw_decoder_is_one_resize_and_dino_decoder_min_max():
    soft = torch.tensor([[[1.0, 0.0]], [[0.0, 0.5]]])  # (K=2, 1, 2)
    # x4 bilinear: channel 0 = [1, 1, .875, .625, .375, .125, 0, 0], channel 1 = half of the mirror image
    crw = decode_labels(soft, 4, (4, 8), (4, 8), get_protocol("crw", "davis"))
    assert crw[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]  # no min-max: .375 beats .3125
    dino = decode_labels(soft, 4, (4, 8), (4, 8), get_protocol("dino", "davis"))
    assert dino[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # min-max lifts channel 1 to [0, 1] first
    # one resize straight to 10 columns (CRW) vs x4 then nearest 8 -> 10 (DINO, without min-max)
    crw10 = decode_labels(soft, 4, (4, 10), (4, 10), get_protocol("crw", "davis"))[0]
    up = F.interpolate(soft[None], size=(4, 10), mode="bilinear", align_corners=False)[0].argmax(0)[0]
    assert torch.equal(crw10, up)


# ---------------------------------------------------------------------------------- position embeddings
def test_dino_pos_embed_uses_the_scale_factor():
    side, grid = 14, (30, 52)
    ramp = torch.arange(side, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"), -1).reshape(1, side * side, 2)  # (r, c)
    table = torch.cat([torch.full((1, 1, 2), 7.0), table], 1)  # [CLS] row first
    out = dino_interpolate_pos_embed(table, grid)
    assert out.shape == (1, 1 + 30 * 52, 2) and torch.equal(out[:, 0], table[:, 0])
    # row i samples source row (i + 0.5) * 14 / 30.1 - 0.5, i.e. F.interpolate driven by the scale factor
    grid_in = table[:, 1:].reshape(1, side, side, 2).permute(0, 3, 1, 2)
    expect = F.interpolate(grid_in, scale_factor=(30.1 / 14, 52.1 / 14), mode="bicubic")
    assert torch.equal(out[:, 1:], expect.permute(0, 2, 3, 1).reshape(1, -1, 2))
    size_rule = resample_pos_embed(table, (side, side), grid)  # samples (i + 0.5) * 14 / 30 - 0.5
    assert 0.005 < float((size_rule - out).abs().max()) < 0.2
    square = torch.randn(1, 1 + 196, 4)
    assert dino_interpolate_pos_embed(square, (14, 14)) is square  # DINO's shortcut
    with pytest.raises(ValueError, match="square"):
        dino_interpolate_pos_embed(torch.randn(1, 1 + 12, 4), (5, 5))


def test_pos_embed_rule_sets_and_restores():
    class Net(torch.nn.Module):
        pos_embed_resize = "interpolate"

    net = Net()
    with pos_embed_rule(net, "dino"):
        assert net.pos_embed_resize == "dino"
    assert net.pos_embed_resize == "interpolate"
    with pos_embed_rule(net, "model"):
        assert net.pos_embed_resize == "interpolate"
    with pos_embed_rule(torch.nn.Identity(), "dino"):  # no position embeddings: nothing to do
        pass


def test_timm_vit_dino_rule_matches_a_hand_written_dino_forward():
    from lightning_modules import load_feature_model

    net = load_feature_model(model="vit_tiny_patch16_224", random_init=True, pos_embed="dino")
    vit = net.model
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        tokens = vit.patch_embed(x).reshape(1, -1, vit.embed_dim)  # (1, 15, D)
        pos = vit.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, scale_factor=(3.1 / 14, 5.1 / 14), mode="bicubic")
        pos = pos.permute(0, 2, 3, 1).reshape(1, 15, -1)
        seq = torch.cat([vit.cls_token + vit.pos_embed[:, :1], tokens + pos], 1)
        for blk in vit.blocks:
            seq = blk(seq)
        ref = vit.norm(seq)[:, 1:].transpose(1, 2).reshape(1, -1, 3, 5)
        torch.testing.assert_close(net.extract_features(x), ref, atol=1e-5, rtol=0)
        net.pos_embed_resize = "interpolate"
        assert not torch.allclose(net.extract_features(x), ref, atol=1e-4)


# ---------------------------------------------------------------------------------- bundles and overrides
def test_protocol_table():
    p = {(n, b): get_protocol(n, b) for n in PROTOCOL_NAMES for b in ("davis", "vip", "jhmdb")}
    knobs = {k: (v.propagation.topk, v.propagation.queue_length, v.propagation.radius) for k, v in p.items()}
    assert knobs["siammae", "davis"] == (7, 20, 20.0) and knobs["siammae", "vip"] == (10, 20, 8.0)
    assert knobs["dino", "davis"] == (5, 7, 12.0) and knobs["crw", "davis"] == (10, 20, 12.0)
    assert p["dino", "davis"].propagation.ties == "keep" and p["crw", "vip"].propagation.ties == "exact"
    assert p["crw", "vip"].propagation.context == "crw" and p["crw", "vip"].vip_first_frame == "roundtrip"
    assert p["crw", "vip"].propagation.window == "circle_open" and p["crw", "vip"].decode == "crw"
    assert p["dino", "davis"].pos_embed == "dino" and p["legacy", "davis"].pos_embed == "size"
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("uvc", "davis")


def test_overrides_and_description():
    base = get_protocol("siammae", "davis")
    assert describe(base) == "siammae"
    changed = override(base, topk=5, ties="exact", std=[0.229, 0.224, 0.225], radius=None)
    assert changed.propagation.topk == 5 and changed.std == (0.229, 0.224, 0.225)
    assert describe(changed) == "siammae (std=(0.229, 0.224, 0.225), ties=exact, topk=5)"
    with pytest.raises(ValueError, match="unknown protocol knobs"):
        override(base, top_k=3)
    with pytest.raises(ValueError, match="frame_resize"):
        override(base, frame_resize="bicubic")
    assert as_protocol(base.propagation, "davis").name == "legacy"


def test_cli_flags_derive_from_the_dataclasses():
    parser = argparse.ArgumentParser()
    add_protocol_arguments(parser)
    flags = ["--protocol", "dino", "--topk", "7", "--ties", "exact", "--minmax-norm", "false"]
    args = parser.parse_args([*flags, "--std", "0.229,0.224,0.225", "--frame-resize", "float"])
    assert args.protocol == "dino"
    assert overrides_from_args(args) == {"topk": 7, "ties": "exact", "minmax_norm": False,
                                         "std": (0.229, 0.224, 0.225), "frame_resize": "float"}  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["--window", "hexagon"])
    assert math.isclose(override(get_protocol("dino", "davis"), **overrides_from_args(args)).std[0], 0.229)


def test_crw_scores_the_round_tripped_frame_zero_on_vip(tmp_path):
    from callbacks.evaluation.metrics import ConfusionMIoU
    from callbacks.evaluation.vip import evaluate_vip
    from datamodules.vip import load_vip
    from lightning_modules.feature_models.pixels import PixelFeatures
    from tests.helpers.benchmark_fixtures import write_vip_fixture

    write_vip_fixture(tmp_path, num_videos=1, num_frames=3)
    video = load_vip(tmp_path)[0]
    net, size = PixelFeatures(8), (64, 48)
    crw = get_protocol("crw", "vip")
    roundtrip = evaluate_vip(net, [video], crw, size=size)[0]["confusion"]
    as_gt = evaluate_vip(net, [video], override(crw, vip_first_frame="gt"), size=size)
    gt0 = video.read_label(0).astype(np.int64)
    classes = np.unique(gt0)
    lookup = np.zeros(256, np.int64)
    lookup[classes] = np.arange(len(classes))
    first = first_frame_labels(lookup[gt0], size, 8, len(classes), crw)
    frame0 = classes[decode_labels(first, 8, size, size, crw).numpy()]  # (64, 48) -> GT size below
    frame0 = resize_id_map(frame0, gt0.shape, crw).numpy()
    h_rt, h_gt = ConfusionMIoU(20), ConfusionMIoU(20)
    h_rt.update(torch.from_numpy(frame0), torch.from_numpy(gt0))
    h_gt.update(torch.from_numpy(gt0), torch.from_numpy(gt0))
    assert np.array_equal(roundtrip - as_gt[0]["confusion"], (h_rt.hist - h_gt.hist).numpy())
    assert not np.array_equal(frame0, gt0)  # the soft 8x8-cell labels do not reproduce part boundaries


def test_cv2_nearest_first_frame_rule_has_no_half_pixel_offset():
    ids = torch.tensor([[1, 2]])
    crw = get_protocol("crw", "vip")
    assert resize_id_map(ids, (1, 3), crw, "cv2_nearest").tolist() == [[1, 1, 2]]  # floor(i * 2 / 3)
    assert resize_id_map(ids, (1, 3), crw, "pil").tolist() == [[1, 2, 2]]  # floor((i + 0.5) * 2 / 3)
    assert crw.first_frame_resize == "cv2_nearest"
    assert get_protocol("dino", "davis").first_frame_resize == "pil"
