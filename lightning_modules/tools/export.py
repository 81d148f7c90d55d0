"""``corrmae export``: a trained encoder as a shareable timm / Hugging Face Hub model folder.

    corrmae export --ckpt runs/siammae/last.ckpt --out exports/siammae-vits16 [--results OUT/results.csv]

Writes ``model.safetensors`` (the encoder only, timm key names), ``config.json`` in timm's hub layout
(``architecture`` plus every ``model_args`` entry timm needs to rebuild a non-standard width / depth / patch
size) and a ``README.md`` model card (method, data, epochs, evaluation results if given, the exact config).
The folder loads with ``timm.create_model("local-dir:DIR", pretrained=True)``, is what
``huggingface-cli upload USER/NAME DIR`` publishes (then ``timm.create_model("hf-hub:USER/NAME",
pretrained=True)``), and is accepted by ``eval-all --weights DIR``.

SiamMAE exports its timm ViT; VideoMAC the dense timm ResNet / ConvNeXt behind its masked encoder (the
``feature_source`` network: online, or the EMA target). The ``corrmae`` block of ``config.json`` says which
feature map ``extract_features`` used (timm ``feature_info`` index and stride), so eval-all reproduces it.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import timm
import yaml
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from callbacks.safe_load import TRUST_FLAG, load_torch_file
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint


def siammae_encoder(module) -> tuple[nn.Module, dict, dict]:
    """(timm ViT, model_args, corrmae info) of a SiamMAE: the encoder as trained, at its training size."""
    vit = module.encoder
    hp = module.hparams
    args = dict(getattr(vit, "_model_args", {}))
    args.update(img_size=hp["img_size"], num_classes=0, dynamic_img_size=True,
                patch_size=int(vit.patch_embed.patch_size[0]), embed_dim=int(vit.embed_dim),
                depth=len(vit.blocks), num_heads=int(vit.blocks[0].attn.num_heads))  # fmt: skip
    if hp.get("feature_layer") not in (None, len(vit.blocks)):
        raise ValueError(f"feature_layer={hp['feature_layer']} is not the last block: timm's features differ")
    info = {"feature_index": -1, "feature_stride": args["patch_size"], "features": "last block, final norm"}
    return vit, args, info


def videomac_encoder(module) -> tuple[nn.Module, dict, dict]:
    """(timm ResNet / ConvNeXt, model_args, corrmae info) of a VideoMAC's evaluated encoder."""
    hp = module.hparams
    if hp.get("encoder_variant", "timm") != "timm":
        raise ValueError(
            f"the authors' VideoMAC encoders (encoder_variant: {hp['encoder_variant']}) are not timm "
            "architectures, so there is no timm export; evaluate the checkpoint directly (eval-all --ckpt) "
            f"or as published weights (eval-all --model videomac_{hp['encoder_name']} --weights CKPT)"
        )
    sparse = (module.online if hp["feature_source"] == "online" else module.target).encoder
    args = {"num_classes": 0}
    if module.feature_stride != 2 ** (hp["feature_stage"] + 1):  # dilated evaluation variant
        args["output_stride"] = hp["feature_stride"]
    model = timm.create_model(hp["encoder_name"], pretrained=False, **args)
    model.load_state_dict(sparse.encoder_state_dict(), strict=True)
    reductions = [2 ** (hp["feature_stage"] + 1)]
    index = next(i for i, f in enumerate(model.feature_info) if f["reduction"] in reductions)
    info = {"feature_index": index, "feature_stride": module.feature_stride,
            "features": f"stage {hp['feature_stage']} ({hp['feature_source']} encoder)"}  # fmt: skip
    return model, args, info


def timm_encoder(module) -> tuple[nn.Module, dict, dict]:
    """The timm model, its reconstruction args and the feature choice of a corrmae system."""
    name = type(module).__name__
    if name == "SiamMAE":
        return siammae_encoder(module)
    if name == "VideoMAC":
        return videomac_encoder(module)
    raise ValueError(f"export supports SiamMAE and VideoMAC, not {name}")


def read_results(path: str | None) -> list[dict]:
    """Rows of an ``eval-all`` results.csv (empty without one)."""
    if not path:
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_card(
    ckpt_path: Path, ckpt: dict, module, architecture: str, info: dict, results: list[dict]
) -> str:
    """A short README.md: what, how trained, how evaluated, the exact config, how to load."""
    hp = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k != "_instantiator"}
    data = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items() if k != "_instantiator"}
    epochs, steps = int(ckpt.get("epoch", -1)) + 1, int(ckpt.get("global_step", 0))
    lines = [
        "---", "library_name: timm", "tags: [timm, image-feature-extraction, corrmae]", "---",
        f"# {type(module).__name__} encoder ({architecture})", "",
        f"Self-supervised {type(module).__name__} encoder trained with corrmae, exported from "
        f"`{ckpt_path.name}`.", "",
        f"- Method: {type(module).__name__} (`{hp.get('_class_path', type(module).__name__)}`)",
        f"- Data: `{data.get('_class_path', 'unknown')}` at `{data.get('root') or data.get('index_file')}`",
        f"- Training: {epochs} epoch(s), {steps} optimiser steps",
        f"- Dense features: {info['features']}, stride {info['feature_stride']}",
        "", "## Evaluation", "",
    ]  # fmt: skip
    if results:
        keys = list(results[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in results]
    else:
        lines.append("No evaluation results were given at export (`corrmae export --results results.csv`).")
    lines += [
        "", "## Use", "", "```python", "import timm",
        'model = timm.create_model("local-dir:THIS_FOLDER", pretrained=True)  # or "hf-hub:USER/NAME"',
        "```", "", "Label propagation: `corrmae eval-all --weights THIS_FOLDER --data DATA --out OUT`.", "",
        "## Training config (exact)", "", "```yaml",
        yaml.safe_dump({"model": hp, "data": data}, sort_keys=False).rstrip(), "```", "",
    ]  # fmt: skip
    return "\n".join(lines)


def export(ckpt_path: str | Path, out: str | Path, results: str | None = None, trust: bool = False) -> Path:
    """Write the export folder; returns it."""
    ckpt_path, out = Path(ckpt_path), Path(out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"export: --out {out} is a file, not a directory")
    module = load_corrmae_checkpoint(ckpt_path, trust=trust)
    ckpt = load_torch_file(ckpt_path, trust)
    model, model_args, info = timm_encoder(module)
    architecture = module.hparams["encoder_name"]
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    size = int(module.hparams.get("img_size", 224))
    # Evaluation preprocessing (callbacks.evaluation.features): ImageNet mean/std, bilinear, no crop.
    pretrained_cfg = {
        "architecture": architecture, "input_size": [3, size, size], "fixed_input_size": False,
        "mean": list(IMAGENET_DEFAULT_MEAN), "std": list(IMAGENET_DEFAULT_STD), "interpolation": "bilinear",
        "crop_pct": 1.0, "num_classes": 0,
    }  # fmt: skip
    config = {
        "architecture": architecture,
        "num_classes": 0,
        "num_features": int(model.num_features),
        "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
        "corrmae": {"method": type(module).__name__, "checkpoint": ckpt_path.name, **info},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "README.md").write_text(
        model_card(ckpt_path, ckpt, module, architecture, info, read_results(results))
    )
    return out


def main(argv: list[str] | None = None) -> Path:
    """``corrmae export --ckpt X --out DIR``."""
    p = argparse.ArgumentParser(prog="corrmae export", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="corrmae Lightning checkpoint (SiamMAE / VideoMAC)")
    p.add_argument("--out", required=True, help="export folder (created)")
    p.add_argument("--results", help="an eval-all results.csv to quote in the model card")
    p.add_argument(TRUST_FLAG, action="store_true", help="unpickle --ckpt fully (only for trusted files)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = export(args.ckpt, args.out, args.results, args.trust_checkpoint)
    print(f"export: wrote {out / 'model.safetensors'}, config.json and README.md")
    return out
