"""Random-access frame readers: torchcodec, decord, PyAV (portable fallback) for video files; frame folders.

Every reader fetches all requested frames in ONE ``read(indices)`` call and never decodes the whole video.
Readers are cheap to open and hold a native decoder, so open one per sample inside the DataLoader worker
(decord readers are not picklable and deadlock when shared across ``fork``: decord#210, decord#294).
Every failure to open or decode becomes a ``VideoReadError`` naming the file and the reason.
"""

import functools
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from datamodules.frame_folder import FrameFolderReader
from datamodules.reader_checks import (
    IMAGE_EXTENSIONS,
    BackendUnavailableError,
    VideoReader,
    VideoReadError,
    check_file,
    check_indices,
    import_backend,
)
from datamodules.torchcodec_reader import INSTALL_HINT, TorchCodecReader, torchcodec_available

__all__ = [  # the readers' public face: the shared errors and checks are defined in reader_checks
    "IMAGE_EXTENSIONS",
    "Backend",
    "BackendUnavailableError",
    "DecordReader",
    "FrameFolderReader",
    "PyAVReader",
    "TorchCodecReader",
    "VideoReadError",
    "VideoReader",
    "auto_video_backend",
    "decord_available",
    "open_reader",
]
log = logging.getLogger(__name__)
Backend = Literal["auto", "torchcodec", "decord", "pyav", "frames"]


# ---------------------------------------------------------------- decord
class DecordReader:
    """decord ``VideoReader``, one decoding thread; ``get_batch`` decodes the requested frames in one pass.

    ``num_frames`` comes from the container unless given (pass the index's decoded count: decord#373 spins
    forever when the container over-reports the length and an index falls near the end).
    """

    def __init__(self, path: str | Path, num_frames: int | None = None, num_threads: int = 1) -> None:
        decord = import_backend(
            "decord", "pip install decord (Linux x86_64 wheels only), or use backend='pyav'"
        )
        self.path = str(path)
        check_file(Path(path))
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
            reported = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
        except Exception as e:  # decord raises its own DECORDError / RuntimeError for any bad input
            raise VideoReadError(path, f"decord cannot open it ({type(e).__name__}: {e})") from e
        self.num_frames = min(reported, num_frames) if num_frames is not None else reported

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as uint8 (T, H, W, 3)."""
        idx = check_indices(self.path, indices, self.num_frames)
        try:
            return self._vr.get_batch(idx).asnumpy()
        except Exception as e:
            raise VideoReadError(self.path, f"decord failed on frames {idx} ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------- PyAV
class PyAVReader:
    """PyAV (FFmpeg) reader: seek to the key frame before each target, then decode forward to it.

    Frame ``i`` is the frame whose timestamp is ``i / fps`` after the stream start (constant frame rate,
    as in Kinetics/YouTube mp4s). One decoder thread, as a DataLoader worker should use.

    A later target at most ``seek_threshold`` frames ahead is reached by decoding forward instead of
    seeking: with x264's default 250-frame GOP (most Kinetics files) a second seek lands on the same key
    frame and decodes it all again (measured: ~1.5x slower pairs with threshold 32 than 64 at GOP 250).
    """

    def __init__(self, path: str | Path, num_frames: int | None = None, seek_threshold: int = 64) -> None:
        av = import_backend("av", "pip install av")
        self.path, self._seek_threshold = str(path), seek_threshold
        check_file(Path(path))
        try:
            self._container = av.open(self.path)
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError, OSError) as e:
            raise VideoReadError(path, f"PyAV cannot open it ({type(e).__name__}: {e})") from e
        self._stream.thread_count = 1
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            raise VideoReadError(path, "no frame rate in the container")
        self.fps = float(rate)
        self._start = self._stream.start_time or 0
        self.num_frames = (
            num_frames if num_frames is not None else (self._stream.frames or self._count_frames())
        )

    def _count_frames(self) -> int:
        """Decode once to count frames (only when the container does not report a count)."""
        n = sum(1 for _ in self._decode_from(0))
        return n

    def _frame_index(self, frame) -> int:
        t = float((frame.pts - self._start) * self._stream.time_base) if frame.pts is not None else frame.time
        return round(t * self.fps)

    def _decode_from(self, target: int):
        """Seek to the last key frame at or before frame ``target`` and yield decoded frames from there."""
        pts = self._start + int(target / self.fps / self._stream.time_base)
        self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        yield from self._container.decode(self._stream)

    def _walk_to(self, frames, target: int) -> tuple[np.ndarray | None, int | None]:
        """Decode forward to frame ``target``: (its RGB array or None, index of the last decoded frame)."""
        for frame in frames:
            current = self._frame_index(frame)
            if current == target:
                return frame.to_ndarray(format="rgb24"), current
            if current > target:
                return None, current
        return None, None  # the stream ended first: read() reports the target as undecodable

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as uint8 (T, H, W, 3)."""
        import av

        idx = check_indices(self.path, indices, self.num_frames)
        found: dict[int, np.ndarray] = {}
        targets, frames, current = sorted(set(idx)), iter(()), None
        try:
            for target in targets:
                # Re-seek unless the target is a short forward walk from the decoder's current position.
                if current is None or not 0 < target - current <= self._seek_threshold:
                    frames = self._decode_from(target)
                image, current = self._walk_to(frames, target)
                if image is None and current is not None:  # the seek overshot: decode from the first frame
                    frames = self._decode_from(0)
                    image, current = self._walk_to(frames, target)
                if image is not None:
                    found[target] = image
        except av.FFmpegError as e:
            raise VideoReadError(self.path, f"PyAV failed decoding ({type(e).__name__}: {e})") from e
        missing = [i for i in targets if i not in found]
        if missing:
            raise VideoReadError(self.path, f"frames {missing} could not be decoded (truncated or corrupt?)")
        return np.stack([found[i] for i in idx])


# ---------------------------------------------------------------- factory
def decord_available() -> bool:
    """Whether decord imports (it has wheels for Linux x86_64 only)."""
    try:
        importlib.import_module("decord")
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def auto_video_backend() -> str:
    """What ``auto`` uses for video files.

    torchcodec (maintained, fastest in ``make bench``) when it and FFmpeg's libraries load, else decord,
    else PyAV. The fallback is logged once per process.
    """
    if torchcodec_available():
        return "torchcodec"
    fallback = "decord" if decord_available() else "pyav"
    log.info("backend auto: torchcodec unavailable, using %s (for torchcodec: %s)", fallback, INSTALL_HINT)
    return fallback


def open_reader(
    path: str | Path, backend: Backend = "auto", num_frames: int | None = None, fps: float | None = None
) -> VideoReader:
    """Open a reader for a video file or a frame folder.

    Args:
        path: a video file, or a directory of frame images.
        backend: ``auto`` = frames for directories, else ``auto_video_backend()``.
        num_frames: the decoded frame count from the index, if known (caps what the reader will access).
        fps: frame (file) rate of a frame folder; ignored for video files, whose container gives it.

    Returns:
        A ``VideoReader``.
    """
    path = Path(path)
    if backend == "auto":
        backend = "frames" if path.is_dir() else auto_video_backend()
    if backend == "frames":
        if not path.is_dir():
            raise VideoReadError(path, "backend 'frames' needs a directory of images")
        reader = FrameFolderReader(path, fps=fps or 30.0)
        if num_frames is not None:
            reader.num_frames = min(reader.num_frames, num_frames)
        return reader
    if path.is_dir():
        raise VideoReadError(path, f"backend {backend!r} reads video files, but this is a directory")
    if backend == "torchcodec":
        return TorchCodecReader(path, num_frames=num_frames)
    if backend == "decord":
        return DecordReader(path, num_frames=num_frames)
    if backend == "pyav":
        return PyAVReader(path, num_frames=num_frames)
    raise ValueError(f"unknown backend {backend!r}; expected auto, torchcodec, decord, pyav or frames")
