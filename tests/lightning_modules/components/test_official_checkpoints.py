"""Official VideoMAC checkpoints: converted and MinkowskiEngine layouts load strictly, known kernels convert
as the official rules say, wrong files are named with their keys."""

import argparse
import math

import pytest
import torch

from lightning_modules.components.encoders import build_encoder
from lightning_modules.components.official_checkpoints import (
    convert_kernel,
    convert_minkowski_state_dict,
    load_official_weights,
)
from lightning_modules.components.official_convnext import CONVNEXTS
from tests.lightning_modules.components import minkowski_reference as ref

RESNETS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}


def me_state(name: str, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    if name in RESNETS:
        return ref.minkowski_resnet_state(*RESNETS[name], gen)
    return ref.minkowski_convnext_state(*CONVNEXTS[name], gen)


def official_remap(ckpt: dict, unsqueeze_2d: bool) -> dict:
    """The official ``remap_checkpoint_keys`` (unsqueeze_2d=False) / ``remap_checkpoint_keys_r50`` rules.

    Re-stated from tools/utils.py: substring tests on 'ln' / 'linear', a 2-D kernel read as depthwise or 1x1.
    """
    new = {}
    for k, v in ckpt.items():
        if k.startswith("encoder"):
            k = ".".join(k.split(".")[1:])
        if k.endswith("kernel"):
            k = ".".join(k.split(".")[:-1]) + ".weight"
            if v.dim() == 2 and unsqueeze_2d:
                v = v.unsqueeze(0)
            if v.dim() == 3:
                kv, cin, cout = v.shape
                ks = int(math.sqrt(kv))
                new[k] = v.permute(2, 1, 0).reshape(cout, cin, ks, ks).transpose(3, 2)
            else:
                kv, dim = v.shape
                ks = int(math.sqrt(kv))
                new[k] = v.permute(1, 0).reshape(dim, 1, ks, ks).transpose(3, 2)  # raises when kv is not k*k
            continue
        if "ln" in k or "linear" in k:
            parts = k.split(".")
            parts.pop(-2)
            k = ".".join(parts)
        new[k] = v
    for k, v in new.items():
        if k.endswith("bias") and v.dim() != 1:
            new[k] = v.reshape(-1)
        elif "grn" in k:
            new[k] = v.unsqueeze(0).unsqueeze(1)
    return new


def official_convert(online: dict) -> dict:
    """tools/convert_pth.py: drop decoder/mask_token/proj/pred, try the first remapper, fall back to _r50."""
    kept = {
        k: v for k, v in online.items() if not any(s in k for s in ("decoder", "mask_token", "proj", "pred"))
    }
    try:
        return official_remap(kept, unsqueeze_2d=False)
    except RuntimeError:
        return official_remap(kept, unsqueeze_2d=True)


def test_known_kernels_convert_as_minkowski_orders_them():
    # ME kernel index = i_h + k * i_w: entry 1 is one row down (h + 1) in the first column.
    me = torch.arange(9.0).reshape(9, 1, 1)  # (K², Cin, Cout)
    assert convert_kernel("a.kernel", me)[0, 0].tolist() == [
        [0.0, 3.0, 6.0],
        [1.0, 4.0, 7.0],
        [2.0, 5.0, 8.0],
    ]
    me = torch.zeros(4, 2, 3)  # 2x2/s2 conv, Cin 2, Cout 3
    me[1, 0, 2] = 5.0  # offset (h=1, w=0), input channel 0 -> output channel 2
    w = convert_kernel("downsample_layers.1.1.kernel", me)
    assert w.shape == (3, 2, 2, 2) and w[2, 0, 1, 0] == 5.0 and w.abs().sum() == 5.0
    dw = torch.zeros(49, 4)
    dw[7, 3] = 1.0  # i_h = 0, i_w = 1
    w = convert_kernel("stages.0.0.dwconv.kernel", dw)
    assert w.shape == (4, 1, 7, 7) and w[3, 0, 0, 1] == 1.0
    one = torch.arange(6.0).reshape(2, 3)  # stride-1 1x1 conv stored (Cin, Cout)
    assert torch.equal(convert_kernel("layer1.0.conv1.kernel", one)[:, :, 0, 0], one.t())
    assert torch.equal(convert_kernel("layer2.0.downsample.0.kernel", one.unsqueeze(0))[:, :, 0, 0], one.t())
    with pytest.raises(ValueError, match="layer9.kernel"):
        convert_kernel("layer9.kernel", torch.zeros(8, 2, 2))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "convnextv2_atto"])
def test_conversion_equals_the_official_script(name):
    """Same keys, shapes and values as tools/convert_pth.py (for ResNet-50 via its fallback remapper)."""
    me = me_state(name)
    ours, theirs = convert_minkowski_state_dict(me), official_convert(me)
    assert list(ours) == list(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    if name == "resnet50":
        with pytest.raises(RuntimeError):
            official_remap({k: v for k, v in me.items() if "encoder" in k}, unsqueeze_2d=False)


EXPECTED = {
    "resnet18": {
        "stem.0.weight": (64, 3, 4, 4), "stem.0.bias": (64,), "stem.1.weight": (64,), "stem.1.bias": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3), "layer1.1.norm2.bias": (64,),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer2.0.downsample.1.weight": (128,),
        "layer2.0.downsample.1.bias": (128,), "layer4.1.conv2.weight": (512, 512, 3, 3),
    },
    "resnet50": {
        "stem.0.bias": (64,), "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.norm3.weight": (256,), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.0.downsample.1.bias": (2048,),
    },
    "convnextv2_tiny": {
        "downsample_layers.0.0.weight": (96, 3, 4, 4), "downsample_layers.0.1.bias": (96,),
        "downsample_layers.1.0.weight": (96,), "downsample_layers.1.1.weight": (192, 96, 2, 2),
        "stages.2.8.dwconv.weight": (384, 1, 7, 7), "stages.2.8.pwconv1.weight": (1536, 384),
        "stages.2.8.grn.gamma": (1, 1, 1, 1536), "stages.3.2.pwconv2.bias": (768,),
        "norm0.weight": (96,), "norm1.bias": (192,), "norm2.weight": (384,), "norm3.bias": (768,),
    },
}  # fmt: skip


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dense_keys_are_what_convert_pth_writes(name):
    with torch.device("meta"):
        own = build_encoder(name, "official").state_dict()
    for k, shape in EXPECTED[name].items():
        assert tuple(own[k].shape) == shape, k
    assert not any(k.endswith(".kernel") or ".ln." in k or ".linear." in k for k in own)
    if name == "convnextv2_tiny":  # the official block registers pwconv2 before grn
        keys = [k for k in own if k.startswith("stages.0.0.")]
        assert keys.index("stages.0.0.pwconv2.weight") < keys.index("stages.0.0.grn.gamma")


@pytest.mark.parametrize("name", ["resnet18", "convnextv2_atto"])  # ResNet-50's layout: the test above
def test_raw_and_converted_files_load_strictly(name, tmp_path):
    me = {k: v.float() for k, v in me_state(name).items()}
    raw = {
        "online_without_ddp": me, "target_without_ddp": {k: v.float() for k, v in me_state(name, 1).items()},
        "model_online": {f"module.{k}": v for k, v in me.items()}, "optimizer": {"state": {}}, "epoch": 99,
        "args": argparse.Namespace(model="mac_r18", mask_ratio=0.75),
    }  # fmt: skip
    torch.save(raw, tmp_path / "checkpoint-99.pth")
    torch.save(official_convert(me), tmp_path / "mac.pth")
    a, b, t = (build_encoder(name, "official") for _ in range(3))
    load_official_weights(a, tmp_path / "checkpoint-99.pth")
    load_official_weights(b, tmp_path / "mac.pth")
    load_official_weights(t, tmp_path / "checkpoint-99.pth", branch="target")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, t.state_dict()[k]) for k, v in a.state_dict().items())


def test_wrong_files_name_the_file_and_the_keys(tmp_path):
    import timm

    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "timm_r18.pth")
    with pytest.raises(
        ValueError, match=r"timm_r18\.pth.*missing keys \['stem\.0\.weight'.*unexpected keys \['conv1"
    ):
        load_official_weights(build_encoder("resnet18", "official"), tmp_path / "timm_r18.pth")
    torch.save(official_convert(me_state("resnet18")), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"r18\.pth.*resnet50.*shape mismatches"):
        load_official_weights(build_encoder("resnet50", "official"), tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_official_weights(build_encoder("resnet18", "official"), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official_weights(build_encoder("resnet18", "official"), tmp_path / "nope.pth")
