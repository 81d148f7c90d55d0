"""Evaluation protocols: everything between the frames on disk and the score, as one named bundle.

A protocol fixes the frame resizing rule, the normalisation constants, how the first-frame labels reach the
feature grid, how a ViT's position embeddings reach the evaluation grid, the propagation knobs (context,
window, top-k and its tie rule, temperature), the decoding before argmax and the label-map resizing. The
scorers are fixed per benchmark (davis2017-evaluation J&F, CRW ``eval_vip.py`` mIoU, CRW ``eval_pck.py``
PCK). Every field can be overridden (``override``); ``describe`` names the protocol and the overrides for
the results table. README "Evaluation protocols" documents each rule and its source line.

- ``dino``: DINO ``eval_video_segmentation.py`` (k 5, queue 7, radius 12, tau 0.1).
- ``crw``: videowalk ``test.py`` + ``eval_vip.py`` / ``eval_pck.py`` (T 0.05, k 10, 20 padded frames,
  radius 12 open circle; README DAVIS command).
- ``siammae``: SiamMAE Table 4b's (k, queue, radius) on the pre-processing of the scripts it follows:
  DINO's for DAVIS, CRW/UVC's for VIP and JHMDB (square 560 / 320 frames).
- ``legacy``: corrmae before protocols existed (round-to-stride width, float resize, two-step labels,
  timm size-based position embeddings, exactly-k top-k).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Literal

from callbacks.label_propagation import PropagationConfig

ProtocolName = Literal["siammae", "dino", "crw", "legacy"]
PROTOCOL_NAMES: tuple[str, ...] = ("siammae", "dino", "crw", "legacy")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_STD = (0.228, 0.224, 0.225)  # DINO's color_normalize: 0.228 for R (a typo of 0.229, kept for exactness)


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


_CHOICES = {
    "benchmark": ("davis", "vip", "jhmdb"),
    "width_rule": ("stride", "dino64"),
    "frame_resize": ("cv2_uint8", "float"),
    "label_downsample": ("one_step", "two_step", "bilinear"),
    "pos_embed": ("dino", "size", "model"),
    "decode": ("dino", "crw"),
    "vip_first_frame": ("gt", "roundtrip"),
    "label_resize": ("pil", "nearest_exact"),
    "first_frame_resize": ("pil", "nearest_exact", "cv2_nearest"),
}


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
    if benchmark not in ("davis", "vip", "jhmdb"):
        raise ValueError(f"unknown benchmark {benchmark!r}; expected davis, vip or jhmdb")
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


def _knob_types() -> dict[str, tuple[type, tuple | None]]:
    """(type, choices) of every overridable knob, read from the two dataclasses' defaults."""
    prop_choices = {"window": ("square", "circle", "circle_open"), "ties": ("keep", "exact"),
                    "context": ("dino", "crw")}  # fmt: skip
    out = {}
    for name in PROTOCOL_KNOBS:
        default = getattr(Protocol(name="x", source="x"), name)
        out[name] = (tuple if isinstance(default, tuple) else type(default), _CHOICES.get(name))
    for name in PROPAGATION_KNOBS:
        out[name] = (type(getattr(PropagationConfig(), name)), prop_choices.get(name))
    return out


def add_protocol_arguments(parser) -> None:
    """``--protocol`` plus one ``--<knob>`` flag per protocol / propagation field (unset = the protocol's)."""
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default="siammae", help="default: siammae")
    for name, (kind, choices) in _knob_types().items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, type=_parse_bool, metavar="{true,false}", help=f"override {name}")
        elif kind is tuple:
            parser.add_argument(flag, type=_parse_floats, metavar="R,G,B", help=f"override {name}")
        else:
            parser.add_argument(flag, type=kind, choices=choices, help=f"override {name}")


def overrides_from_args(args) -> dict:
    """The knobs given on the command line (``add_protocol_arguments``), by field name."""
    return {k: getattr(args, k) for k in _knob_types() if getattr(args, k, None) is not None}


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_floats(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise ValueError(f"expected three comma-separated numbers, got {text!r}")
    return values
