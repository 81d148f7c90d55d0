"""The settings of an evaluation, defined once: ``PropagationConfig`` (the k-NN knobs) and ``Protocol``.

Every other place that names a knob derives it from these two dataclasses: eval-all's ``--<knob>`` flags
(``callbacks.evaluation.flags``), the callback's ``overrides``, the results table (``protocols.describe``)
and the one merge routine, ``override``. The named bundles (``siammae``, ``dino``, ``crw``, ``legacy``)
are in ``callbacks.evaluation.protocols``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from typing import Literal

BenchmarkName = Literal["davis", "vip", "jhmdb"]
BENCHMARK_NAMES: tuple[str, ...] = typing.get_args(BenchmarkName)
PresetName = Literal["davis", "vip", "jhmdb", "dino", "crw"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_STD = (0.228, 0.224, 0.225)  # DINO's color_normalize: 0.228 for R (a typo of 0.229, kept for exactness)


@dataclass(frozen=True)
class PropagationConfig:
    """Every knob of k-NN label propagation; defaults are SiamMAE Table 4b's DAVIS setting.

    Attributes:
        topk: neighbours kept per query cell, jointly over all context frames (Table 4b: 7 DAVIS/JHMDB,
            10 VIP).
        queue_length: number of previous *predicted* frames in the context besides frame 0 (Table 4b: 20).
        radius: neighbourhood radius in feature cells (Table 4b "neighborhood size": 20 DAVIS/JHMDB, 8 VIP).
        temperature: tau in exp(cos/tau). SiamMAE does not state it; 0.1 is DINO's hard-coded value, which
            SiamMAE's DINO-style flags (topk, n_last_frames, size_mask_neighborhood) point to.
        window: "square" (DINO, Chebyshev |dy|,|dx| <= r), "circle" (VFS, dy^2 + dx^2 <= r^2) or
            "circle_open" (CRW ``MaskedAttention``, dy^2 + dx^2 < r^2).
        window_first_frame: restrict frame 0 to the neighbourhood too (DINO: yes; CRW: no).
        ties: "keep" every candidate tied with the k-th value (DINO ``aff[aff < kth] = 0``) or "exact" k
            (``torch.topk``: CRW, VFS).
        context: "dino" (frame 0 once + the last ``queue_length`` predictions) or "crw" (videowalk
            ``test.py``: the video is front-padded with ``queue_length`` copies of frame 0, so the windowed
            queue holds frames t-m .. t-1 clamped to 0, and frame 0 is also the unrestricted long memory).
        soft_first_frame: bilinear (CRW) instead of nearest (DINO) downsampling of the first-frame labels;
            read by the caller of `downsample_labels` (protocols use their ``label_downsample``).
        minmax_norm: per-channel min-max rescaling after upsampling, before argmax (DINO "norm_mask").
        chunk_size: query cells per tile (tile side = floor(sqrt(chunk_size))); trades speed for memory only.
    """

    topk: int = 7
    queue_length: int = 20
    radius: float = 20.0
    temperature: float = 0.1
    window: Literal["square", "circle", "circle_open"] = "square"
    window_first_frame: bool = True
    ties: Literal["keep", "exact"] = "keep"
    context: Literal["dino", "crw"] = "dino"
    soft_first_frame: bool = False
    minmax_norm: bool = True
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.queue_length < 0:
            raise ValueError(f"queue_length must be >= 0, got {self.queue_length}")
        if not self.radius >= 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name, allowed in PROPAGATION_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.context == "crw" and self.window_first_frame:
            raise ValueError("context='crw' searches frame 0 over the whole grid: window_first_frame=False")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @classmethod
    def preset(cls, name: PresetName) -> PropagationConfig:
        """Propagation knobs only (the full protocols are ``protocols.get_protocol``); used by study and demo.

        "davis"/"vip"/"jhmdb" use DINO semantics (square window on all frames, hard first frame, min-max,
        tau 0.1) with Table 4b's (k, queue, radius) and exactly-k top-k (corrmae's pre-protocol behaviour).
        "dino" is `eval_video_segmentation.py`'s defaults (ties kept). "crw" is videowalk's DAVIS command
        (T 0.05, k 10, 20 padded frames, open radius-12 circle, frame 0 unrestricted, bilinear first-frame
        labels, no min-max).
        """
        davis = cls(ties="exact")
        presets = {
            "davis": davis,
            "vip": replace(davis, topk=10, radius=8.0),
            "jhmdb": replace(davis, minmax_norm=False),  # keypoints are decoded from the soft grid maps
            "dino": replace(davis, topk=5, queue_length=7, radius=12.0, ties="keep"),
            "crw": cls(
                topk=10,
                queue_length=20,
                radius=12.0,
                temperature=0.05,
                window="circle_open",
                window_first_frame=False,
                ties="exact",
                context="crw",
                soft_first_frame=True,
                minmax_norm=False,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return presets[name]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol for one benchmark.

    Attributes:
        name: protocol name (``siammae`` | ``dino`` | ``crw`` | ``legacy``).
        source: the reference script(s) it reproduces.
        benchmark: the benchmark it is for (``davis`` | ``vip`` | ``jhmdb``).
        width_rule: DAVIS long side: ``dino64`` floors it to a multiple of 64 (854 -> 832), ``stride`` rounds
            it to the nearest multiple of the feature stride (854 -> 856 at /8).
        frame_resize: ``cv2_uint8`` resizes the uint8 frame like OpenCV INTER_LINEAR, then converts to float
            (DINO); ``float`` converts first and resizes bilinearly in float (CRW resizes float32 with cv2,
            which is the same sampling).
        mean: normalisation mean (RGB).
        std: normalisation std (RGB); DINO uses 0.228 for R.
        label_downsample: first-frame labels to the grid: ``one_step`` PIL NEAREST from the original size
            straight to the grid (DINO ``read_seg``); ``two_step`` nearest to the eval size, then to the grid
            (legacy); ``bilinear`` nearest to the eval size, one-hot, bilinear to the grid (soft; CRW).
        pos_embed: ViT position embeddings at the eval grid: ``dino`` = ``interpolate_pos_encoding``
            (bicubic, scale_factor (h0 + 0.1) / sqrt(N)); ``size`` = bicubic to the target size (timm);
            ``model`` = the model's own setting (SiamMAE ``pos_embed_resize``).
        decode: ``dino`` = bilinear x stride, optional min-max (``propagation.minmax_norm``), argmax, PIL
            NEAREST to the output size; ``crw`` = one bilinear resize of the soft map to the eval size,
            then argmax.
        vip_first_frame: VIP frame 0 enters the confusion matrix as the ``gt`` (UVC, VFS) or as the
            ``roundtrip`` of its grid labels through the decoder (CRW writes and scores that).
        label_resize: nearest rule for id maps (VIP predictions to the GT size): ``pil`` (PIL NEAREST,
            bit-exact) or ``nearest_exact`` (torch, legacy).
        first_frame_resize: nearest rule taking the frame-0 ids to the eval size (or, for ``one_step``, to
            the grid): ``pil``, ``nearest_exact`` (legacy) or ``cv2_nearest`` (``cv2.resize`` INTER_NEAREST,
            source pixel floor(i * in / out): CRW/CropMAE ``vos.py``).
        propagation: the k-NN propagation knobs.
    """

    name: str
    source: str
    benchmark: str = "davis"
    width_rule: Literal["stride", "dino64"] = "dino64"
    frame_resize: Literal["cv2_uint8", "float"] = "cv2_uint8"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = DINO_STD
    label_downsample: Literal["one_step", "two_step", "bilinear"] = "one_step"
    pos_embed: Literal["dino", "size", "model"] = "dino"
    decode: Literal["dino", "crw"] = "dino"
    vip_first_frame: Literal["gt", "roundtrip"] = "gt"
    label_resize: Literal["pil", "nearest_exact"] = "pil"
    first_frame_resize: Literal["pil", "nearest_exact", "cv2_nearest"] = "pil"
    propagation: PropagationConfig = field(default_factory=PropagationConfig)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"protocol {self.name!r}: {name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"protocol {self.name!r}: mean/std need 3 values, std > 0; got {self.mean}, {self.std}"
            )


def literal_choices(cls: type) -> dict[str, tuple]:
    """The allowed values of each ``Literal``-typed field of a dataclass (so choices are written once)."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return {
        f.name: typing.get_args(hints[f.name]) for f in fields if typing.get_origin(hints[f.name]) is Literal
    }


PROPAGATION_CHOICES = literal_choices(PropagationConfig)
_CHOICES = {"benchmark": BENCHMARK_NAMES, **literal_choices(Protocol)}


PROPAGATION_KNOBS = tuple(f.name for f in dataclasses.fields(PropagationConfig))
PROTOCOL_KNOBS = tuple(
    f.name
    for f in dataclasses.fields(Protocol)
    if f.name not in ("name", "source", "benchmark", "propagation")
)


def override(protocol: Protocol, **overrides) -> Protocol:
    """A copy with some knobs changed; ``None`` values are ignored, unknown names raise."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(PROTOCOL_KNOBS) - set(PROPAGATION_KNOBS))
    if unknown:
        raise ValueError(f"unknown protocol knobs {unknown}; known: {PROTOCOL_KNOBS + PROPAGATION_KNOBS}")
    for key in ("mean", "std"):
        if key in given:
            given[key] = tuple(float(v) for v in given[key])
    prop = {k: v for k, v in given.items() if k in PROPAGATION_KNOBS}
    top = {k: v for k, v in given.items() if k in PROTOCOL_KNOBS}
    return replace(protocol, propagation=replace(protocol.propagation, **prop), **top)


def knob_types() -> dict[str, tuple[type, tuple | None]]:
    """(type, choices) of every overridable knob, read from the two dataclasses' defaults."""
    out = {}
    for name in PROTOCOL_KNOBS:
        default = getattr(Protocol(name="x", source="x"), name)
        out[name] = (tuple if isinstance(default, tuple) else type(default), _CHOICES.get(name))
    for name in PROPAGATION_KNOBS:
        out[name] = (type(getattr(PropagationConfig(), name)), PROPAGATION_CHOICES.get(name))
    return out
