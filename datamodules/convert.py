"""Convert one video for ``corrmae prepare``: decode once, resize the short side, write mp4 or JPEG frames.

The output is written under a hidden ``.<name>.partial`` sibling and renamed when complete, so a killed
run never leaves a half video where training (or a rerun) would take it for a finished one.
"""

import shutil
from fractions import Fraction
from pathlib import Path
from typing import Literal

from datamodules.index import IndexRow
from datamodules.readers import VideoReadError

Format = Literal["jpeg", "mp4"]


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the short side at ``short_side``, aspect kept, both rounded to even."""
    scale = short_side / min(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _partial_name(dst: Path) -> Path:
    """Hidden sibling of ``dst``: ``find_sources`` ignores it, and a rename makes it final atomically."""
    return dst.with_name(f".{dst.name}.partial")


def convert_video(
    src: Path, dst: Path, fmt: Format = "jpeg", short_side: int = 256, keyint: int = 8, crf: int = 20,
    quality: int = 90, preset: str = "veryfast",
) -> IndexRow | VideoReadError:  # fmt: skip
    """Decode ``src`` once and write ``dst`` (mp4 file or JPEG folder); returns the output's index row.

    Bad input is returned as ``VideoReadError`` (for the pool), never raised; the partial output is removed.
    """
    import av

    tmp = _partial_name(dst)
    _remove(tmp)
    try:
        if not src.is_file() or src.stat().st_size == 0:
            raise VideoReadError(src, "missing or empty file (0 bytes)")
        with av.open(str(src)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # many worker processes convert in parallel
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoReadError(src, "no frame rate in the container")
            frames = container.decode(stream)
            writer = _write_mp4 if fmt == "mp4" else _write_jpegs
            count, size = writer(frames, tmp, rate, short_side, keyint, crf, quality, preset)
        if count == 0:
            raise VideoReadError(src, "no decodable video frames")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(dst)
    except (av.FFmpegError, IndexError, OSError, ValueError, VideoReadError) as e:
        _remove(tmp)
        return e if isinstance(e, VideoReadError) else VideoReadError(src, f"{type(e).__name__}: {e}")
    return IndexRow(str(dst), count, float(rate), *size)


def _write_jpegs(frames, tmp: Path, rate, short_side, keyint, crf, quality, preset) -> tuple[int, tuple]:
    tmp.mkdir(parents=True)
    count, size = 0, None
    for frame in frames:
        size = size or output_size(frame.width, frame.height, short_side)
        image = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_image()
        image.save(tmp / f"{count:05d}.jpg", quality=quality)
        count += 1
    return count, size


def _write_mp4(frames, tmp: Path, rate, short_side, keyint, crf, quality, preset) -> tuple[int, tuple]:
    import av

    tmp.parent.mkdir(parents=True, exist_ok=True)
    count, size = 0, None
    with av.open(str(tmp), mode="w", format="mp4") as out:
        stream = None
        for frame in frames:
            if stream is None:
                size = output_size(frame.width, frame.height, short_side)
                options = {"crf": str(crf), "g": str(keyint), "keyint_min": "1", "preset": preset}
                stream = out.add_stream("libx264", rate=Fraction(rate), options=options)
                stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
                stream.thread_count = 1
            image = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="AREA")
            image.pts, image.time_base = count, 1 / Fraction(rate)  # constant rate, whatever the source's pts
            out.mux(stream.encode(image))
            count += 1
        if stream is not None:
            out.mux(stream.encode(None))  # flush the encoder's delayed frames
    return count, size


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
