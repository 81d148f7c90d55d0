"""Sizes of every measurement: ``gpu()`` is the real run (about 6 minutes on an H200), ``cpu()`` the same code
at tiny sizes for machines without CUDA (the fast test runs it). Budgets are per section, in seconds."""

from __future__ import annotations

from dataclasses import dataclass

# SiamMAE test-sized encoder/decoder (configs/demo/siammae_tiny.yaml's scale) for the CPU run.
_TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1, decoder_num_heads=2)


@dataclass(frozen=True)
class SiamSetting:
    """One SiamMAE training-step measurement."""

    label: str
    kwargs: dict  # SiamMAE init args
    batch: int


@dataclass(frozen=True)
class MacSetting:
    """One VideoMAC training-step measurement; ``bf16`` follows the configs (ConvNeXt bf16, ResNet fp32)."""

    label: str
    encoder: str
    img: int
    batch: int
    bf16: bool
    decoder_dim: int = 512


@dataclass(frozen=True)
class PropSetting:
    """One propagation measurement: grid of a benchmark at a model's stride, its preset, label channels."""

    label: str
    grid: tuple[int, int]
    dim: int
    preset: str
    labels: int
    frames: int  # frames of that benchmark (for the wall-time estimate)
    image: tuple[int, int]  # input size of the feature extractor
    vit: str  # timm name of the feature extractor
    dense: bool  # also time DINO's dense ops (DAVIS rows only)


@dataclass(frozen=True)
class Sizes:
    """Everything the sections size themselves by."""

    name: str
    peak_n: int
    peak_iters: int
    warmup: int
    iters: int
    siammae: tuple[SiamSetting, ...]
    videomac: tuple[MacSetting, ...]
    compile: bool
    fit_steps: int
    fit_batch: int
    numerics_batch: int
    propagation: tuple[PropSetting, ...]
    chunk_sizes: tuple[int, ...]
    agreement_frames: int
    feature_batch: int
    loader_videos: int
    loader_frames: int
    loader_frame_size: tuple[int, int]  # (W, H) of the generated JPEGs
    loader_workers: tuple[int, ...]
    loader_batch: int
    loader_img: int
    budgets: dict


# DAVIS-2017 val 1,999 frames, VIP val 2,445 annotated frames (published split sizes); JHMDB split-1 test
# 268 of 928 clips, 31,838 frames in all -> about 9,190 frames (an estimate: per-clip counts are not stored).
DAVIS_FRAMES, VIP_FRAMES, JHMDB_FRAMES = 1999, 2445, round(31838 * 268 / 928)


def gpu() -> Sizes:
    """Real sizes: ViT-S at 224 px, DAVIS at 480p (S/8 60x107, S/16 30x53), VIP 560x560, JHMDB 320x320."""
    s8, s16 = "vit_small_patch8_224", "vit_small_patch16_224"
    return Sizes(
        name="gpu",
        peak_n=8192,
        peak_iters=20,
        warmup=3,
        iters=10,
        siammae=(
            SiamSetting("SiamMAE ViT-S/16", dict(encoder_name=s16), 256),
            SiamSetting("SiamMAE ViT-S/8", dict(encoder_name=s8), 128),
        ),
        videomac=(
            MacSetting("VideoMAC CNXv2-S", "convnextv2_small", 224, 128, bf16=True),
            MacSetting("VideoMAC RN50", "resnet50", 224, 128, bf16=False),
        ),
        compile=True,
        fit_steps=4,
        fit_batch=32,
        numerics_batch=16,
        propagation=(
            PropSetting("DAVIS ViT-S/8", (60, 107), 384, "davis", 4, DAVIS_FRAMES, (480, 856), s8, True),
            PropSetting("DAVIS ViT-S/16", (30, 53), 384, "davis", 4, DAVIS_FRAMES, (480, 848), s16, True),
            PropSetting("VIP ViT-S/8", (70, 70), 384, "vip", 20, VIP_FRAMES, (560, 560), s8, False),
            PropSetting("VIP ViT-S/16", (35, 35), 384, "vip", 20, VIP_FRAMES, (560, 560), s16, False),
            PropSetting("JHMDB ViT-S/8", (40, 40), 384, "jhmdb", 16, JHMDB_FRAMES, (320, 320), s8, False),
            PropSetting("JHMDB ViT-S/16", (20, 20), 384, "jhmdb", 16, JHMDB_FRAMES, (320, 320), s16, False),
        ),
        chunk_sizes=(64, 256, 1024),
        agreement_frames=12,
        feature_batch=8,
        loader_videos=24,
        loader_frames=40,
        loader_frame_size=(854, 480),
        loader_workers=(4, 8, 15),
        loader_batch=32,
        loader_img=224,
        budgets={"Environment": 20, "Training steps": 170, "Numerics": 30,
                 "Propagation on GPU at real DAVIS sizes": 55, "Feeding the step": 45},
    )  # fmt: skip


def cpu() -> Sizes:
    """Tiny sizes for a machine without CUDA: every code path, seconds each."""
    tiny = dict(encoder_name="vit_small_patch16_224", img_size=32, patch_size=8, **_TINY_VIT)
    tiny16 = dict(encoder_name="vit_small_patch16_224", img_size=64, patch_size=16, **_TINY_VIT)
    s = "vit_small_patch16_224"
    return Sizes(
        name="cpu-tiny",
        peak_n=256,
        peak_iters=5,
        warmup=1,
        iters=2,
        siammae=(
            SiamSetting("SiamMAE tiny /16 (64 px)", tiny16, 4),
            SiamSetting("SiamMAE tiny /8 (32 px)", tiny, 4),
        ),
        videomac=(
            MacSetting("VideoMAC CNXv2-atto (64 px)", "convnextv2_atto", 64, 2, bf16=True, decoder_dim=32),
            MacSetting("VideoMAC RN18 (64 px)", "resnet18", 64, 2, bf16=False, decoder_dim=32),
        ),
        compile=False,
        fit_steps=2,
        fit_batch=2,
        numerics_batch=2,
        propagation=(
            PropSetting("DAVIS-like tiny /8", (12, 20), 64, "davis", 4, DAVIS_FRAMES, (96, 160), s, True),
            PropSetting("VIP-like tiny", (10, 10), 64, "vip", 5, VIP_FRAMES, (80, 80), s, False),
        ),
        chunk_sizes=(64, 256),
        agreement_frames=5,
        feature_batch=2,
        loader_videos=3,
        loader_frames=6,
        loader_frame_size=(96, 64),
        loader_workers=(1, 2),
        loader_batch=4,
        loader_img=32,
        # Generous: on a shared CPU the tiny sizes take 40-100 s in all, and no figure here is a speed figure.
        budgets={"Environment": 30, "Training steps": 120, "Numerics": 90,
                 "Propagation on GPU at real DAVIS sizes": 60, "Feeding the step": 60},
    )  # fmt: skip
