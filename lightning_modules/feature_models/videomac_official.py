"""The authors' released VideoMAC encoders as dense feature extractors (eval-all ``--model videomac_*``).

``--model videomac_resnet18 | videomac_resnet50 | videomac_convnextv2_tiny | videomac_convnextv2_small``
builds the official architecture (``components/official_{resnet,convnext}.py``); ``--weights FILE`` loads,
strictly, either a file written by the official ``tools/convert_pth.py`` or a raw pre-training
``checkpoint-*.pth`` (MinkowskiEngine layout, converted on the fly). Features: the dense encoder (no mask),
last stage by default.
"""

from pathlib import Path

from torch import Tensor, nn

from lightning_modules.components.encoders import build_encoder
from lightning_modules.components.official_checkpoints import load_official_weights

MODELS = {
    "videomac_resnet18": "resnet18",
    "videomac_resnet50": "resnet50",
    "videomac_convnextv2_tiny": "convnextv2_tiny",
    "videomac_convnextv2_small": "convnextv2_small",
}


class VideoMACFeatures(nn.Module):
    """An official VideoMAC encoder with the ``extract_features`` / ``feature_stride`` contract.

    Args:
        model: one of :data:`MODELS`.
        weights: converted or raw official checkpoint; None = random (the official init).
        stage: encoder stage 1..4 (stride 4, 8, 16, 32); None = 4, the paper's 7x7 at 224.
        branch: ``online`` (what ``convert_pth.py`` exports) or ``target`` (EMA) of a raw checkpoint.
    """

    def __init__(
        self, model: str, weights: str | Path | None = None, stage: int | None = None, branch="online"
    ):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown VideoMAC model {model!r}; choose from {', '.join(MODELS)}")
        self.stage = 4 if stage is None else int(stage)
        if self.stage not in (1, 2, 3, 4):
            raise ValueError(f"--stage for {model} is the encoder stage 1..4, got {stage}")
        self.model_name = model
        self.encoder = build_encoder(MODELS[model], "official")
        self.encoder.init_weights("official")
        if weights is not None:
            load_official_weights(self.encoder, weights, branch)
        self.eval()

    @property
    def feature_stride(self) -> int:
        """Pixels per feature cell."""
        return 2 ** (self.stage + 1)

    def extract_features(self, frames: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised -> (B, C, H/s, W/s)."""
        return self.encoder(frames, None, self.stage)


def build_videomac_features(
    model: str, weights: str | None, random_init: bool, stage: int | None
) -> nn.Module:
    """eval-all's builder for ``--model videomac_*`` (``--random-init`` = the official init, no file)."""
    if random_init and weights:
        raise ValueError("--random-init and --weights are mutually exclusive")
    if not random_init and not weights:
        raise ValueError(
            f"--model {model} needs --weights FILE (a released or converted checkpoint) or --random-init"
        )
    return VideoMACFeatures(model, None if random_init else weights, stage)
