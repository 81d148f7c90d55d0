"""The corrmae training systems: the only classes a checkpoint's recorded class path may name.

A checkpoint's class path is never imported (it is data from a stranger's file); it is looked up here.
"""

from pathlib import Path

from lightning_modules.siammae import SiamMAE
from lightning_modules.videomac import VideoMAC

SYSTEMS = (SiamMAE, VideoMAC)


def registered_systems() -> dict[str, type]:
    """The corrmae training systems by class name: the only classes a checkpoint may ask to be rebuilt as."""
    return {cls.__name__: cls for cls in SYSTEMS}


def registered_class(class_path: str, source: str | Path) -> type:
    """The registered system that ``class_path`` names; anything else is refused, never imported.

    Accepted spellings: ``SiamMAE``, ``lightning_modules.SiamMAE``, ``lightning_modules.siammae.SiamMAE``.
    """
    systems = registered_systems()
    module, _, name = class_path.rpartition(".")
    cls = systems.get(name)
    if cls is None or module not in ("", "lightning_modules", cls.__module__):
        raise ValueError(
            f"{source}: class path {class_path!r} is not a registered corrmae system "
            f"({', '.join(sorted(systems))}); refusing to import it"
        )
    return cls
