"""Procedurally generated moving-object videos: demo data, smoke tests and a tiny DAVIS-style benchmark.

A scene is a textured background that pans smoothly (camera motion) plus ``num_objects`` objects, each
with its own procedural texture (stripes, checkerboard, value noise, radial gradient or dots) fixed to
the object so that it moves, rotates and scales with it. Objects move on smooth bouncing trajectories,
change scale over time and occlude each other in a fixed depth order. Everything is a pure function of
the seed (``numpy.random.Generator``), so a scene can be regenerated exactly, with its ground-truth
instance masks.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np

Texture = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) local coords (H, W) -> RGB float (H, W, 3)
TEXTURE_KINDS = ("stripes", "checker", "noise", "gradient", "dots")


# ---------------------------------------------------------------- textures
def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated RGB colours in [0, 1] (a texture must show structure, not a flat colour)."""
    a = rng.uniform(0.0, 1.0, 3)
    b = np.clip(1.0 - a + rng.uniform(-0.2, 0.2, 3), 0.0, 1.0)
    return a, b


def _bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Sample ``grid`` (g, g, 3) at fractional, wrapped coordinates ``gy, gx`` (H, W) -> (H, W, 3)."""
    g = grid.shape[0]
    y0, x0 = np.floor(gy).astype(np.int64), np.floor(gx).astype(np.int64)
    fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]  # (H, W, 1)
    y0, x0 = y0 % g, x0 % g
    y1, x1 = (y0 + 1) % g, (x0 + 1) % g
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def make_texture(kind: str, rng: np.random.Generator) -> Texture:
    """A procedural texture of the given kind with random colours and frequency.

    Args:
        kind: one of ``TEXTURE_KINDS``.
        rng: source of the texture's parameters.

    Returns:
        A function mapping local coordinates ``(u, v)`` (object frame, roughly [-1, 1]) to RGB in [0, 1].
    """
    a, b = _colour_pair(rng)
    freq = rng.uniform(2.0, 5.0)
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        return lambda u, v: np.where((np.sin(np.pi * freq * (c * u + s * v)) > 0)[..., None], a, b)
    if kind == "checker":
        return lambda u, v: np.where(((np.floor(freq * u) + np.floor(freq * v)) % 2 == 0)[..., None], a, b)
    if kind == "noise":
        grid = rng.uniform(0.0, 1.0, (8, 8, 3))
        return lambda u, v: _bilinear(grid, (v + 1) * 3.5, (u + 1) * 3.5)
    if kind == "gradient":
        return lambda u, v: a + (b - a) * np.clip(np.sqrt(u**2 + v**2), 0, 1)[..., None]
    if kind == "dots":
        return lambda u, v: np.where(
            ((np.mod(freq * u, 1) - 0.5) ** 2 + (np.mod(freq * v, 1) - 0.5) ** 2 < 0.09)[..., None], a, b
        )
    raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")


# ---------------------------------------------------------------- motion
def _bounce(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` into ``[lo, hi]`` (a triangle wave), so trajectories stay smooth and in view."""
    span = hi - lo
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _object_tracks(rng: np.random.Generator, num_frames: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-frame centre, radii and angle of one object (each array has length T)."""
    h, w = size
    t = np.arange(num_frames, dtype=np.float64)
    radius_px = rng.uniform(0.12, 0.22) * min(h, w)
    aspect = rng.uniform(0.6, 1.4)
    # Scale change: a slow sinusoid of +-30 % so objects visibly grow and shrink over a clip.
    scale = 1.0 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(40, 90) + rng.uniform(0, 2 * np.pi))
    speed = rng.uniform(0.3, 1.5)
    heading = rng.uniform(0, 2 * np.pi)
    wobble = rng.uniform(0, 0.1 * min(h, w))
    phase = rng.uniform(0, 2 * np.pi)
    cx = rng.uniform(0, w) + speed * np.cos(heading) * t + wobble * np.sin(t / 15 + phase)
    cy = rng.uniform(0, h) + speed * np.sin(heading) * t + wobble * np.cos(t / 17 + phase)
    return {
        "cx": _bounce(cx, 0.1 * w, 0.9 * w),
        "cy": _bounce(cy, 0.1 * h, 0.9 * h),
        "ry": radius_px * scale * aspect,
        "rx": radius_px * scale / aspect,
        "angle": rng.uniform(0, 2 * np.pi) + rng.uniform(-0.03, 0.03) * t,
    }


# ---------------------------------------------------------------- rendering
def _background(
    rng: np.random.Generator, num_frames: int, size: tuple[int, int]
) -> Callable[[int], np.ndarray]:
    """A noise-plus-stripes background that pans smoothly; returns ``frame_index -> (H, W, 3)`` float."""
    h, w = size
    grid = rng.uniform(0.15, 0.85, (12, 12, 3))
    stripes = make_texture("stripes", rng)
    vel = rng.uniform(-0.6, 0.6, 2)  # pixels per frame (camera pan)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cell = max(h, w) / 4.0  # about 4 noise cells across the frame

    def frame(i: int) -> np.ndarray:
        y, x = yy + vel[0] * i, xx + vel[1] * i
        noise = _bilinear(grid, y / cell, x / cell)
        return 0.8 * noise + 0.2 * stripes(x / cell, y / cell)

    return frame


def render_scene(
    seed: int, num_frames: int, size: tuple[int, int] = (64, 64), num_objects: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Render a deterministic scene of textured moving objects over a panning textured background.

    Objects are drawn back to front (object 1 is the deepest, object ``num_objects`` the front-most), so
    the mask holds, per pixel, the id of the visible object and 0 for background.

    Args:
        seed: scene seed; the same seed always gives identical frames and masks.
        num_frames: T, the number of frames.
        size: (H, W) in pixels.
        num_objects: K, the number of objects (1..255).

    Returns:
        frames: uint8 (T, H, W, 3) RGB.
        masks: uint8 (T, H, W) with object ids 0..K (0 = background).
    """
    if num_frames < 1 or min(size) < 4 or not 1 <= num_objects <= 255:
        raise ValueError(f"bad scene spec: num_frames={num_frames}, size={size}, num_objects={num_objects}")
    h, w = size
    rng = np.random.default_rng(seed)
    background = _background(rng, num_frames, size)
    kinds = rng.permutation(np.resize(np.array(TEXTURE_KINDS), max(num_objects, len(TEXTURE_KINDS))))
    exponents = rng.choice([1.0, 2.0, 6.0], size=num_objects)  # diamond, ellipse, rounded box
    objects = [
        (make_texture(str(kinds[k]), rng), _object_tracks(rng, num_frames, size)) for k in range(num_objects)
    ]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, h, w), dtype=np.uint8)
    for i in range(num_frames):
        img = background(i)  # (H, W, 3)
        for k, (texture, tr) in enumerate(objects):
            c, s = np.cos(tr["angle"][i]), np.sin(tr["angle"][i])
            dx, dy = xx - tr["cx"][i], yy - tr["cy"][i]
            u = (c * dx + s * dy) / tr["rx"][i]  # object-frame coordinates: the texture moves with it
            v = (-s * dx + c * dy) / tr["ry"][i]
            inside = np.abs(u) ** exponents[k] + np.abs(v) ** exponents[k] <= 1.0  # (H, W)
            img = np.where(inside[..., None], texture(u, v), img)
            masks[i][inside] = k + 1
        frames[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames, masks


# ---------------------------------------------------------------- encoding
def write_video(path: str | Path, frames: np.ndarray, fps: int = 30, crf: int = 18, gop: int = 30) -> Path:
    """Encode RGB frames as an H.264 (yuv420p) mp4 with PyAV.

    Args:
        path: output file (parent directories are created).
        frames: uint8 (T, H, W, 3); H and W must be even (a yuv420p requirement).
        fps: constant frame rate.
        crf: x264 quality (lower = better; 18 is visually lossless).
        gop: maximum key-frame interval, which bounds the cost of a random seek.

    Returns:
        The written path.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {h}x{w} for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return path


def write_synthetic_videos(
    out_dir: str | Path, num_videos: int, num_frames: int, size: tuple[int, int] = (128, 160), seed: int = 0
) -> list[Path]:
    """Render ``num_videos`` scenes (2-5 objects each) and write them as ``synthetic_XXXX.mp4``.

    Args:
        out_dir: output directory.
        num_videos: how many videos.
        num_frames: frames per video.
        size: (H, W), both even.
        seed: base seed; video ``i`` uses a scene seed derived from ``(seed, i)``.

    Returns:
        The written paths, in order.
    """
    out_dir = Path(out_dir)
    paths = []
    for i in range(num_videos):
        scene_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        num_objects = 2 + scene_seed % 4
        frames, _ = render_scene(scene_seed, num_frames, size, num_objects)
        paths.append(write_video(out_dir / f"synthetic_{i:04d}.mp4", frames))
    return paths
