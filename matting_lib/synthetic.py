"""The embedded matting benchmark: procedurally generated foregrounds over real photographs, in the
Adobe Composition-1k folder layout (see :mod:`matting_lib.compositing`), deterministic from a seed.

Nothing licensed can be downloaded here, so this is the default data. Foreground alphas carry the
structures that make matting hard, rendered with supersampling (coverage at ``supersample``-times the
resolution, box-averaged), so fractional alpha is physically meaningful: solid objects with anti-aliased or
defocused edges; hair and fur (hundreds of curved strands 0.25-0.75 px wide); glass, smoke and veils
(semi-transparent, textured); nets and lace with holes; motion blur. Foreground colours are textured and
sometimes drawn from the paired background's colours (the hard case for colour-based matting).
Colour and alpha are composited layer by layer in premultiplied form (Porter & Duff 1984), so
``F = P / A`` is the true foreground colour also under blur.

Backgrounds are random crops, scales, flips and colour changes of the photographs that ship inside
scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``), plus procedural textures. Test
backgrounds come from a disjoint set of source photos; test foregrounds and backgrounds from disjoint
random streams. Test trimaps are 8-bit 0/128/255 PNGs, as the official ones.

Presets (:data:`PRESETS`): ``smoke`` (seconds; for tests/CI), ``default`` (the project's default
benchmark, 1-2 minutes on one core: 200 train fg x 8 backgrounds at 320-400 px, 25 test fg x 8 backgrounds
= 200 test composites at 300-340 px, i.e. Composition-1k's 50 x 20 structure scaled down), ``large``
(Composition-1k's counts, 431 x 20 / 50 x 20, at 480-640 px, for a GPU run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .compositing import DatasetLayout, LayoutError, encode_png, sha256_file
from .trimap import trimap_from_distance
from .utils import atomic_write_bytes, atomic_write_text

GENERATOR = "matting_lib.synthetic"
FORMAT = 1


@dataclass(frozen=True)
class Preset:
    """Sizes and counts of one benchmark size. Sizes are (min, max) pixels, drawn per image and side."""

    n_train_fg: int
    bg_per_train_fg: int
    n_test_fg: int
    bg_per_test_fg: int
    train_size: tuple[int, int]
    test_size: tuple[int, int]
    bg_scale: tuple[float, float] = (0.8, 1.6)  # background side / foreground side
    trimap_width: tuple[float, float] = (6.0, 14.0)  # unknown band of the test trimaps, pixels per side
    supersample: int = 4
    jpeg_quality: int = 92


PRESETS: dict[str, Preset] = {
    "smoke": Preset(6, 2, 3, 2, (112, 144), (120, 136), trimap_width=(3.0, 6.0), supersample=3),
    "default": Preset(200, 8, 25, 8, (320, 400), (300, 340)),
    "large": Preset(431, 20, 50, 20, (480, 640), (480, 560), trimap_width=(10.0, 24.0)),
}

# Source photographs: (package, file). Train and test use disjoint photos.
TRAIN_PHOTOS = [("skimage", "astronaut.png"), ("skimage", "coffee.png"), ("skimage", "rocket.jpg"),
                ("skimage", "hubble_deep_field.jpg"), ("skimage", "ihc.png"), ("skimage", "retina.jpg"),
                ("sklearn", "flower.jpg"), ("skimage", "camera.png"), ("skimage", "brick.png"),
                ("skimage", "grass.png"), ("skimage", "gravel.png"), ("skimage", "moon.png"),
                ("skimage", "coins.png"), ("skimage", "cell.png")]
TEST_PHOTOS = [("skimage", "chelsea.png"), ("skimage", "motorcycle_left.png"), ("skimage", "motorcycle_right.png"),
               ("sklearn", "china.jpg"), ("skimage", "clock_motion.png"), ("skimage", "page.png"),
               ("skimage", "text.png")]

# Independent random streams: (seed, stream, index) -> generator. Test streams never meet train streams.
_STREAMS = {"train-fg": 1, "train-bg": 2, "test-fg": 3, "test-bg": 4, "test-trimap": 5}


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], index])


@lru_cache(maxsize=None)
def _photo(package: str, name: str) -> np.ndarray:
    """A bundled photograph as uint8 RGB (greyscale ones replicated to 3 channels)."""
    if package == "skimage":
        import skimage.data
        folder = Path(skimage.data.__file__).parent
    else:
        import sklearn.datasets
        folder = Path(sklearn.datasets.__file__).parent / "images"
    from PIL import Image  # PIL, not OpenCV: libpng warns about one bundled PNG's colour profile

    try:
        with Image.open(folder / name) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except FileNotFoundError:
        raise FileNotFoundError(f"bundled photograph {folder / name} is missing; reinstall {package} "
                                "(pip install --force-reinstall scikit-image scikit-learn)") from None


# ----------------------------------------------------------------------------------------------- textures
def fractal_noise(rng: np.random.Generator, h: int, w: int, cells: float = 4.0, octaves: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Smooth value noise, float32 (h, w) in [0, 1]: ``cells`` lattice cells across the longer side,
    doubling per octave (bicubic-upsampled random lattices)."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2 ** o
        gh, gw = max(2, int(round(c * h / max(h, w))) + 1), max(2, int(round(c * w / max(h, w))) + 1)
        out += amp * cv2.resize(rng.random((gh, gw), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 255)]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


def _photo_crop(rng: np.random.Generator, photos: list, h: int, w: int) -> np.ndarray:
    """Random crop/scale/flip/colour change of a source photograph, float32 (h, w, 3) in [0, 1]."""
    src = _photo(*photos[rng.integers(len(photos))])
    sh, sw = src.shape[:2]
    frac = rng.uniform(0.35, 1.0)
    ch = int(min(sh, sw * h / w) * frac)
    cw = max(8, int(ch * w / h))
    ch = max(8, ch)
    y, x = rng.integers(0, sh - ch + 1), rng.integers(0, sw - cw + 1)
    crop = src[y:y + ch, x:x + cw]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_CUBIC
    img = cv2.resize(crop, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.1:
        img = img[::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV).astype(np.float32)
    grey = float(hsv[..., 1].mean()) < 8
    if grey:  # colourise greyscale photographs with a random tint
        hsv[..., 0], hsv[..., 1] = rng.uniform(0, 180), rng.uniform(40, 160)
    else:
        hsv[..., 0] = (hsv[..., 0] + rng.normal(0, 12)) % 180
        hsv[..., 1] *= rng.uniform(0.6, 1.3)
    hsv[..., 2] = 255 * (hsv[..., 2] / 255) ** rng.uniform(0.7, 1.4)
    out = cv2.cvtColor(np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return out.astype(np.float32) / 255


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Procedural texture, float32 (h, w, 3) in [0, 1]: noise palettes, bokeh, waves or cells."""
    kind = rng.integers(4)
    c1, c2, c3 = (_random_colour(rng) for _ in range(3))
    if kind == 0:  # coloured fractal noise
        n = fractal_noise(rng, h, w, rng.uniform(2, 8), 5)[..., None]
        m = fractal_noise(rng, h, w, rng.uniform(1, 4), 3)[..., None]
        return (n * c1 + (1 - n) * c2) * (0.6 + 0.4 * m) + 0.2 * m * c3
    if kind == 1:  # bokeh: out-of-focus light discs over a gradient, as behind many portraits
        yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img = yy * c1 + (1 - yy) * c2 + np.zeros((1, w, 1), np.float32)
        for _ in range(int(rng.integers(8, 30))):
            r = rng.uniform(0.03, 0.15) * max(h, w)
            disc = np.zeros((h, w), np.float32)
            cv2.circle(disc, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), int(r), 1.0, -1, cv2.LINE_AA)
            disc = cv2.GaussianBlur(disc, (0, 0), r * 0.15 + 1)[..., None]
            img = img * (1 - 0.5 * disc) + 0.5 * disc * (_random_colour(rng) * 0.5 + 0.5)
        return img
    if kind == 2:  # warped waves / stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        warp = fractal_noise(rng, h, w, 3, 3) * rng.uniform(5, 40)
        t = rng.uniform(0, np.pi)
        s = np.sin((xx * np.cos(t) + yy * np.sin(t) + warp) * 2 * np.pi / rng.uniform(6, 40))[..., None]
        return 0.5 * (1 + s) * c1 + 0.5 * (1 - s) * c2
    # cells: nearest-seed regions with per-cell colours (Voronoi), shaded by noise
    seeds = np.ones((h, w), np.uint8)
    n = int(rng.integers(10, 60))
    seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    palette = np.stack([c1, c2, c3, _random_colour(rng)])[rng.integers(0, 4, labels.max() + 1)]
    shade = 0.7 + 0.3 * fractal_noise(rng, h, w, 6, 3)[..., None]
    return palette[labels] * shade


def make_background(rng: np.random.Generator, h: int, w: int, photos: list) -> np.ndarray:
    """One background, uint8 (h, w, 3) RGB: a photograph (55 %), a texture (25 %) or both blended."""
    u = rng.random()
    if u < 0.55:
        img = _photo_crop(rng, photos, h, w)
    elif u < 0.8:
        img = _texture(rng, h, w)
    else:
        m = fractal_noise(rng, h, w, 2, 3)[..., None]
        img = m * _photo_crop(rng, photos, h, w) + (1 - m) * _texture(rng, h, w)
    if rng.random() < 0.3:  # a defocused background, as in most portrait photographs
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 4.0))
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- foregrounds
class _Canvas:
    """Coverage rendered at ``ss`` times the resolution and box-averaged down (supersampling)."""

    def __init__(self, h: int, w: int, ss: int):
        self.h, self.w, self.ss = h, w, ss

    def new(self) -> np.ndarray:
        return np.zeros((self.h * self.ss, self.w * self.ss), np.uint8)

    def pts(self, xy: np.ndarray) -> np.ndarray:
        """1x-pixel coordinates (x, y) -> fixed-point supersampled coordinates for cv2 (shift=4)."""
        return np.rint((np.asarray(xy) * self.ss + (self.ss - 1) / 2) * 16).astype(np.int32)

    def fill(self, canvas: np.ndarray, polys: list[np.ndarray], value: int = 255) -> np.ndarray:
        cv2.fillPoly(canvas, [self.pts(p) for p in polys], value, cv2.LINE_AA, shift=4)
        return canvas

    def lines(self, canvas: np.ndarray, polylines: list[np.ndarray], thickness: int, value: int = 255) -> None:
        if polylines:
            cv2.polylines(canvas, [self.pts(p) for p in polylines], False, value, thickness, cv2.LINE_AA, shift=4)

    def down(self, canvas: np.ndarray) -> np.ndarray:
        """Coverage in [0, 1], float32 (h, w): the exact box average of each ss x ss block."""
        return cv2.resize(canvas.astype(np.float32) / 255, (self.w, self.h), interpolation=cv2.INTER_AREA)


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, *, aspect: float = 1.0,
          rough: float = 0.15, n: int = 240) -> np.ndarray:
    """Closed smooth random outline (n, 2) in 1x pixels: a Fourier-perturbed, rotated ellipse."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in range(2, 8):
        rad += rng.normal(0, rough / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    rad = np.clip(rad, 0.3, None)
    x, y = r * rad * np.cos(t) * aspect, r * rad * np.sin(t)
    a = rng.uniform(0, np.pi)
    return np.stack([cx + x * np.cos(a) - y * np.sin(a), cy + x * np.sin(a) + y * np.cos(a)], 1)


def _strands(rng: np.random.Generator, roots: np.ndarray, angles: np.ndarray, lengths: np.ndarray, *,
             curl: float, gravity: float, steps: int = 24) -> np.ndarray:
    """Curved strands (N, steps + 1, 2): random-walk heading, bent towards +y (down) by ``gravity``."""
    n = len(roots)
    ang = angles[:, None] + np.cumsum(rng.normal(0, curl, (n, steps)), axis=1)
    t = np.linspace(0, 1, steps)[None]
    down = np.angle(np.exp(1j * (np.pi / 2 - ang)))  # signed angle to "down"
    ang = ang + gravity * t * down
    step = (lengths / steps)[:, None, None]
    d = np.stack([np.cos(ang), np.sin(ang)], -1) * step
    return np.concatenate([roots[:, None], roots[:, None] + np.cumsum(d, axis=1)], axis=1)


def _outline_normals(poly: np.ndarray) -> np.ndarray:
    """Outward unit normals of a closed outline (for counter-clockwise or clockwise outlines)."""
    tang = np.roll(poly, -1, 0) - np.roll(poly, 1, 0)
    nrm = np.stack([tang[:, 1], -tang[:, 0]], 1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
    if np.mean(np.sum((poly - poly.mean(0)) * nrm, 1)) < 0:
        nrm = -nrm
    return nrm


def _threads(rng: np.random.Generator, cv: _Canvas, spacing: float, width: float, *, angle: float,
             warp: float, two_way: bool = True) -> np.ndarray:
    """Coverage (h, w) of a warped grid of threads ``width`` px wide every ``spacing`` px (nets, veils)."""
    hs, ws = cv.h * cv.ss, cv.w * cv.ss
    yy = (np.arange(hs, dtype=np.float32)[:, None] + 0.5) / cv.ss
    xx = (np.arange(ws, dtype=np.float32)[None, :] + 0.5) / cv.ss
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    period, half, ss = np.float32(spacing), np.float32(width / 2), np.float32(cv.ss)

    def on_thread(coord: np.ndarray) -> np.ndarray:  # sub-sample coverage of the nearest thread, in [0, 1]
        dist = np.abs((coord / period + np.float32(0.5)) % 1 - np.float32(0.5)) * period
        return np.clip((half - dist) * ss + np.float32(0.5), 0, 1)

    wx = cv2.resize((fractal_noise(rng, cv.h, cv.w, 3, 2) - 0.5) * np.float32(warp), (ws, hs))
    cov = on_thread(xx * c + yy * s + wx)
    if two_way:
        wy = cv2.resize((fractal_noise(rng, cv.h, cv.w, 3, 2) - 0.5) * np.float32(warp), (ws, hs))
        cov = np.maximum(cov, on_thread(yy * c - xx * s + wy))
    return cv2.resize(cov, (cv.w, cv.h), interpolation=cv2.INTER_AREA)


def _colour_field(rng: np.random.Generator, h: int, w: int, base: np.ndarray, photos: list) -> np.ndarray:
    """Textured colour around ``base`` (3,) in [0, 1], float32 (h, w, 3)."""
    u = rng.random()
    if u < 0.6:
        n = fractal_noise(rng, h, w, rng.uniform(2, 16), 4)[..., None] - 0.5
        field = base * (1 + rng.uniform(0.2, 0.8) * n) + rng.normal(0, 0.03, 3) * n
    elif u < 0.8:
        other = np.clip(base + rng.normal(0, 0.25, 3), 0, 1)
        s = _texture(rng, h, w).mean(axis=2, keepdims=True)
        field = s * base + (1 - s) * other
    else:
        p = _photo_crop(rng, photos, h, w)
        field = 0.5 * p + 0.5 * base * p.mean(axis=2, keepdims=True) * 2
    return np.clip(field, 0, 1).astype(np.float32)


class _Layers:
    """Premultiplied 'over' compositing of (coverage, colour) layers, bottom to top."""

    def __init__(self, h: int, w: int):
        self.p = np.zeros((h, w, 3), np.float32)
        self.a = np.zeros((h, w), np.float32)
        self.fallback: np.ndarray | None = None

    def over(self, a: np.ndarray, colour: np.ndarray) -> None:
        a = np.clip(a, 0, 1).astype(np.float32)
        self.p = a[..., None] * colour + (1 - a[..., None]) * self.p
        self.a = a + (1 - a) * self.a
        if self.fallback is None:
            self.fallback = colour

    def blur(self, kernel: np.ndarray | None = None, sigma: float = 0.0, mix: np.ndarray | None = None) -> None:
        """Motion blur (``kernel``) or defocus (Gaussian ``sigma``), optionally spatially mixed by ``mix``."""
        def f(x):
            return cv2.filter2D(x, -1, kernel) if kernel is not None else cv2.GaussianBlur(x, (0, 0), sigma)
        p, a = f(self.p), f(self.a)
        if mix is not None:
            p, a = mix[..., None] * p + (1 - mix[..., None]) * self.p, mix * a + (1 - mix) * self.a
        self.p, self.a = p, a

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        eps = 1e-3  # where alpha -> 0 the colour falls back smoothly to the bottom layer's texture
        fg = (self.p + eps * self.fallback) / (self.a[..., None] + eps)
        return (np.clip(np.rint(fg * 255), 0, 255).astype(np.uint8),
                np.clip(np.rint(self.a * 255), 0, 255).astype(np.uint8))


def _hair_colour(rng: np.random.Generator) -> np.ndarray:
    palette = np.array([[0.05, 0.04, 0.03], [0.25, 0.15, 0.08], [0.45, 0.3, 0.15], [0.85, 0.7, 0.45],
                        [0.6, 0.25, 0.1], [0.75, 0.75, 0.75], [0.95, 0.93, 0.9]], np.float32)
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)


def _fg_solid(rng, cv, lay, base, photos):
    for _ in range(int(rng.integers(1, 4))):
        c = cv.new()
        r = rng.uniform(0.15, 0.4) * min(cv.h, cv.w)
        cx, cy = rng.uniform(0.2, 0.8) * cv.w, rng.uniform(0.2, 0.9) * cv.h
        shape = rng.integers(3)
        if shape == 0:
            cv.fill(c, [_blob(rng, cx, cy, r, aspect=rng.uniform(0.5, 1.5), rough=rng.uniform(0, 0.4))])
        elif shape == 1:  # a ring: an object with a hole
            cv.fill(c, [_blob(rng, cx, cy, r, rough=0.1)])
            cv.fill(c, [_blob(rng, cx, cy, r * rng.uniform(0.3, 0.6), rough=0.1)], 0)
        else:  # a rotated rounded box (a product shot)
            box = cv2.boxPoints(((cx, cy), (r * rng.uniform(1, 2), r * rng.uniform(1, 2)), rng.uniform(0, 180)))
            cv.fill(c, [box])
            c = cv2.dilate(c, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cv.ss * 5, cv.ss * 5)))
        lay.over(cv.down(c), _colour_field(rng, cv.h, cv.w, np.clip(base + rng.normal(0, 0.15, 3), 0, 1), photos))
    if rng.random() < 0.5:  # defocused edges, sharpness varying across the image
        lay.blur(sigma=rng.uniform(0.8, 3.0), mix=fractal_noise(rng, cv.h, cv.w, 2, 2))


def _person(rng, cv) -> tuple[np.ndarray, np.ndarray, float]:
    """Head and shoulders reaching the bottom edge: (head outline, body outline, head radius)."""
    h, w = cv.h, cv.w
    rh = rng.uniform(0.12, 0.2) * min(h, w) * 1.4
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.45) * h
    head = _blob(rng, cx, cy, rh, aspect=rng.uniform(0.75, 0.9), rough=0.05)
    body = _blob(rng, cx, h * 1.05, rng.uniform(0.35, 0.5) * w, aspect=1.0, rough=0.1)
    return head, body, rh


def _fg_hair(rng, cv, lay, base, photos):
    head, body, rh = _person(rng, cv)
    c = cv.fill(cv.fill(cv.new(), [body]), [head])
    skin = np.array([0.85, 0.65, 0.5], np.float32) * rng.uniform(0.45, 1.1)
    lay.over(cv.down(c), _colour_field(rng, cv.h, cv.w, np.clip(skin, 0, 1), photos))
    hair = cv.new()
    centre = head.mean(0)
    mass = _blob(rng, centre[0], centre[1] - rh * 0.15, rh * rng.uniform(1.05, 1.25), rough=0.12)
    cv.fill(hair, [mass])
    nrm = _outline_normals(mass)
    upper = np.where(nrm[:, 1] < rng.uniform(0.2, 0.7))[0]  # roots on the top and sides of the hair mass
    n = int(rng.integers(250, 700))
    idx = rng.choice(upper, n)
    roots = mass[idx] - nrm[idx] * rng.uniform(0, 0.15 * rh, (n, 1))
    angles = np.arctan2(nrm[idx, 1], nrm[idx, 0]) + rng.normal(0, 0.35, n)
    long_hair = rng.random() < 0.6
    lengths = rng.uniform(0.2, 1.0, n) * rh * (rng.uniform(1.0, 2.5) if long_hair else rng.uniform(0.3, 0.7))
    strands = _strands(rng, roots, angles, lengths, curl=rng.uniform(0.02, 0.25), gravity=rng.uniform(0.3, 1.2)
                       if long_hair else rng.uniform(0, 0.3))
    width = rng.choice([1, 1, 1, 2], n)
    for t in (1, 2):
        cv.lines(hair, list(strands[width == t]), thickness=t)
    m = int(rng.integers(5, 30))  # flyaways: long isolated strands, the hardest pixels
    fly = _strands(rng, mass[rng.choice(upper, m)], rng.uniform(-np.pi, 0, m), rng.uniform(0.8, 2.0, m) * rh,
                   curl=rng.uniform(0.05, 0.2), gravity=0.1, steps=40)
    cv.lines(hair, list(fly), thickness=1)
    lay.over(cv.down(hair), _colour_field(rng, cv.h, cv.w, _hair_colour(rng), photos))


def _fg_fur(rng, cv, lay, base, photos):
    r = rng.uniform(0.22, 0.35) * min(cv.h, cv.w)
    outline = _blob(rng, rng.uniform(0.35, 0.65) * cv.w, rng.uniform(0.4, 0.7) * cv.h, r,
                    aspect=rng.uniform(0.7, 1.5), rough=0.2, n=480)
    c = cv.fill(cv.new(), [outline])
    nrm = _outline_normals(outline)
    n = int(len(outline) * rng.uniform(2, 5))
    idx = rng.integers(0, len(outline), n)
    roots = outline[idx] - nrm[idx] * rng.uniform(0, 4, (n, 1))
    ang = np.arctan2(nrm[idx, 1], nrm[idx, 0]) + rng.normal(0, 0.5, n)
    strands = _strands(rng, roots, ang, rng.uniform(2, 6 + 0.05 * r, n), curl=rng.uniform(0.05, 0.3),
                       gravity=rng.uniform(0, 0.3), steps=8)
    cv.lines(c, list(strands), thickness=1)
    lay.over(cv.down(c), _colour_field(rng, cv.h, cv.w, base, photos))


def _fg_glass(rng, cv, lay, base, photos):
    r = rng.uniform(0.2, 0.35) * min(cv.h, cv.w)
    cx, cy = rng.uniform(0.3, 0.7) * cv.w, rng.uniform(0.35, 0.65) * cv.h
    cov = cv.down(cv.fill(cv.new(), [_blob(rng, cx, cy, r, aspect=rng.uniform(0.5, 1.0), rough=0.05)]))
    dist = cv2.distanceTransform((cov > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.exp(-dist / rng.uniform(1.5, 5))
    body = rng.uniform(0.05, 0.35) + rng.uniform(0.05, 0.25) * fractal_noise(rng, cv.h, cv.w, 3, 3)
    tint = np.clip(0.7 + 0.3 * _random_colour(rng), 0, 1)
    lay.over(cov * np.clip(body + 0.7 * rim, 0, 1), _colour_field(rng, cv.h, cv.w, tint * 0.9, photos))
    if rng.random() < 0.5:  # liquid in the lower part, more opaque
        level = cy + rng.uniform(-0.3, 0.5) * r
        yy = np.arange(cv.h, dtype=np.float32)[:, None] + np.zeros((1, cv.w), np.float32)
        liquid = cov * np.clip(yy - level + 0.5, 0, 1) * rng.uniform(0.4, 0.85)
        lay.over(liquid, _colour_field(rng, cv.h, cv.w, _random_colour(rng), photos))
    spec = cv.new()
    for _ in range(int(rng.integers(1, 4))):  # specular highlights
        cv.fill(spec, [_blob(rng, cx + rng.uniform(-0.5, 0.5) * r, cy + rng.uniform(-0.5, 0.5) * r,
                             r * rng.uniform(0.04, 0.12), aspect=rng.uniform(0.2, 0.6), rough=0)])
    lay.over(cv2.GaussianBlur(cv.down(spec), (0, 0), 0.8) * rng.uniform(0.6, 1.0),
             np.full((cv.h, cv.w, 3), 0.97, np.float32))


def _fg_smoke(rng, cv, lay, base, photos):
    h, w = cv.h, cv.w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = rng.uniform(0.3, 0.7) * w + (fractal_noise(rng, h, w, 2, 2) - 0.5) * w * 0.5
    spread = (0.1 + 0.3 * (1 - yy / h)) * w  # a plume widening upwards
    env = np.exp(-((xx - cx) / spread) ** 2) * np.clip(1.2 - yy / h * rng.uniform(0.2, 0.9), 0, 1)
    n = fractal_noise(rng, h, w, rng.uniform(3, 8), 6, 0.6)
    ridges = (1 - np.abs(2 * fractal_noise(rng, h, w, rng.uniform(4, 10), 5) - 1)) ** 3  # wispy filaments
    density = np.clip((n - rng.uniform(0.25, 0.45)) * 2.5, 0, 1) * 0.7 + 0.3 * ridges
    colour = np.clip(np.array([0.85, 0.85, 0.88]) * rng.uniform(0.4, 1.1) + rng.normal(0, 0.03, 3), 0, 1)
    lay.over(np.clip(density * env * rng.uniform(0.6, 1.0), 0, 1),
             _colour_field(rng, h, w, colour.astype(np.float32), photos))


def _fg_veil(rng, cv, lay, base, photos):
    if rng.random() < 0.7:
        head, body, _ = _person(rng, cv)
        lay.over(cv.down(cv.fill(cv.fill(cv.new(), [body]), [head])), _colour_field(rng, cv.h, cv.w, base, photos))
    region = _blob(rng, rng.uniform(0.3, 0.7) * cv.w, rng.uniform(0.3, 0.7) * cv.h,
                   rng.uniform(0.3, 0.5) * min(cv.h, cv.w), aspect=rng.uniform(0.6, 1.6), rough=0.3)
    cov = cv.down(cv.fill(cv.new(), [region]))
    weave = _threads(rng, cv, rng.uniform(1.2, 3.5), rng.uniform(0.2, 0.8), angle=rng.uniform(0, np.pi),
                     warp=rng.uniform(2, 12))
    folds = 0.75 + 0.25 * np.sin(fractal_noise(rng, cv.h, cv.w, 2, 2) * rng.uniform(6, 20))
    fabric = np.clip(_random_colour(rng) * 0.4 + rng.choice([0.55, 0.05]), 0, 1)
    lay.over(cov * np.clip(weave * folds * rng.uniform(0.7, 1.3), 0, 1),
             _colour_field(rng, cv.h, cv.w, fabric.astype(np.float32), photos) * folds[..., None])


def _fg_net(rng, cv, lay, base, photos):
    if rng.random() < 0.4:  # something caught in the net
        c = cv.fill(cv.new(), [_blob(rng, cv.w / 2, cv.h / 2, 0.25 * min(cv.h, cv.w), rough=0.05)])
        lay.over(cv.down(c), _colour_field(rng, cv.h, cv.w, _random_colour(rng), photos))
    region = cv.down(cv.fill(cv.new(), [_blob(rng, cv.w / 2, cv.h / 2, rng.uniform(0.35, 0.6) * min(cv.h, cv.w),
                                             aspect=rng.uniform(0.7, 1.4), rough=0.2)]))
    net = _threads(rng, cv, rng.uniform(6, 25) * min(cv.h, cv.w) / 320, rng.uniform(0.4, 2.5),
                   angle=rng.choice([0, np.pi / 4]) + rng.normal(0, 0.2), warp=rng.uniform(2, 20))
    lay.over(region * net, _colour_field(rng, cv.h, cv.w, base, photos))


def _fg_lace(rng, cv, lay, base, photos):
    h, w = cv.h, cv.w
    c = cv.new()
    step = rng.uniform(14, 30) * min(h, w) / 320
    for y in np.arange(step / 2, h, step):  # motifs: rings and petals on a lattice
        for x in np.arange(step / 2 + (y // step % 2) * step / 2, w, step):
            r = step * rng.uniform(0.2, 0.4)
            cv2.circle(c, tuple(int(v) for v in cv.pts([x, y])), int(r * cv.ss * 16), 255,
                       max(1, int(cv.ss * rng.uniform(0.3, 1.2))), cv2.LINE_AA, 4)
            if rng.random() < 0.5:
                for k in range(int(rng.integers(4, 7))):
                    a = 2 * np.pi * k / 6
                    pet = _blob(rng, x + np.cos(a) * r * 0.6, y + np.sin(a) * r * 0.6, r * 0.25, aspect=0.5, rough=0)
                    cv.fill(c, [pet])
    mesh = _threads(rng, cv, rng.uniform(2.5, 5), rng.uniform(0.2, 0.5), angle=np.pi / 3, warp=2)
    t = np.linspace(0, w, 200)  # a scalloped band
    top = rng.uniform(0.1, 0.3) * h + np.abs(np.sin(t / step * np.pi)) * step * 0.5
    bottom = rng.uniform(0.65, 0.95) * h - np.abs(np.sin(t / step * np.pi + 1)) * step * 0.5
    band = cv.down(cv.fill(cv.new(), [np.concatenate([np.stack([t, top], 1), np.stack([t, bottom], 1)[::-1]])]))
    colour = np.full(3, rng.choice([0.95, 0.9, 0.08]), np.float32) * (1 + rng.normal(0, 0.03, 3))
    lay.over(band * np.maximum(cv.down(c), mesh), _colour_field(rng, h, w, np.clip(colour, 0, 1), photos))


FOREGROUND_KINDS = {"solid": (_fg_solid, 0.14), "hair": (_fg_hair, 0.22), "fur": (_fg_fur, 0.12),
                    "glass": (_fg_glass, 0.1), "smoke": (_fg_smoke, 0.1), "veil": (_fg_veil, 0.1),
                    "net": (_fg_net, 0.12), "lace": (_fg_lace, 0.1)}


def make_foreground(rng: np.random.Generator, h: int, w: int, photos: list, *, supersample: int = 4,
                    kind: str | None = None, near_colour: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One foreground: (fg uint8 (h, w, 3) RGB, alpha uint8 (h, w), kind).

    kind: one of :data:`FOREGROUND_KINDS` or None (random, weighted). near_colour: an RGB colour in [0, 1]
    to draw the foreground's base colour close to (e.g. its background's mean); 15 % of all foregrounds
    also get a motion blur.
    """
    names = list(FOREGROUND_KINDS)
    if kind is None:
        weights = np.array([FOREGROUND_KINDS[k][1] for k in names])
        kind = names[rng.choice(len(names), p=weights / weights.sum())]
    elif kind not in FOREGROUND_KINDS:
        raise ValueError(f"unknown foreground kind {kind!r}; valid: {', '.join(names)}")
    base = _random_colour(rng) if near_colour is None else np.clip(near_colour + rng.normal(0, 0.05, 3), 0, 1)
    cv, lay = _Canvas(h, w, supersample), _Layers(h, w)
    FOREGROUND_KINDS[kind][0](rng, cv, lay, base.astype(np.float32), photos)
    if rng.random() < 0.15:  # motion blur of the whole foreground (premultiplied, so colours stay right)
        length = rng.uniform(4, 20) * min(h, w) / 320
        k = int(np.ceil(length)) | 1
        kernel = np.zeros((k, k), np.float32)
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * (length - 1) / 2
        c = (k - 1) / 2
        cv2.line(kernel, tuple(np.rint((c - d) * 16).astype(int)), tuple(np.rint((c + d) * 16).astype(int)),
                 1.0, 1, cv2.LINE_AA, 4)
        lay.blur(kernel=kernel / kernel.sum())
    fg, alpha = lay.result()
    return fg, alpha, kind


# ----------------------------------------------------------------------------------------------- dataset
def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _make_item(args: tuple[int, str, str, int]) -> tuple[str, list[str], dict[str, bytes]]:
    """Everything belonging to foreground ``i`` of ``split``: (fg name, its K bg names, {relpath: bytes})."""
    seed, preset_name, split, i = args
    p = PRESETS[preset_name]
    layout = DatasetLayout(Path("."))
    photos = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    k = p.bg_per_train_fg if split == "train" else p.bg_per_test_fg
    lo, hi = p.train_size if split == "train" else p.test_size
    rng = _rng(seed, f"{split}-fg", i)
    h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
    files: dict[str, bytes] = {}
    bg_names, bg_mean = [], None
    for b in range(k):
        j = i * k + b
        brng = _rng(seed, f"{split}-bg", j)
        bh, bw = (max(16, int(round(side * brng.uniform(*p.bg_scale)))) for side in (h, w))
        bg = make_background(brng, bh, bw, photos)
        name = f"syn_train2014_{j:06d}.jpg" if split == "train" else f"syn_voc_{j:06d}.jpg"
        files[str(layout.bg_path(split, name))] = _encode_jpeg(bg, p.jpeg_quality)
        bg_names.append(name)
        bg_mean = bg.reshape(-1, 3).mean(0) / 255 if bg_mean is None else bg_mean
    near = bg_mean if rng.random() < 0.3 else None  # foreground colour close to its background's
    fg, alpha, kind = make_foreground(rng, h, w, photos, supersample=p.supersample, near_colour=near)
    fg_name = f"{split}-{i:04d}-{kind}.png"
    fg_dir = layout.train_fg_dirs[0] if split == "train" else layout.test_fg_dir
    alpha_dir = layout.train_alpha_dirs[0] if split == "train" else layout.test_alpha_dir
    files[str(fg_dir / fg_name)] = encode_png(fg)
    files[str(alpha_dir / fg_name)] = encode_png(alpha)
    if split == "test":
        width = _rng(seed, "test-trimap", i).uniform(*p.trimap_width)
        trimap = encode_png(trimap_from_distance(alpha, width))
        for b in range(k):
            files[str(layout.trimap_path(fg_name, b))] = trimap
    return fg_name, bg_names, files


def _spec(seed: int, preset: str) -> dict:
    spec = {"generator": GENERATOR, "format": FORMAT, "seed": seed, "preset": preset,
            "params": dataclasses.asdict(PRESETS[preset]),
            "sources": {"train": [f"{a}:{b}" for a, b in TRAIN_PHOTOS], "test": [f"{a}:{b}" for a, b in TEST_PHOTOS]}}
    return json.loads(json.dumps(spec))  # tuples -> lists, as read back from manifest.json


def _owned(out: Path) -> list[Path]:
    """Top-level entries this generator (and build_test_set) writes, removed on overwrite."""
    return [out / n for n in ("Combined_Dataset", "train2014", "VOCdevkit", "Composition-1k", "manifest.json")]


def verify_dataset(out_dir: str | os.PathLike) -> list[str]:
    """Files of a generated dataset whose SHA-256 differs from its manifest (missing ones included)."""
    out = Path(out_dir)
    man = json.loads((out / "manifest.json").read_text())
    return [rel for rel, digest in man.get("files", {}).items()
            if not (out / rel).is_file() or sha256_file(out / rel) != digest]


def generate_dataset(out_dir: str | os.PathLike, *, seed: int = 0, preset: str = "smoke", overwrite: bool = False,
                     progress: bool = True, workers: int = 1) -> Path:
    """Generate the synthetic benchmark into ``out_dir`` (Adobe layout) and return ``out_dir``.

    Same (seed, preset) -> byte-identical files (on the same library versions). ``manifest.json`` records
    the parameters and the SHA-256 of every file. A complete folder with the same parameters whose files
    all verify is left alone (returns at once); an interrupted one is completed (files are written
    atomically, identical ones skipped). A folder generated with other parameters is refused unless
    ``overwrite=True``; a non-empty folder without a synthetic manifest (e.g. real data) is always refused.
    workers: processes (each foreground is generated from its own seed, so the output does not depend on it).
    """
    from tqdm.auto import tqdm

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    out = Path(out_dir)
    spec = _spec(int(seed), preset)
    man_path = out / "manifest.json"
    if out.is_dir() and any(out.iterdir()):
        try:
            old = json.loads(man_path.read_text()) if man_path.is_file() else None
        except json.JSONDecodeError:
            old = {"generator": GENERATOR}  # our own manifest, half-written by a crash before atomic writes
        if old is None or old.get("generator") != GENERATOR:
            raise LayoutError(f"{out} is not empty and holds no synthetic-dataset manifest.json (real data?); "
                              "refusing to write into it. Choose another folder or empty it.")
        same = {k: old.get(k) for k in spec} == spec
        if same and old.get("complete") and not verify_dataset(out):
            return out
        if not same:
            if not overwrite:
                diff = ", ".join(f"{k}: {old.get(k)!r} -> {spec[k]!r}" for k in ("seed", "preset", "format")
                                 if old.get(k) != spec[k]) or "generator parameters changed"
                raise LayoutError(f"{out} holds a synthetic dataset generated with other parameters ({diff}); "
                                  "pass overwrite=True to replace it, or choose another folder.")
            for path in _owned(out):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(man_path, json.dumps({**spec, "complete": False, "files": {}}, indent=1))
    p = PRESETS[preset]
    jobs = [(int(seed), preset, "train", i) for i in range(p.n_train_fg)]
    jobs += [(int(seed), preset, "test", i) for i in range(p.n_test_fg)]
    digests: dict[str, str] = {}
    names = {"train": ([], []), "test": ([], [])}

    def write(rel: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if not ((out / rel).is_file() and sha256_file(out / rel) == digest):
            atomic_write_bytes(out / rel, data)
        digests[rel] = digest

    pool = None
    if workers > 1:
        import multiprocessing as mp
        pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
    try:
        results = pool.imap(_make_item, jobs) if pool else map(_make_item, jobs)
        for job, (fg_name, bg_names, files) in tqdm(zip(jobs, results), total=len(jobs), disable=not progress,
                                                    desc=f"synthetic {preset} (seed {seed})", unit="fg"):
            names[job[2]][0].append(fg_name)
            names[job[2]][1].extend(bg_names)
            for rel, data in files.items():
                write(rel, data)
    finally:
        if pool:
            pool.close()
            pool.join()
    layout = DatasetLayout(Path("."))
    for split, (fgs, bgs) in names.items():
        write(str(layout.names_file(split, "fg")), ("\n".join(fgs) + "\n").encode())
        write(str(layout.names_file(split, "bg")), ("\n".join(bgs) + "\n").encode())
    versions = {"opencv": cv2.__version__, "numpy": np.__version__}
    atomic_write_text(man_path, json.dumps({**spec, "versions": versions, "complete": True,
                                            "files": dict(sorted(digests.items()))}, indent=1))
    return out
