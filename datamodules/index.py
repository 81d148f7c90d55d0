"""Offline video index: scan a data root once and write ``path,num_frames,fps,width,height`` as CSV.

``num_frames`` is the DECODED frame count (one PyAV decode pass per video), not the container's header
value, which can over-report: decord then reads past the real end (decord#373 spins forever there).
Videos shorter than ``gap_min + 1`` frames are dropped and counted; unreadable files are logged and
counted. Training reads ``<root>/index.csv`` when it exists (paths in it are relative to the root).

A file whose decoding kills the process (a native crash in FFmpeg) is isolated (``datamodules.isolation``):
it is counted as unreadable and listed in ``index_failures.csv`` beside the index, and the scan completes.

Usage: ``corrmae index --root DATA [--out FILE] [--gap-min 4] [--backend auto] [--workers N]``.
"""

import argparse
import csv
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.isolation import Crashed, isolated_map
from datamodules.readers import IMAGE_EXTENSIONS, FrameFolderReader, VideoReadError

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
FIELDS = ("path", "num_frames", "fps", "width", "height")


@dataclass(frozen=True)
class IndexRow:
    """One indexed video (file or frame folder)."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int


def find_sources(
    root: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS, videos: bool = True, folders: bool = True
) -> list[Path]:
    """Video files (recursively, e.g. Kinetics ``<root>/<split>/<class>/<id>.mp4``) and frame folders.

    A frame folder is a directory that directly holds image files. If ``<root>/JPEGImages`` exists
    (YouTube-VOS / DAVIS layout) only folders under it are taken, so ``Annotations/`` masks are not
    mistaken for videos. Hidden files and directories are ignored. Result is sorted (deterministic).
    """
    root = Path(root)
    exts = {e.lower() for e in extensions}
    found = []
    for p in root.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if videos and p.is_file() and p.suffix.lower() in exts:
            found.append(p)
    if folders:
        frame_root = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root
        image_dirs = {
            p.parent
            for p in frame_root.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(s.startswith(".") for s in p.relative_to(root).parts)
        }
        found.extend(image_dirs)
    return sorted(found)


def probe_video(path: str | Path) -> IndexRow:
    """Count the decodable frames of a video file with one PyAV decode pass (multi-threaded: offline)."""
    import av

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise VideoReadError(path, "missing or empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            num_frames = sum(1 for _ in container.decode(stream))
            width, height = stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, IndexError, OSError) as e:
        raise VideoReadError(path, f"cannot decode ({type(e).__name__}: {e})") from e
    if not rate:
        raise VideoReadError(path, "no frame rate in the container")
    return IndexRow(str(path), num_frames, float(rate), width, height)


def probe_folder(path: str | Path, fps: float = 30.0) -> IndexRow:
    """Count the frames of a frame folder and check that all have the same size (image headers only)."""
    reader = FrameFolderReader(path, fps=fps)
    reader.check_sizes()
    width, height = reader.size
    return IndexRow(str(path), reader.num_frames, fps, width, height)


def probe(path: Path, folder_fps: float = 30.0) -> IndexRow | VideoReadError:
    """``probe_folder`` or ``probe_video``; a read failure is returned, not raised, for the pool."""
    try:
        return probe_folder(path, folder_fps) if path.is_dir() else probe_video(path)
    except VideoReadError as e:
        return e


@dataclass
class IndexSummary:
    """Counts from one indexing run."""

    kept: int = 0
    too_short: int = 0
    unreadable: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unreadable files


def build_index(
    root: str | Path,
    out: str | Path | None = None,
    gap_min: int = 4,
    backend: str = "auto",
    folder_fps: float = 30.0,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    workers: int = 1,
    probe_fn: Callable[..., IndexRow | VideoReadError] = probe,
) -> tuple[Path, IndexSummary]:
    """Scan ``root`` and write the index CSV (default ``<root>/index.csv``).

    Args:
        root: data root (video files anywhere below it, or frame folders).
        out: output CSV path.
        gap_min: videos with fewer than ``gap_min + 1`` frames (files, for frame folders) are dropped.
        backend: ``frames`` indexes frame folders only, ``decord``/``pyav`` video files only, ``auto`` both.
        folder_fps: frame rate recorded for frame folders (their file rate; 6 for YouTube-VOS train).
        extensions: video file suffixes.
        workers: processes probing in parallel (each file is probed in a worker process, so a native
            decoder crash costs that file only).
        probe_fn: ``probe`` (tests pass one that crashes the process on a marker file).

    Returns:
        The CSV path and the counts (kept, too short, unreadable).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data root {str(root)!r} does not exist or is not a directory")
    out = Path(out) if out is not None else root / "index.csv"
    sources = find_sources(
        root, extensions, videos=backend != "frames", folders=backend in ("auto", "frames")
    )
    if not sources:
        raise ValueError(
            f"no video files ({', '.join(extensions)}) or frame folders found under {str(root)!r}"
        )
    job = functools.partial(probe_fn, folder_fps=folder_fps)
    by_path = dict(isolated_map(job, sources, workers))
    summary, rows = IndexSummary(), []
    for source in sources:  # source order, whatever the completion order
        result = by_path[source]
        if isinstance(result, (VideoReadError, Crashed)):
            log.warning("unreadable, not indexed: %s: %s", source, result.reason)
            summary.unreadable += 1
            summary.failures.append((str(source), result.reason))
        elif result.num_frames < max(gap_min + 1, 2):
            summary.too_short += 1
        else:
            rel = Path(result.path).relative_to(root).as_posix()
            rows.append(IndexRow(rel, result.num_frames, result.fps, result.width, result.height))
    summary.kept = len(rows)
    write_index(out, rows)
    write_failures(out.parent / "index_failures.csv", summary.failures)
    return out, summary


def write_failures(path: str | Path, failures: Sequence[tuple[str, str]]) -> None:
    """``path,reason`` rows of the files that could not be read (header only when there are none)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "reason"))
        writer.writerows(failures)


def write_index(path: str | Path, rows: Sequence[IndexRow]) -> None:
    """Write rows as CSV with the header ``path,num_frames,fps,width,height`` (atomically: temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        writer.writerows((r.path, r.num_frames, f"{r.fps:.6g}", r.width, r.height) for r in rows)
    tmp.replace(path)


def read_index(path: str | Path, root: str | Path | None = None) -> list[IndexRow]:
    """Read an index CSV; relative paths are resolved against ``root`` (default: the CSV's directory)."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or ())
        missing = set(FIELDS) - set(header)
        if missing:
            raise ValueError(
                f"index {str(path)!r} lacks columns {sorted(missing)} (expected {', '.join(FIELDS)}"
                f"{'; the file is empty' if not header else f'; its header row is {header}'})"
            )
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise ValueError(f"index {str(path)!r}: header repeats columns {repeated}")
        rows = []
        for line, rec in enumerate(reader, start=2):
            if None in rec:  # more fields than header columns: a shifted or mis-quoted row
                raise ValueError(
                    f"index {str(path)!r} line {line}: {len(header) + len(rec[None])} fields, the header "
                    f"has {len(header)}"
                )
            try:
                p = Path(rec["path"])
                rows.append(
                    IndexRow(
                        str(p if p.is_absolute() else base / p),
                        int(rec["num_frames"]),
                        float(rec["fps"]),
                        int(rec["width"]),
                        int(rec["height"]),
                    )
                )
            except (TypeError, ValueError) as e:
                raise ValueError(f"index {str(path)!r} line {line}: bad row {rec} ({e})") from e
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """``corrmae index``: build the index and print a summary."""
    parser = argparse.ArgumentParser(prog="corrmae index", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="data root to scan")
    parser.add_argument("--out", default=None, help="output CSV (default: ROOT/index.csv)")
    parser.add_argument("--gap-min", type=int, default=4, help="drop videos with fewer than GAP_MIN+1 frames")
    parser.add_argument(
        "--backend", choices=("auto", "torchcodec", "decord", "pyav", "frames"), default="auto"
    )
    parser.add_argument("--folder-fps", type=float, default=30.0, help="file rate of frame folders")
    parser.add_argument("--workers", type=int, default=1, help="parallel probe processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out, s = build_index(
        args.root, args.out, args.gap_min, args.backend, args.folder_fps, workers=args.workers
    )
    print(
        f"indexed {s.kept} videos -> {out}; dropped {s.too_short} shorter than {args.gap_min + 1} frames, "
        f"{s.unreadable} unreadable (listed in {out.parent / 'index_failures.csv'})"
    )


if __name__ == "__main__":
    main()
