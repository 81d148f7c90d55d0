"""Evaluation protocols: everything between the frames on disk and the score, as one named bundle.

A protocol fixes the frame resizing rule, the normalisation constants, how the first-frame labels reach the
feature grid, how a ViT's position embeddings reach the evaluation grid, the propagation knobs (context,
window, top-k and its tie rule, temperature), the decoding before argmax and the label-map resizing. The
scorers are fixed per benchmark (davis2017-evaluation J&F, CRW ``eval_vip.py`` mIoU, CRW ``eval_pck.py``
PCK). Every field can be overridden (``settings.override``); ``describe`` names the protocol and the
overrides for the results table. README "Evaluation protocols" documents each rule and its source line.

- ``dino``: DINO ``eval_video_segmentation.py`` (k 5, queue 7, radius 12, tau 0.1).
- ``crw``: videowalk ``test.py`` + ``eval_vip.py`` / ``eval_pck.py`` (T 0.05, k 10, 20 padded frames,
  radius 12 open circle; README DAVIS command).
- ``siammae``: SiamMAE Table 4b's (k, queue, radius) on the pre-processing of the scripts it follows:
  DINO's for DAVIS, CRW/UVC's for VIP and JHMDB (square 560 / 320 frames).
- ``legacy``: corrmae before protocols existed (round-to-stride width, float resize, two-step labels,
  timm size-based position embeddings, exactly-k top-k).
"""

from __future__ import annotations

import typing
from dataclasses import replace
from typing import Literal

from callbacks.evaluation.settings import (
    BENCHMARK_NAMES,
    IMAGENET_STD,
    PROPAGATION_KNOBS,
    PROTOCOL_KNOBS,
    PropagationConfig,
    Protocol,
)

ProtocolName = Literal["siammae", "dino", "crw", "legacy"]
PROTOCOL_NAMES: tuple[str, ...] = typing.get_args(ProtocolName)


def _dino(benchmark: str, topk: int, queue: int, radius: float, name: str, source: str) -> Protocol:
    """DINO pre-processing and propagation semantics with the given (k, queue, radius)."""
    prop = PropagationConfig(topk=topk, queue_length=queue, radius=radius, minmax_norm=benchmark != "jhmdb")
    return Protocol(name=name, source=source, propagation=prop)


def _crw_frames(name: str, source: str, prop: PropagationConfig, **kw) -> Protocol:
    """CRW/UVC pre-processing: float resize to the fixed square size, ImageNet std."""
    return Protocol(name=name, source=source, width_rule="stride", frame_resize="float", std=IMAGENET_STD,
                    propagation=prop, **kw)  # fmt: skip


def get_protocol(name: str, benchmark: str) -> Protocol:
    """The named protocol for ``benchmark`` (``davis`` | ``vip`` | ``jhmdb``)."""
    return replace(_named(name, benchmark), benchmark=benchmark)


def _named(name: str, benchmark: str) -> Protocol:
    if benchmark not in BENCHMARK_NAMES:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARK_NAMES)}")
    table4b = {"davis": (7, 20, 20.0), "vip": (10, 20, 8.0), "jhmdb": (7, 20, 20.0)}[benchmark]
    if name == "dino":
        return _dino(benchmark, 5, 7, 12.0, "dino", "DINO eval_video_segmentation.py + davis2017-evaluation")
    if name == "siammae":
        if benchmark == "davis":
            return _dino(
                benchmark, *table4b, "siammae", "SiamMAE Table 4b on DINO eval_video_segmentation.py"
            )
        prop = replace(PropagationConfig(), topk=table4b[0], queue_length=20, radius=table4b[2],
                       minmax_norm=benchmark == "vip")  # fmt: skip
        # UVC decoding (x8 bilinear, min-max, argmax), which SiamMAE's "following [12]" points to
        return _crw_frames("siammae", "SiamMAE Table 4b on UVC/CRW VIP/JHMDB pre-processing", prop)
    if name == "crw":
        prop = PropagationConfig.preset("crw")
        src = "videowalk test.py + eval_vip.py / eval_pck.py"
        rules = {"label_downsample": "bilinear", "decode": "crw", "vip_first_frame": "roundtrip",
                 "first_frame_resize": "cv2_nearest"}  # fmt: skip
        return _crw_frames("crw", src, prop, **rules)
    if name == "legacy":
        prop = PropagationConfig.preset(benchmark)
        return Protocol(name="legacy", source="corrmae <= e8ec117", width_rule="stride", frame_resize="float",
                        std=IMAGENET_STD, label_downsample="two_step", pos_embed="size",
                        label_resize="nearest_exact", first_frame_resize="nearest_exact",
                        propagation=prop)  # fmt: skip
    raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOL_NAMES)}")


def overrides_of(protocol: Protocol) -> dict:
    """Knobs where ``protocol`` differs from its named base (for the results table)."""
    base = get_protocol(protocol.name, protocol.benchmark)
    out = {k: getattr(protocol, k) for k in PROTOCOL_KNOBS if getattr(protocol, k) != getattr(base, k)}
    prop, base_prop = protocol.propagation, base.propagation
    out.update({k: getattr(prop, k) for k in PROPAGATION_KNOBS
                if k != "chunk_size" and getattr(prop, k) != getattr(base_prop, k)})  # fmt: skip
    return out


def describe(protocol: Protocol, overrides: dict | None = None) -> str:
    """``name`` or ``name (k=value, ...)`` for the results table."""
    items = overrides if overrides is not None else overrides_of(protocol)
    if not items:
        return protocol.name
    return f"{protocol.name} (" + ", ".join(f"{k}={v}" for k, v in sorted(items.items())) + ")"


def as_protocol(cfg: Protocol | PropagationConfig, benchmark: str) -> Protocol:
    """Accept a bare ``PropagationConfig`` (the study/demo API): the legacy protocol with those knobs."""
    if isinstance(cfg, Protocol):
        return cfg
    if isinstance(cfg, PropagationConfig):
        legacy = get_protocol("legacy", benchmark)
        labels = "bilinear" if cfg.soft_first_frame else legacy.label_downsample  # the pre-protocol switch
        return replace(legacy, propagation=cfg, label_downsample=labels)
    raise TypeError(f"expected a Protocol or PropagationConfig, got {type(cfg).__name__}")
