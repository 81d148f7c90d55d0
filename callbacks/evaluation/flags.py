"""eval-all's protocol flags, derived from the settings dataclasses: ``--protocol`` plus one flag per knob."""

from callbacks.evaluation.protocols import PROTOCOL_NAMES
from callbacks.evaluation.settings import knob_types


def add_protocol_arguments(parser) -> None:
    """``--protocol`` plus one ``--<knob>`` flag per protocol / propagation field (unset = the protocol's)."""
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default="siammae", help="default: siammae")
    for name, (kind, choices) in knob_types().items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, type=_parse_bool, metavar="{true,false}", help=f"override {name}")
        elif kind is tuple:
            parser.add_argument(flag, type=_parse_floats, metavar="R,G,B", help=f"override {name}")
        else:
            parser.add_argument(flag, type=kind, choices=choices, help=f"override {name}")


def overrides_from_args(args) -> dict:
    """The knobs given on the command line (``add_protocol_arguments``), by field name."""
    return {k: getattr(args, k) for k in knob_types() if getattr(args, k, None) is not None}


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
