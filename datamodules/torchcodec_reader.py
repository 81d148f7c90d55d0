"""torchcodec (the PyTorch project's FFmpeg decoder) as a frame-pair reader.

``VideoDecoder(seek_mode=...)`` with ONE FFmpeg thread (many DataLoader workers decode in parallel) and
``get_frames_at`` for all requested frames in one call; it sorts the indices itself, so it never seeks
backwards. With a decoded frame count from the index, ``seek_mode="approximate"`` skips the up-front scan
of the file; without one, ``exact`` scans it so that ``num_frames`` is the true count.

torchcodec loads FFmpeg's shared libraries from the system at import: without them the import fails with
``libavutil.so.5x: cannot open shared object file``, which becomes a ``BackendUnavailableError`` naming what
to install.
"""

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.reader_checks import BackendUnavailableError, VideoReadError, check_file, check_indices

INSTALL_HINT = (
    "pip install 'corrmae[torchcodec]', plus FFmpeg's shared libraries (4 to 9): on Debian 12 "
    "`apt-get install libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 "
    "libavfilter8`, with conda `conda install ffmpeg`"
)


def import_torchcodec_decoders():
    """``torchcodec.decoders``, or ``BackendUnavailableError`` naming what to install."""
    try:
        return importlib.import_module("torchcodec.decoders")
    except Exception as e:  # ImportError: not installed; RuntimeError/OSError: no FFmpeg .so
        raise BackendUnavailableError(
            f"backend 'torchcodec' cannot load ({type(e).__name__}: {str(e).splitlines()[0][:200]}): "
            + INSTALL_HINT
        ) from e


class TorchCodecReader:
    """torchcodec ``VideoDecoder`` on the CPU, NHWC uint8 output, one FFmpeg thread.

    Args:
        path: video file.
        num_frames: decoded count from the index (caps the header's; enables ``approximate`` seeking).
        seek_mode: ``exact``, ``approximate`` or None (approximate exactly when ``num_frames`` is given).
    """

    def __init__(self, path: str | Path, num_frames: int | None = None, seek_mode: str | None = None) -> None:
        decoders = import_torchcodec_decoders()
        self.path = str(path)
        check_file(Path(path))
        mode = seek_mode or ("approximate" if num_frames is not None else "exact")
        try:
            self._decoder = decoders.VideoDecoder(
                self.path, seek_mode=mode, num_ffmpeg_threads=1, dimension_order="NHWC", device="cpu"
            )
            meta = self._decoder.metadata
            reported, fps = meta.num_frames, meta.average_fps
        except Exception as e:  # torchcodec raises RuntimeError/ValueError for unreadable input
            raise VideoReadError(path, f"torchcodec cannot open it ({type(e).__name__}: {e})") from e
        if not reported or not fps:
            raise VideoReadError(path, f"torchcodec found no frame count ({reported}) or rate ({fps})")
        self.fps = float(fps)
        self.num_frames = min(reported, num_frames) if num_frames is not None else int(reported)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` as uint8 (T, H, W, 3)."""
        idx = check_indices(self.path, indices, self.num_frames)
        try:
            return self._decoder.get_frames_at(idx).data.numpy()  # (T, H, W, 3)
        except Exception as e:
            reason = f"torchcodec failed on frames {idx} ({type(e).__name__}: {e})"
            raise VideoReadError(self.path, reason) from e


def torchcodec_available() -> bool:
    """Whether torchcodec and FFmpeg's shared libraries load."""
    try:
        import_torchcodec_decoders()
    except BackendUnavailableError:
        return False
    return True
