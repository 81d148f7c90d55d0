"""The one writability probe for output directories (eval-all's ``--out``, fit's log and checkpoint dirs)."""

import os
from pathlib import Path


def probe_writable(directory: str | Path) -> None:
    """Create ``directory`` if needed and write and delete a file in it; raises ``OSError`` if that fails.

    Why a real write: permission bits and read-only mounts are only reliably told apart by trying.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".write_test_{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()
