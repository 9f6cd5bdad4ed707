"""Foregrounds of the embedded synthetic benchmark (:mod:`matting_lib.data.synthetic`): colour and alpha.

Alphas carry the structures that make matting hard (:data:`FOREGROUND_KINDS`), rendered with
supersampling (coverage at ``supersample``-times the resolution, box-averaged), so fractional alpha is
physically meaningful: solid objects with anti-aliased or defocused edges; hair and fur (hundreds of curved
strands 0.25-0.75 px wide); glass, smoke and veils (semi-transparent, textured); nets and lace with holes;
motion blur. Foreground colours are textured and sometimes drawn from the paired background's colours (the
hard case for colour-based matting). Colour and alpha are composited layer by layer in premultiplied form
(Porter & Duff 1984), so ``F = P / A`` is the true foreground colour also under blur.
"""

from __future__ import annotations

import cv2
import numpy as np

from matting_lib.data.synthetic.textures import colour_field, fractal_noise, random_colour


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
        lay.over(cv.down(c), colour_field(rng, cv.h, cv.w, np.clip(base + rng.normal(0, 0.15, 3), 0, 1), photos))
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
    lay.over(cv.down(c), colour_field(rng, cv.h, cv.w, np.clip(skin, 0, 1), photos))
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
    lay.over(cv.down(hair), colour_field(rng, cv.h, cv.w, _hair_colour(rng), photos))


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
    lay.over(cv.down(c), colour_field(rng, cv.h, cv.w, base, photos))


def _fg_glass(rng, cv, lay, base, photos):
    r = rng.uniform(0.2, 0.35) * min(cv.h, cv.w)
    cx, cy = rng.uniform(0.3, 0.7) * cv.w, rng.uniform(0.35, 0.65) * cv.h
    cov = cv.down(cv.fill(cv.new(), [_blob(rng, cx, cy, r, aspect=rng.uniform(0.5, 1.0), rough=0.05)]))
    dist = cv2.distanceTransform((cov > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.exp(-dist / rng.uniform(1.5, 5))
    body = rng.uniform(0.05, 0.35) + rng.uniform(0.05, 0.25) * fractal_noise(rng, cv.h, cv.w, 3, 3)
    tint = np.clip(0.7 + 0.3 * random_colour(rng), 0, 1)
    lay.over(cov * np.clip(body + 0.7 * rim, 0, 1), colour_field(rng, cv.h, cv.w, tint * 0.9, photos))
    if rng.random() < 0.5:  # liquid in the lower part, more opaque
        level = cy + rng.uniform(-0.3, 0.5) * r
        yy = np.arange(cv.h, dtype=np.float32)[:, None] + np.zeros((1, cv.w), np.float32)
        liquid = cov * np.clip(yy - level + 0.5, 0, 1) * rng.uniform(0.4, 0.85)
        lay.over(liquid, colour_field(rng, cv.h, cv.w, random_colour(rng), photos))
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
             colour_field(rng, h, w, colour.astype(np.float32), photos))


def _fg_veil(rng, cv, lay, base, photos):
    if rng.random() < 0.7:
        head, body, _ = _person(rng, cv)
        lay.over(cv.down(cv.fill(cv.fill(cv.new(), [body]), [head])), colour_field(rng, cv.h, cv.w, base, photos))
    region = _blob(rng, rng.uniform(0.3, 0.7) * cv.w, rng.uniform(0.3, 0.7) * cv.h,
                   rng.uniform(0.3, 0.5) * min(cv.h, cv.w), aspect=rng.uniform(0.6, 1.6), rough=0.3)
    cov = cv.down(cv.fill(cv.new(), [region]))
    weave = _threads(rng, cv, rng.uniform(1.2, 3.5), rng.uniform(0.2, 0.8), angle=rng.uniform(0, np.pi),
                     warp=rng.uniform(2, 12))
    folds = 0.75 + 0.25 * np.sin(fractal_noise(rng, cv.h, cv.w, 2, 2) * rng.uniform(6, 20))
    fabric = np.clip(random_colour(rng) * 0.4 + rng.choice([0.55, 0.05]), 0, 1)
    lay.over(cov * np.clip(weave * folds * rng.uniform(0.7, 1.3), 0, 1),
             colour_field(rng, cv.h, cv.w, fabric.astype(np.float32), photos) * folds[..., None])


def _fg_net(rng, cv, lay, base, photos):
    if rng.random() < 0.4:  # something caught in the net
        c = cv.fill(cv.new(), [_blob(rng, cv.w / 2, cv.h / 2, 0.25 * min(cv.h, cv.w), rough=0.05)])
        lay.over(cv.down(c), colour_field(rng, cv.h, cv.w, random_colour(rng), photos))
    region = cv.down(cv.fill(cv.new(), [_blob(rng, cv.w / 2, cv.h / 2, rng.uniform(0.35, 0.6) * min(cv.h, cv.w),
                                             aspect=rng.uniform(0.7, 1.4), rough=0.2)]))
    net = _threads(rng, cv, rng.uniform(6, 25) * min(cv.h, cv.w) / 320, rng.uniform(0.4, 2.5),
                   angle=rng.choice([0, np.pi / 4]) + rng.normal(0, 0.2), warp=rng.uniform(2, 20))
    lay.over(region * net, colour_field(rng, cv.h, cv.w, base, photos))


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
    lay.over(band * np.maximum(cv.down(c), mesh), colour_field(rng, h, w, np.clip(colour, 0, 1), photos))


FOREGROUND_KINDS = {"solid": (_fg_solid, 0.14), "hair": (_fg_hair, 0.22), "fur": (_fg_fur, 0.12),
                    "glass": (_fg_glass, 0.1), "smoke": (_fg_smoke, 0.1), "veil": (_fg_veil, 0.1),
                    "net": (_fg_net, 0.12), "lace": (_fg_lace, 0.1)}


def make_foreground(
    rng: np.random.Generator,
    h: int,
    w: int,
    photos: list,
    *,
    supersample: int = 4,
    kind: str | None = None,
    near_colour: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
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
    base = random_colour(rng) if near_colour is None else np.clip(near_colour + rng.normal(0, 0.05, 3), 0, 1)
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
