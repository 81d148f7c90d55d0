"""``corrmae prepare``: turn a video root into a training-ready copy (short side S, fast random access).

Two output formats, chosen by ``--format`` (README "Training data at scale" compares them):
- ``mp4``: H.264 re-encoded with a key frame at least every ``--keyint`` frames (default 8), so a random
  pair decodes at most ~keyint frames from the previous key frame instead of ~GOP/2 (Kinetics: GOP 250).
- ``jpeg``: one JPEG per native frame, ``<out>/<relative path without suffix>/00000.jpg``: the frame-folder
  layout the data module reads (``backend: frames``, and the ``decode_on: gpu`` path).

The short side is resized to ``--short-side`` (default 256, both directions; sizes rounded to even numbers,
as yuv420p needs), with swscale's area filter. Videos are converted in worker processes
(``datamodules.isolation``: a file that crashes the decoder is recorded, the run goes on). Each output is
written under a hidden temporary name and renamed when complete, so a killed run leaves no half video;
rerunning skips finished outputs. ``--shard K/N`` converts every N-th video from the K-th (0-based), for a
SLURM array. Failures are listed in ``failures.csv`` (``failures-K-of-N.csv`` per shard), and the index of
decoded counts is written to ``<out>/index.csv`` from the per-shard ledgers under ``<out>/.prepare/``.
"""

import argparse
import csv
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.convert import Format, convert_video
from datamodules.index import (
    FIELDS,
    VIDEO_EXTENSIONS,
    IndexRow,
    find_sources,
    probe_folder,
    probe_video,
    write_failures,
    write_index,
)
from datamodules.isolation import Crashed, isolated_map
from datamodules.readers import VideoReadError

log = logging.getLogger(__name__)


def _job(pair: tuple[Path, Path], convert: Callable, **options):
    return convert(pair[0], pair[1], **options)


@dataclass
class PrepareSummary:
    """What one ``prepare`` run did (this shard only)."""

    converted: int = 0
    skipped_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    indexed: int = 0
    too_short: int = 0


def plan(root: Path, out: Path, fmt: Format, extensions: Sequence[str], shard: tuple[int, int]) -> list:
    """``(source, output)`` pairs of this shard, in sorted source order; refuses ambiguous layouts."""
    root, out = root.resolve(), out.resolve()
    if not root.is_dir():
        raise ValueError(f"--root {str(root)!r} does not exist or is not a directory")
    if out == root or root in out.parents:
        raise ValueError(
            f"--out {str(out)!r} must not be inside --root {str(root)!r} (it would be rescanned)"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    sources = find_sources(root, extensions, videos=True, folders=False)
    if not sources:
        raise ValueError(f"no video files ({', '.join(extensions)}) under {str(root)!r}")
    targets: dict[Path, Path] = {}
    for src in sources:
        rel = src.relative_to(root)
        dst = out / (rel.with_suffix(".mp4") if fmt == "mp4" else rel.with_suffix(""))
        if dst in targets:
            raise ValueError(f"{targets[dst]} and {src} would both be written to {dst}; rename one")
        targets[dst] = src
    k, n = shard
    return [(src, dst) for dst, src in targets.items()][k::n]


def _ledger(out: Path, shard: tuple[int, int]) -> Path:
    return out / ".prepare" / f"done-{shard[0]}-of-{shard[1]}.csv"


def _read_ledgers(out: Path) -> dict[str, IndexRow]:
    """Rows of every shard's finished outputs, by absolute output path."""
    rows = {}
    for ledger in sorted((out / ".prepare").glob("done-*.csv")):
        with open(ledger, newline="") as f:
            for rec in csv.DictReader(f, fieldnames=FIELDS):
                try:
                    row = IndexRow(rec["path"], int(rec["num_frames"]), float(rec["fps"]), int(rec["width"]),
                                   int(rec["height"]))  # fmt: skip
                except (TypeError, ValueError):  # a line cut by a kill: that output is re-probed below
                    continue
                rows[str(out / row.path)] = row
    return rows


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = [BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), "ETA", TimeRemainingColumn()]
    return Progress("{task.description}", *columns)


def prepare(
    root: str | Path,
    out: str | Path,
    fmt: Format = "jpeg",
    short_side: int = 256,
    keyint: int = 8,
    crf: int = 20,
    quality: int = 90,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    gap_min: int = 4,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    convert: Callable[..., IndexRow | VideoReadError] = convert_video,
    progress: bool = True,
) -> PrepareSummary:
    """Convert this shard's videos of ``root`` into ``out`` and write ``out/index.csv`` (see module doc).

    Args:
        root: source video root (any tree; Kinetics ``<split>/<class>/<id>.mp4``).
        out: destination root (``--data.root`` for training).
        fmt: ``jpeg`` (frame folders) or ``mp4`` (H.264, key frame every ``keyint`` frames).
        short_side: output short side in pixels.
        keyint: maximum key-frame interval of ``mp4`` outputs.
        crf: x264 quality of ``mp4`` outputs (lower is better; 20 is near-transparent at 256 px).
        quality: JPEG quality of ``jpeg`` outputs.
        workers: conversion processes.
        shard: ``(K, N)``: convert every N-th video starting at the K-th.
        gap_min: videos with fewer than ``gap_min + 1`` frames are converted but left out of the index.
        extensions: video suffixes to convert.
        convert: the per-video converter (tests pass one that crashes the process on a marker file).
        progress: show a rich progress bar with ETA.
    """
    _check_options(shard, short_side, keyint)
    k, n = shard
    root, out = Path(root).resolve(), Path(out).resolve()
    pairs = plan(root, out, fmt, extensions, shard)
    todo = [(src, dst) for src, dst in pairs if not dst.exists()]
    summary = PrepareSummary(skipped_done=len(pairs) - len(todo))
    ledger = _ledger(out, shard)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    options = dict(fmt=fmt, short_side=short_side, keyint=keyint, crf=crf, quality=quality)
    job = functools.partial(_job, convert=convert, **options)
    with _progress() if progress else _NoProgress() as bar, open(ledger, "a", newline="") as done:
        task = bar.add_task(f"prepare {fmt} {k}/{n}", total=len(pairs), completed=summary.skipped_done)
        for (src, _), result in isolated_map(job, todo, workers):
            _record(src, result, out, done, summary)
            bar.advance(task)
    summary.bytes_in = sum(src.stat().st_size for src, _ in pairs if src.exists())
    summary.bytes_out = sum(_size(dst) for _, dst in pairs)
    write_failures(out / ("failures.csv" if n == 1 else f"failures-{k}-of-{n}.csv"), summary.failures)
    _write_prepared_index(out, fmt, gap_min, summary)
    return summary


def _check_options(shard: tuple[int, int], short_side: int, keyint: int) -> None:
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"--shard {k}/{n}: need 0 <= K < N")
    if short_side < 2 or keyint < 1:
        raise ValueError(f"--short-side {short_side} and --keyint {keyint} must be >= 2 and >= 1")


def _record(src: Path, result, out: Path, done, summary: PrepareSummary) -> None:
    """Append a converted video to the open ledger ``done``, or log and count why it was not converted."""
    if isinstance(result, IndexRow):
        rel = Path(result.path).relative_to(out).as_posix()
        csv.writer(done).writerow((rel, result.num_frames, f"{result.fps:.6g}", result.width,
                                   result.height))  # fmt: skip
        done.flush()  # a kill loses at most the line being written
        summary.converted += 1
    else:
        reason = result.reason if isinstance(result, (VideoReadError, Crashed)) else str(result)
        log.warning("not converted: %s: %s", src, reason)
        summary.failures.append((str(src), reason))


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def advance(self, task):
        pass


def _write_prepared_index(out: Path, fmt: Format, gap_min: int, summary: PrepareSummary) -> None:
    """``out/index.csv`` from all shards' ledgers; outputs missing from them (killed run) are re-probed."""
    known = _read_ledgers(out)
    rows = []
    for path in find_sources(out, (".mp4",), videos=fmt == "mp4", folders=fmt == "jpeg"):
        row = known.get(str(path))
        if row is None:
            try:
                row = probe_video(path) if fmt == "mp4" else probe_folder(path)
            except VideoReadError as e:
                log.warning("prepared output unreadable, not indexed: %s", e)
                continue
        if row.num_frames < max(gap_min + 1, 2):
            summary.too_short += 1
            continue
        rows.append(
            IndexRow(path.relative_to(out).as_posix(), row.num_frames, row.fps, row.width, row.height)
        )
    write_index(out / "index.csv", rows)
    summary.indexed = len(rows)


def _human(num_bytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.4g} {unit}" if unit != "B" else f"{num_bytes} B"
        num_bytes /= 1000
    return ""


def main(argv: Sequence[str] | None = None) -> None:
    """``corrmae prepare``: convert, index, and print the counts and disk sizes."""
    parser = argparse.ArgumentParser(prog="corrmae prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="source video root")
    parser.add_argument("--out", required=True, help="destination root (train with --data.root OUT)")
    parser.add_argument("--format", choices=("jpeg", "mp4"), default="jpeg")
    parser.add_argument("--short-side", type=int, default=256, help="output short side (pixels)")
    parser.add_argument("--keyint", type=int, default=8, help="mp4: maximum key-frame interval (frames)")
    parser.add_argument("--crf", type=int, default=20, help="mp4: x264 quality (lower is better)")
    parser.add_argument("--quality", type=int, default=90, help="jpeg: JPEG quality")
    parser.add_argument("--workers", type=int, default=1, help="conversion processes")
    parser.add_argument(
        "--shard", default="0/1", help="K/N: convert every N-th video from the K-th (0-based)"
    )
    parser.add_argument("--gap-min", type=int, default=4, help="index only videos with > GAP_MIN frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log files)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        k, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        parser.error(f"--shard must look like K/N (e.g. 3/16), got {args.shard!r}")
    s = prepare(args.root, args.out, args.format, args.short_side, args.keyint, args.crf, args.quality,
                args.workers, (k, n), args.gap_min, progress=not args.no_progress)  # fmt: skip
    ratio = f" (x{s.bytes_out / s.bytes_in:.2f})" if s.bytes_in else ""
    print(
        f"prepared shard {k}/{n}: {s.converted} converted, {s.skipped_done} already done, "
        f"{len(s.failures)} failed (listed in failures{'' if n == 1 else f'-{k}-of-{n}'}.csv); "
        f"index {Path(args.out) / 'index.csv'}: {s.indexed} videos ({s.too_short} shorter than "
        f"{args.gap_min + 1} frames left out)\n"
        f"disk: source {_human(s.bytes_in)} -> prepared {_human(s.bytes_out)}{ratio}"
    )


if __name__ == "__main__":
    main()
