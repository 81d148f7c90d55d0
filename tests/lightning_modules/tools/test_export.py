"""``corrmae export``: safetensors + timm hub config + model card, loadable by timm and by eval-all."""

import json

import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file, save_file

from datamodules.benchmark_gen import write_davis_benchmark
from lightning_modules import VideoMAC
from lightning_modules.cli import main as cli_main
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.tools.eval_all import main as eval_all
from tests.system.test_bad_input import REPO, tiny_siammae_checkpoint


def videomac_checkpoint(path, **changes):
    """A tiny VideoMAC checkpoint as ``corrmae fit`` writes it."""
    init = yaml.safe_load((REPO / "configs/demo/videomac_tiny.yaml").read_text())["model"]["init_args"]
    # timm encoders: the authors' official ones (the tiny config's) have no timm architecture to export to
    model = VideoMAC(**{**init, "encoder_variant": "timm", "init": "standard", **changes})
    hparams = {**model.hparams, "_class_path": "lightning_modules.VideoMAC"}
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": hparams, "epoch": 4, "global_step": 40}, path
    )
    return path


def timm_features(model, x, index):
    """What a timm user gets: the final-norm last block (ViT) or one feature_info stage (CNN)."""
    if index < 0:
        return model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[-1]
    return model.forward_intermediates(x, indices=[index], intermediates_only=True)[-1]


def test_siammae_export_loads_in_timm_with_equal_features(tmp_path):
    ckpt = tiny_siammae_checkpoint(tmp_path / "siam.ckpt", log_images_every_n_steps=0)
    (tmp_path / "results.csv").write_text("checkpoint,J&F\nsiam.ckpt,12.345\n")
    cli_main(
        [
            "export",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "exp"),
            "--results",
            str(tmp_path / "results.csv"),
        ]
    )
    out = tmp_path / "exp"
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_small_patch16_224"
    args = config["model_args"]
    assert (args["patch_size"], args["embed_dim"], args["depth"], args["num_heads"], args["img_size"]) == (
        8,
        32,
        2,
        2,
        32,
    )
    card = (out / "README.md").read_text()
    assert (
        "SiamMAE" in card and "12.345" in card and "mask_ratio: 0.75" in card and "library_name: timm" in card
    )
    module = load_corrmae_checkpoint(ckpt)
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == module.encoder.state_dict().keys()  # the encoder only, timm names
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(timm_features(model, x, -1), module.extract_features(x))


@pytest.mark.parametrize("stage", [2, 4])
def test_videomac_export_loads_in_timm_with_equal_features(tmp_path, stage):
    ckpt = videomac_checkpoint(tmp_path / "mac.ckpt", feature_stage=stage, feature_stride=32)
    out = cli_main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "exp")]) or tmp_path / "exp"
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["corrmae"]["feature_stride"] == 2 ** (stage + 1)
    assert "5 epoch(s), 40 optimiser steps" in (out / "README.md").read_text()
    module = load_corrmae_checkpoint(ckpt)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    for size in ((64, 64), (96, 128)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            assert torch.equal(
                timm_features(model, x, config["corrmae"]["feature_index"]), module.extract_features(x)
            )


def test_official_videomac_encoder_is_refused_with_the_way_to_evaluate_it(tmp_path):
    ckpt = videomac_checkpoint(tmp_path / "mac.ckpt", encoder_variant="official", init="official")
    with pytest.raises(ValueError, match=r"not timm architectures.*--model videomac_resnet18 --weights"):
        cli_main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "exp")])
    assert not (tmp_path / "exp/model.safetensors").exists()


def test_eval_all_reads_export_folder_and_safetensors_file(tmp_path):
    data = tmp_path / "data"
    write_davis_benchmark(data / "DAVIS", num_val=2, num_tune=0, num_frames=4, size=(48, 64))
    ckpt = videomac_checkpoint(tmp_path / "mac.ckpt", feature_stage=2)
    cli_main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "exp")])
    common = ["--data", str(data), "--benchmarks", "davis", "--short-side", "0"]
    ref = eval_all(["--ckpt", str(ckpt), "--out", str(tmp_path / "o1"), *common])["davis"]
    folder = eval_all(["--weights", str(tmp_path / "exp"), "--out", str(tmp_path / "o2"), *common])["davis"]
    st = str(tmp_path / "exp/model.safetensors")
    file = eval_all(
        ["--model", "resnet18", "--stage", "2", "--weights", st, "--out", str(tmp_path / "o3"), *common]
    )
    assert folder == ref and file["davis"] == ref


def test_safetensors_with_wrong_dtype_is_refused(tmp_path):
    ref = timm.create_model("resnet18", num_classes=0).state_dict()
    save_file({k: v.to(torch.int8) for k, v in ref.items()}, tmp_path / "int8.safetensors")
    where = ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(
        ValueError, match=r"int8\.safetensors does not match .*non-floating dtype .*torch\.int8"
    ):
        eval_all(["--model", "resnet18", "--weights", str(tmp_path / "int8.safetensors"), *where])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors header")
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a readable safetensors file"):
        eval_all(["--model", "resnet18", "--weights", str(tmp_path / "junk.safetensors"), *where])
