"""Trimaps: from a ground-truth alpha (training, synthetic test set) and from a binary mask (users' photos).

A trimap here is a ``uint8 (H, W)`` array with exactly three values: 0 (known background), 128 (unknown)
and 255 (known foreground), the convention of the official Composition-1k trimaps and of the DIM
evaluation code, which scores only pixels where ``trimap == 128``.

Training trimaps follow DIM-PyTorch's ``gen_trimap`` (``data_gen.py``): erode and dilate the alpha with an
elliptical kernel of random size 1-4 for a random 1-19 iterations; unknown = neither fully foreground after
erosion nor fully background after dilation. The original passes ``iterations`` positionally to OpenCV's
``cv.dilate(src, kernel, dst)``, where it lands in ``dst``, so only one iteration ever runs;
``legacy=True`` reproduces that (see ``docs/paper_notes.md`` §5).
"""

from __future__ import annotations

import cv2
import numpy as np

UNKNOWN = 128
TRIMAP_VALUES = (0, UNKNOWN, 255)


def _as_alpha_u8(alpha: np.ndarray, name: str = "alpha") -> np.ndarray:
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"float {name} must lie in [0, 1], got range [{a.min():.3g}, {a.max():.3g}]")
        return np.rint(a * 255).astype(np.uint8)
    raise ValueError(f"{name} must be uint8 in [0, 255], float in [0, 1] or bool; got dtype {a.dtype}")


def ellipse_kernel(size: int) -> np.ndarray:
    """Elliptical structuring element ``(size, size)``, as ``cv.getStructuringElement(MORPH_ELLIPSE, ...)``."""
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(size), int(size)))


def trimap_from_alpha(alpha: np.ndarray, *, kernel_size: int, iterations: int, legacy: bool = False) -> np.ndarray:
    """Trimap by eroding/dilating ``alpha`` with an elliptical kernel (DIM-PyTorch ``gen_trimap``).

    alpha: (H, W) uint8 in [0, 255] (float in [0, 1] and bool are converted).
    kernel_size: side of the elliptical kernel in pixels (1 = a single pixel, i.e. no growth).
    iterations: erosion/dilation repetitions; ``legacy=True`` runs one, as the original code does.
    Returns (H, W) uint8 in {0, 128, 255}: 255 where the eroded alpha is 255, 0 where the dilated alpha is 0.
    """
    a = _as_alpha_u8(alpha)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    kernel = ellipse_kernel(kernel_size)
    n = 1 if legacy else int(iterations)
    dilated = cv2.dilate(a, kernel, iterations=n)
    eroded = cv2.erode(a, kernel, iterations=n)
    trimap = np.full(a.shape, UNKNOWN, np.uint8)
    trimap[eroded >= 255] = 255
    trimap[dilated <= 0] = 0
    return trimap


def random_trimap(alpha: np.ndarray, rng: np.random.Generator, *, kernel_sizes: tuple[int, int] = (1, 4),
                  iterations: tuple[int, int] = (1, 19), legacy: bool = False) -> np.ndarray:
    """Training trimap with a random kernel size and iteration count (both ranges inclusive).

    The defaults are DIM-PyTorch's: ``random.choice(range(1, 5))`` and ``np.random.randint(1, 20)``.
    Draws exactly two integers from ``rng`` (kernel size, then iterations), also when ``legacy=True``.
    """
    k = int(rng.integers(kernel_sizes[0], kernel_sizes[1] + 1))
    n = int(rng.integers(iterations[0], iterations[1] + 1))
    return trimap_from_alpha(alpha, kernel_size=k, iterations=n, legacy=legacy)


def trimap_from_distance(alpha: np.ndarray, width: float) -> np.ndarray:
    """Trimap whose unknown band reaches ``width`` pixels (Euclidean) around every non-binary alpha pixel.

    A pixel is known foreground if alpha == 255 there and no pixel with alpha < 255 lies within ``width``
    pixels; known background likewise for alpha == 0; everything else (all fractional alpha, and a band
    of ``width`` pixels on both sides of every edge) is unknown; with ``width=0`` only 0 < alpha < 255 is.
    Distances are measured from pixel centres, so a hard 0/255 edge gets ``floor(width)`` unknown pixels on
    each side. This is the usual way test trimaps are made (a fixed band, not a random one).
    """
    a = _as_alpha_u8(alpha)
    if width < 0:
        raise ValueError(f"width must be >= 0 pixels, got {width}")
    fg = (a == 255).astype(np.uint8)
    bg = (a == 0).astype(np.uint8)
    # distanceTransform: distance of each non-zero pixel to the nearest zero pixel.
    d_fg = cv2.distanceTransform(fg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d_bg = cv2.distanceTransform(bg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    trimap = np.full(a.shape, UNKNOWN, np.uint8)
    trimap[(fg > 0) & (d_fg > width)] = 255
    trimap[(bg > 0) & (d_bg > width)] = 0
    return trimap


def trimap_from_mask(mask: np.ndarray, width: float) -> np.ndarray:
    """Trimap from a binary mask (e.g. a user's rough segmentation): unknown band of ``width`` px around its edge.

    mask: (H, W) bool, or uint8/float where > half of the range means foreground.
    width: pixels of unknown on each side of the mask's edge (``floor(width)`` pixels per side).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {m.shape}")
    if m.dtype != bool:
        m = m > (127 if m.dtype == np.uint8 else 0.5)
    return trimap_from_distance(m.astype(np.uint8) * 255, width)


def snap_trimap(trimap: np.ndarray) -> np.ndarray:
    """Snap every value to the nearest of 0/128/255 (for resized or JPEG-compressed trimaps).

    trimap: (H, W) or (H, W, C) (channels are averaged); uint8, or float in [0, 1] (scaled by 255).
    Ties (64, 191.5) go to 128, the unknown value. Returns (H, W) uint8.
    """
    t = np.asarray(trimap)
    if t.ndim == 3:
        t = t.mean(axis=2)
    if t.ndim != 2:
        raise ValueError(f"trimap must be (H, W) or (H, W, C), got shape {np.asarray(trimap).shape}")
    t = t.astype(np.float64)
    if np.issubdtype(np.asarray(trimap).dtype, np.floating) and t.size and t.max() <= 1.0:
        t = t * 255.0
    out = np.full(t.shape, UNKNOWN, np.uint8)
    out[t < 64] = 0
    out[t > 191.5] = 255
    return out


def unknown_fraction(trimap: np.ndarray) -> float:
    """Fraction of pixels with ``trimap == 128`` (the pixels every metric scores)."""
    t = np.asarray(trimap)
    return float((t == UNKNOWN).mean()) if t.size else 0.0
