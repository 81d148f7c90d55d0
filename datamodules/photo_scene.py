"""Moving scenes built from real photographs: a virtual camera over one photo, blob cut-outs from others.

A scene is a pure function of its ``SceneSpec`` (drawn from a seed by ``draw_scene``) and the photographs:

- the background is one photograph seen through a virtual camera that pans, zooms and rotates slightly on
  smooth (sinusoidal) paths, so every frame is a different warp of the same real image;
- each object is a smooth star-convex blob (a circle with low-order harmonics on its radius) cut out of a
  different photograph, with its own smooth trajectory, scale change and spin; the texture is fixed to the
  object frame, so it moves, turns and grows with it;
- objects are composited back to front in a drawn depth order (ids are 1..K, depth is a separate
  permutation), and the mask holds the id of the front-most labelled object at each pixel, 0 elsewhere;
- ``hard`` scenes move faster, drift in lighting (per-channel gain and a travelling brightness gradient) and
  add an unlabelled look-alike: a second cut-out of the same photo region with a similar shape, which is
  background (0) wherever it is visible.

Edges are not anti-aliased, so the masks are exact: mask == k exactly where object k's texture is shown.
"""

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Path2:
    """A smooth 1-D path ``mean + amp * sin(omega * t + phase)`` (units: pixels, radians or scale)."""

    mean: float
    amp: float
    omega: float
    phase: float

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """The path at time(s) ``t`` (frames)."""
        return self.mean + self.amp * np.sin(self.omega * t + self.phase)


@dataclass(frozen=True)
class Blob:
    """One cut-out: texture source, shape and motion (its texture spans object coordinates [-1.5, 1.5])."""

    photo: str
    crop: tuple[float, float, float]  # texture window in the photo: (centre y, centre x, half side), pixels
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) of radius harmonics 2, 3, 4
    radius: float  # base radius in frame pixels
    aspect: float
    cx: Path2
    cy: Path2
    scale: Path2
    angle0: float
    spin: float  # radians per frame
    label: int  # DAVIS object id, 0 for the unlabelled look-alike


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a scene besides the photographs' pixels."""

    size: tuple[int, int]
    num_frames: int
    background: str
    cam_y: Path2
    cam_x: Path2
    zoom: Path2  # photo pixels per frame pixel
    roll: Path2  # camera rotation, radians
    blobs: tuple[Blob, ...]  # in depth order: blobs[0] is the deepest
    lighting: tuple[float, ...] = field(default=())  # hard: (gain amp, omega, phase, grad amp, grad omega)


def _path(rng: np.random.Generator, mean: float, amp: float, speed: float) -> Path2:
    """A sinusoid whose peak speed is about ``speed`` units per frame (period >= 24 frames)."""
    omega = min(speed / max(amp, 1e-6), 2 * np.pi / 24)
    return Path2(float(mean), float(amp), float(omega), float(rng.uniform(0, 2 * np.pi)))


def _texture_window(rng: np.random.Generator, photo: np.ndarray) -> tuple[float, float, float]:
    """A square window of the photo with visible structure (retina and Hubble are mostly dark)."""
    h, w = photo.shape[:2]
    best, best_std = None, -1.0
    for _ in range(8):
        half = rng.uniform(0.12, 0.3) * min(h, w)
        cy, cx = rng.uniform(half, h - half), rng.uniform(half, w - half)
        patch = photo[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
        std = float(patch.std())
        if std > best_std:
            best, best_std = (float(cy), float(cx), float(half)), std
        if std > 0.12:
            break
    return best


def _blob(rng, photo_name, photo, size, hard: bool, label: int, window=None) -> Blob:
    h, w = size
    speed = rng.uniform(2.0, 4.0) if hard else rng.uniform(0.4, 1.4)
    return Blob(
        photo=photo_name,
        crop=window if window is not None else _texture_window(rng, photo),
        harmonics=tuple(
            (float(rng.uniform(0, 0.22 / k)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 4)
        ),
        radius=float(rng.uniform(0.13, 0.22) * min(h, w)),
        aspect=float(rng.uniform(0.7, 1.4)),
        cx=_path(rng, rng.uniform(0.3, 0.7) * w, rng.uniform(0.1, 0.3) * w, speed),
        cy=_path(rng, rng.uniform(0.3, 0.7) * h, rng.uniform(0.1, 0.3) * h, speed),
        scale=_path(rng, 1.0, rng.uniform(0.1, 0.3), 0.03),
        angle0=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-1, 1) * (0.08 if hard else 0.03)),
        label=label,
    )


def draw_scene(
    rng: np.random.Generator,
    photos: dict[str, np.ndarray],
    background: str,
    num_objects: int,
    num_frames: int,
    size: tuple[int, int],
    hard: bool = False,
) -> SceneSpec:
    """Draw a scene over ``background`` with ``num_objects`` labelled cut-outs from the other photos.

    Labelled objects take distinct photos where there are enough; ``hard`` adds a look-alike of object 1.
    """
    if background not in photos or len(photos) < 2 or not 1 <= num_objects <= 255:
        raise ValueError(f"need the background {background!r} and another photo, 1..255 objects")
    h, w = size
    ph, pw = photos[background].shape[:2]
    zoom_mean = rng.uniform(0.45, 0.7) * min(ph / h, pw / w)  # the view spans ~half the photo
    zoom = _path(rng, zoom_mean, rng.uniform(0.05, 0.15) * zoom_mean, 0.01 * zoom_mean)
    roll = _path(rng, 0.0, rng.uniform(0.03, 0.12 if hard else 0.06), 0.01)
    # Keep the most zoomed-out view at the largest roll inside the photo: its half-extent bounds the centre.
    zmax, rmax = zoom.mean + zoom.amp, abs(roll.amp)
    reach = (
        zmax * (h / 2 * np.cos(rmax) + w / 2 * np.sin(rmax)),
        zmax * (w / 2 * np.cos(rmax) + h / 2 * np.sin(rmax)),
    )
    pan = rng.uniform(2.0, 5.0) if hard else rng.uniform(0.5, 1.5)  # photo pixels per frame
    cams = []
    for extent, half_view in zip((ph, pw), reach):
        room = max(extent / 2 - half_view, 0.0)
        cams.append(_path(rng, extent / 2 + rng.uniform(-0.3, 0.3) * room, rng.uniform(0.5, 1.0) * room, pan))
    others = sorted(n for n in photos if n != background)
    picks = rng.permutation(np.resize(rng.permutation(others), num_objects))
    blobs = [_blob(rng, str(p), photos[str(p)], size, hard, k + 1) for k, p in enumerate(picks)]
    if hard:  # an unlabelled look-alike of object 1: same photo region (shifted a little), similar shape
        twin = blobs[0]
        cy, cx, half = twin.crop
        shift = rng.uniform(-0.15, 0.15, 2) * half
        look = _blob(rng, twin.photo, photos[twin.photo], size, hard, 0, (cy + shift[0], cx + shift[1], half))
        blobs.append(
            replace(look, harmonics=twin.harmonics, radius=twin.radius * float(rng.uniform(0.85, 1.15)))
        )
    order = rng.permutation(len(blobs))
    lighting = ()
    if hard:
        lighting = (float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.1, 0.25)), float(rng.uniform(0, 6.28)),
                    float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.05, 0.15)))  # fmt: skip
    return SceneSpec(size, num_frames, background, cams[0], cams[1], zoom, roll,
                     tuple(blobs[i] for i in order), lighting)  # fmt: skip


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H, W, C) at fractional ``y, x`` (h, w), clamped at the border -> (h, w, C)."""
    hh, ww = image.shape[:2]
    y = np.clip(y, 0, hh - 1.0)
    x = np.clip(x, 0, ww - 1.0)
    y0 = np.minimum(np.floor(y).astype(np.int64), hh - 2 if hh > 1 else 0)
    x0 = np.minimum(np.floor(x).astype(np.int64), ww - 2 if ww > 1 else 0)
    y1, x1 = np.minimum(y0 + 1, hh - 1), np.minimum(x0 + 1, ww - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]  # (h, w, 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _blob_layer(blob: Blob, photo: np.ndarray, t: int, yy: np.ndarray, xx: np.ndarray):
    """(inside (h, w) bool, texture (h, w, 3)) of one cut-out at frame ``t``."""
    tt = np.float64(t)
    s = float(blob.scale(tt))
    a = blob.angle0 + blob.spin * t
    c, sn = np.cos(a), np.sin(a)
    dx, dy = xx - float(blob.cx(tt)), yy - float(blob.cy(tt))
    u = (c * dx + sn * dy) / (blob.radius * s / blob.aspect)  # object frame: the texture rides along
    v = (-sn * dx + c * dy) / (blob.radius * s * blob.aspect)
    phi = np.arctan2(v, u)
    rho = 1.0 + sum(amp * np.cos(k * phi + ph) for k, (amp, ph) in zip((2, 3, 4), blob.harmonics))
    inside = u**2 + v**2 <= rho**2
    cy, cx, half = blob.crop
    texture = bilinear(photo, cy + v * half / 1.5, cx + u * half / 1.5)
    return inside, texture


def _lighting(spec: SceneSpec, t: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Hard scenes: per-channel gain drift times a brightness gradient whose direction turns; (h, w, 3)."""
    gain_amp, omega, phase, grad_amp, grad_omega = spec.lighting
    gain = 1.0 + gain_amp * np.sin(omega * t + phase + np.array([0.0, 0.7, 1.4]))  # warm/cool drift
    h, w = spec.size
    d = grad_omega * t + phase
    ramp = ((xx - w / 2) * np.cos(d) + (yy - h / 2) * np.sin(d)) / max(h, w)  # in [-0.7, 0.7]
    return gain * (1.0 + grad_amp * ramp)[..., None]


def render(
    spec: SceneSpec, photos: dict[str, np.ndarray], return_layers: bool = False
) -> tuple[np.ndarray, ...]:
    """Render a scene.

    Args:
        spec: the scene (``draw_scene``).
        photos: name -> float RGB image (H, W, 3) in [0, 1].
        return_layers: also return every cut-out's coverage before occlusion.

    Returns:
        frames uint8 (T, h, w, 3), masks uint8 (T, h, w) with ids 0..K, and with ``return_layers`` a bool
        array (T, len(spec.blobs), h, w) in depth order (deepest first).
    """
    h, w = spec.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ry, rx = yy - h / 2, xx - w / 2  # frame coordinates about the optical centre
    frames = np.empty((spec.num_frames, h, w, 3), dtype=np.uint8)
    masks = np.zeros((spec.num_frames, h, w), dtype=np.uint8)
    layers = np.zeros((spec.num_frames, len(spec.blobs), h, w), dtype=bool)
    bg = photos[spec.background]
    for t in range(spec.num_frames):
        tt = np.float64(t)
        z, r = float(spec.zoom(tt)), float(spec.roll(tt))
        py = float(spec.cam_y(tt)) + z * (np.sin(r) * rx + np.cos(r) * ry)  # (h, w) photo coordinates
        px = float(spec.cam_x(tt)) + z * (np.cos(r) * rx - np.sin(r) * ry)
        img = bilinear(bg, py, px)
        for j, blob in enumerate(spec.blobs):  # back to front: later blobs occlude earlier ones
            inside, texture = _blob_layer(blob, photos[blob.photo], t, yy, xx)
            img = np.where(inside[..., None], texture, img)
            masks[t][inside] = blob.label
            layers[t, j] = inside
        if spec.lighting:
            img = img * _lighting(spec, t, xx, yy)
        frames[t] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return (frames, masks, layers) if return_layers else (frames, masks)
