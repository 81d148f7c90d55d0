"""Resumable ``eval-all``: finished videos are kept on disk under OUT and skipped by a rerun.

Layout under OUT::

    run.json                          settings of the run that owns OUT and their sha256 ("hash")
    records/<benchmark>/<video>.json  one finished video: its record (J/F rows, confusion matrix, joints)
    davis/<seq>/*.png                 DAVIS predictions (moved into place whole, before the record is written)

Atomicity: a record is written to a temp file in its directory and ``os.replace``-d into place, and a video's
PNG folder is written under ``davis/.partial-<pid>/`` and renamed into place *before* its record, so a video
counts as finished only when all of its outputs are complete; a kill at any point leaves at most a partial
folder that the rerun redoes. Records are JSON (arrays as base64 of their raw bytes, with dtype and shape),
so restored records are bit-identical to fresh ones and reading a results folder never unpickles anything.

A rerun must have the same settings hash (checkpoint or weights content, model, protocol, options); otherwise
it refuses to mix results and names what changed, unless ``--restart`` discards OUT's previous results.
"""

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch

from callbacks.checkpointing import atomic_write, fsync_dir


def file_digest(path: str | Path) -> str:
    """sha256 of a file (or of every file in a folder, by relative name)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def settings_hash(settings: dict) -> str:
    """sha256 of the canonical JSON of ``settings``."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _encode(obj):
    """JSON-ready copy of a record: ndarrays / tensors / numpy scalars tagged with their dtype."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()
        return {"__ndarray__": data, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {"__npscalar__": obj.item(), "dtype": obj.dtype.str}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in an eval record")


def _decode(obj):
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            raw = base64.b64decode(obj["__ndarray__"])
            return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        if "__npscalar__" in obj:
            return np.dtype(obj["dtype"]).type(obj["__npscalar__"])
        return {_decode(k): _decode(v) for k, v in obj["__dict__"]}
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    atomic_write(path, lambda f: f.write(text.encode()))


class ResultStore:
    """Per-video eval records under ``out``, owned by one settings hash.

    Args:
        out: the eval-all output directory.
        settings: everything the results depend on (JSON-serialisable).
        restart: discard results of another (or the same) settings hash instead of refusing.
    """

    def __init__(self, out: str | Path, settings: dict, restart: bool = False):
        # JSON-normalised (tuples become lists) so a reloaded run.json compares equal to the same settings
        self.out, self.settings = Path(out), json.loads(json.dumps(settings, default=str))
        self.hash = settings_hash(settings)
        self.restart = restart

    def claim(self) -> int:
        """Check OUT's owner (rank 0 only): refuse a different one, or wipe it under ``--restart``.

        Returns:
            How many finished videos are kept for this run.
        """
        meta = self.out / "run.json"
        if meta.is_file() and not self.restart:
            try:
                old = json.loads(meta.read_text())
            except ValueError as err:
                raise SystemExit(f"eval-all: {meta} is not readable ({err}); pass --restart") from err
            if old.get("hash") != self.hash:
                changed = sorted(k for k in {**old.get("settings", {}), **self.settings}
                                 if old.get("settings", {}).get(k) != self.settings.get(k))  # fmt: skip
                raise SystemExit(
                    f"eval-all: {self.out} holds results of a different evaluation (changed: "
                    f"{', '.join(changed) or 'unknown'}); refusing to mix them. Pass --restart to discard "
                    f"them, or give another --out."
                )
        elif meta.is_file() or self.restart:
            self.wipe()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(
            "*/.partial-*"
        ):  # prediction folders of videos a killed run left unfinished
            shutil.rmtree(stale, ignore_errors=True)
        atomic_write_text(meta, json.dumps({"hash": self.hash, "settings": self.settings}, indent=1))
        return (
            sum(1 for _ in (self.out / "records").rglob("*.json")) if (self.out / "records").is_dir() else 0
        )

    def wipe(self) -> None:
        """Remove a previous run's results (records, prediction folders, tables)."""
        for name in ("records", "davis", "run.json", "results.csv", "results.md", "davis_per_object.csv",
                     "vip_per_class.csv"):  # fmt: skip
            target = self.out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def _path(self, benchmark: str, video: str) -> Path:
        # quote(): JHMDB names are "<action>/<video>"; the file name must stay inside records/<benchmark>/
        return self.out / "records" / benchmark / f"{quote(video, safe='')}.json"

    def load(self, benchmark: str, video: str) -> dict | None:
        """The stored record of ``video``, or None if it is not finished."""
        path = self._path(benchmark, video)
        if not path.is_file():
            return None
        return _decode(json.loads(path.read_text()))

    def save(self, benchmark: str, video: str, record: dict) -> None:
        """Mark ``video`` finished with ``record`` (atomically)."""
        path = self._path(benchmark, video)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(_encode(record)))

    def partial_dir(self, benchmark: str) -> Path:
        """Where this process writes a video's prediction folder before moving it into place."""
        return self.out / benchmark / f".partial-{os.getpid()}"

    def commit_predictions(self, benchmark: str, video: str) -> None:
        """Move the finished prediction folder of ``video`` into ``OUT/<benchmark>/``."""
        src = self.partial_dir(benchmark) / video
        dst = self.out / benchmark / video
        if dst.exists():
            shutil.rmtree(dst)  # left by a run killed after the move but before its record
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            fsync_dir(dst.parent)
            try:
                src.parent.rmdir()  # this process's partial folder, now empty
            except OSError:
                pass
