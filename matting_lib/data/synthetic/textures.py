"""Textures of the embedded synthetic benchmark (:mod:`matting_lib.data.synthetic`): backgrounds and the
colour fields of foregrounds.

Backgrounds (:func:`make_background`) are random crops, scales, flips and colour changes of the photographs
that ship inside scikit-image (``skimage.data``), scikit-learn (``load_sample_images``) and matplotlib (its
``sample_data``), plus procedural
textures (fractal noise, bokeh, warped waves, cells), sometimes blended and defocused. Which photographs
(train and test use disjoint ones) is decided by the caller (:data:`matting_lib.data.synthetic.TRAIN_PHOTOS`,
``TEST_PHOTOS``). Everything draws from the ``numpy`` generator passed in, so output is deterministic.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np


@cache
def _photo(package: str, name: str) -> np.ndarray:
    """A bundled photograph as uint8 RGB (greyscale ones replicated to 3 channels)."""
    if package == "skimage":
        # imported only when backgrounds are generated (large sample images)
        import skimage.data
        folder = Path(skimage.data.__file__).parent
    elif package == "matplotlib":
        # imported only when backgrounds are generated
        import matplotlib
        folder = Path(matplotlib.get_data_path()) / "sample_data"
    else:
        # imported only when backgrounds are generated (large sample images)
        import sklearn.datasets
        folder = Path(sklearn.datasets.__file__).parent / "images"
    # imported only when backgrounds are generated (large sample images)
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


def random_colour(rng: np.random.Generator) -> np.ndarray:
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
    c1, c2, c3 = (random_colour(rng) for _ in range(3))
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
            img = img * (1 - 0.5 * disc) + 0.5 * disc * (random_colour(rng) * 0.5 + 0.5)
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
    palette = np.stack([c1, c2, c3, random_colour(rng)])[rng.integers(0, 4, labels.max() + 1)]
    shade = 0.7 + 0.3 * fractal_noise(rng, h, w, 6, 3)[..., None]
    return palette[labels] * shade


def make_background(rng: np.random.Generator, h: int, w: int, photos: list, *,
                    photos_only: bool = False) -> np.ndarray:
    """One background, uint8 (h, w, 3) RGB: a photograph (55 %), a texture (25 %) or both blended; with
    ``photos_only`` always a photograph (cropped, scaled, flipped, recoloured, sometimes defocused)."""
    u = 0.0 if photos_only else rng.random()
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


def colour_field(rng: np.random.Generator, h: int, w: int, base: np.ndarray, photos: list) -> np.ndarray:
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
