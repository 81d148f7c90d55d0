"""One hash of a generated folder (names and bytes of every file): "same seed, same files" in one check."""

import hashlib
from pathlib import Path


def tree_digest(root: Path) -> str:
    """SHA-256 over the sorted relative paths and contents of every file below ``root``."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
