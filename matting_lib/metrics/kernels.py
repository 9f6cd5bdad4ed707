"""Numerical kernels behind :mod:`matting_lib.metrics` (no input checking here; see that package).

Every function takes already-validated arrays:

- ``pred``, ``gt``: (H, W), either ``uint8`` (0..255, the values an 8-bit PNG holds) or ``float64`` in [0, 1];
- ``trimap``: (H, W) ``uint8`` with values 0 / 128 / 255;
- ``mask``: (H, W) bool, ``trimap == 128`` (the unknown pixels), with at least one True (except
  :func:`spkd_metrics`, whose whole-image SAD is defined without one).

They return the *raw* sums of the official MATLAB code (no /1000); :mod:`matting_lib.metrics` applies the units.
The official definitions are those of Deep Image Matting's evaluation code (Xu et al., CVPR 2017:
``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m`` with ``gaussgradient.m``,
``compute_connectivity_error.m``); the ``spkd_*`` functions follow ``utils.py``/``test.py`` of the SPKD
code (Yoon, Park & Cho, IEEE SPL 2020). Written from those definitions, not copied.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

F32 = np.float32
N_LEVELS = 10  # Conn thresholds 0.1, 0.2, ..., 1.0 (step 0.1, as hleval.m calls it)

# ------------------------------------------------------------------------------------------ tables
#: single(a)/255 for every 8-bit value, exactly as MATLAB computes it (float32 division).
ALPHA32 = np.arange(256, dtype=F32) / F32(255)
#: Official thresholds 0:0.1:1 as float32. MATLAB's colon values and k/10 round to the same float32.
THRESH32 = (np.arange(N_LEVELS + 1) / N_LEVELS).astype(F32)
#: Smallest 8-bit value passing threshold k (index k = 1..10) in single precision: 26, 51, 77, 102,
#: 128, 153, 179, 204, 230, 255. 153 passes 0.6 (in float64, 153/255 < 0.1*6 and it would not).
THRESH_U8 = np.array([0] + [int(np.argmax(ALPHA32 >= THRESH32[k])) for k in range(1, N_LEVELS + 1)], np.uint8)
#: Per-pixel SAD and MSE terms of the official code for |p - g| = 0..255, both float32 like MATLAB's
#: ``abs(single(p)-single(g))/255`` and its square; stored as float64 so that sums are exact-ish.
SAD_TERM = (np.arange(256, dtype=F32) / F32(255)).astype(np.float64)
MSE_TERM = np.square(np.arange(256, dtype=F32) / F32(255)).astype(np.float64)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(x**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))


def gaussgradient_kernels(sigma: float = 1.4) -> tuple[np.ndarray, np.ndarray, int]:
    """The 1-D factors of ``gaussgradient.m``'s unit-L2 2-D kernel ``hx = g(row) * dg(col) / ||.||``.

    Half size = ceil(sigma * sqrt(-2 log(sqrt(2 pi) sigma 0.01))) = 4 for sigma 1.4, i.e. 9x9. The 2-D
    kernel is the outer product of a Gaussian (rows) and its derivative (columns) divided by its
    Frobenius norm, which factorises as (g / ||g||) outer (dg / ||dg||): it is separable (rank 1).
    Returns (g_unit, dg_unit, half), both (2*half+1,) float64, offsets -half..half.
    """
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 1e-2))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = _gauss(u, sigma)
    dg = -u * g / sigma**2
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg), half


G_UNIT, DG_UNIT, HALF = gaussgradient_kernels(1.4)


# ------------------------------------------------------------------------------------------ helpers
def mask_bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of the True pixels of ``mask`` grown by ``margin`` (clipped to the image).

    Filtering such a crop with a replicate/reflect border gives the same values at the unknown pixels
    as filtering the whole image when ``margin`` >= the filter radius: the crop only touches the
    image's own border where the image does.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, h)),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, w)))


def mat2gray_fn(x: np.ndarray) -> Callable[[slice, slice], np.ndarray]:
    """MATLAB ``mat2gray(x)`` evaluated lazily on rectangles: ``f(rows, cols)`` -> float64, contiguous.

    ``x*(1/(max-min)) + (-min/(max-min))`` (``imlincomb``'s form) clipped to [0, 1], with the min and
    max of the *whole* image. A constant image becomes ``clip(double(x), 0, 1)`` (zero gradient anyway).
    8-bit images go through a 256-entry lookup table.
    """
    lo, hi = float(x.min()), float(x.max())
    delta = 1.0 / (hi - lo) if hi > lo else None
    if x.dtype == np.uint8:
        v = np.arange(256, dtype=np.float64)
        lut = np.clip(v if delta is None else v * delta + (-lo * delta), 0.0, 1.0)
        return lambda rows, cols: cv2.LUT(np.ascontiguousarray(x[rows, cols]), lut)

    def f(rows: slice, cols: slice) -> np.ndarray:
        crop = x[rows, cols].astype(np.float64)
        return np.clip(crop if delta is None else crop * delta + (-lo * delta), 0.0, 1.0)

    return f


def _gradient_amplitude(img: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """|gaussgradient(img, 1.4)| at the flat indices ``idx`` of ``img`` (float64 (h, w)); float64 (N,).

    ``imfilter(.., 'replicate', 'conv')`` = correlation with the flipped kernel; sepFilter2D correlates,
    so the factors are passed flipped (the Gaussian is symmetric, the derivative changes sign).
    """
    g, dg = G_UNIT, DG_UNIT[::-1].copy()
    gx = cv2.sepFilter2D(img, cv2.CV_64F, dg, g, borderType=cv2.BORDER_REPLICATE).reshape(-1)  # d/dcol
    gy = cv2.sepFilter2D(img, cv2.CV_64F, g, dg, borderType=cv2.BORDER_REPLICATE).reshape(-1)  # d/drow
    gx, gy = gx[idx], gy[idx]
    return np.sqrt(gx * gx + gy * gy)


# ------------------------------------------------------------------------------------------ official
def official_sad_mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Raw official SAD (sum |p-g|/255) and MSE (mean ((p-g)/255)^2) over the unknown pixels.

    8-bit inputs: per-pixel float32 terms as in MATLAB, counted with a 256-bin histogram and summed in
    float64. Float inputs (no quantisation): the same formulas in float64.
    """
    n = int(np.count_nonzero(mask))
    if pred.dtype == np.uint8 and gt.dtype == np.uint8:
        hist = np.bincount(cv2.absdiff(pred, gt)[mask], minlength=256).astype(np.float64)
        return float(hist @ SAD_TERM), float(hist @ MSE_TERM) / n
    p = pred[mask] / 255.0 if pred.dtype == np.uint8 else pred[mask]
    g = gt[mask] / 255.0 if gt.dtype == np.uint8 else gt[mask]
    diff = p - g
    return float(np.abs(diff).sum()), float((diff * diff).sum()) / n


GRAD_STRIP = 64  # rows per strip: keeps the float64 buffers in cache (~1.5x faster at 3 MP)


def official_grad(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Raw official Grad: sum over unknown pixels of (single(|grad p|) - single(|grad g|))^2.

    Each image is min-max normalised on its own (``mat2gray``, whole image), filtered with the 9x9
    derivative-of-Gaussian pair (sigma 1.4, replicate borders) in float64. The image is processed in
    strips of ``GRAD_STRIP`` rows, each filtered over the columns spanned by its unknown pixels with a
    4-pixel margin (and only strips holding unknown pixels): a window that stops 4 px beyond the
    pixels read, or at the image border where replicate applies anyway, gives the whole-image values.
    """
    h, w = mask.shape
    norm_p, norm_g = mat2gray_fn(pred), mat2gray_fn(gt)
    rows_any = mask.any(axis=1)
    total = 0.0
    for s in range(0, h, GRAD_STRIP):
        e = min(s + GRAD_STRIP, h)
        if not rows_any[s:e].any():
            continue
        cs = np.flatnonzero(mask[s:e].any(axis=0))
        cols = slice(max(int(cs[0]) - HALF, 0), min(int(cs[-1]) + 1 + HALF, w))
        rows = slice(max(s - HALF, 0), min(e + HALF, h))
        idx = np.flatnonzero(mask[s:e, cols]) + (s - rows.start) * (cols.stop - cols.start)
        ap = _gradient_amplitude(norm_p(rows, cols), idx)
        ag = _gradient_amplitude(norm_g(rows, cols), idx)
        diff = ap.astype(F32) - ag.astype(F32)  # float32 like MATLAB's single(...) - single(...)
        total += float(np.square(diff).sum(dtype=np.float64))
    return total


def largest_component(passing: np.ndarray, order: str) -> np.ndarray:
    """Bool mask of the largest 4-connected component of ``passing`` (bool (h, w), not all False).

    Ties go to the component whose first pixel comes first in column-major ("F", MATLAB's
    ``bwconncomp`` numbering + ``max``) or row-major ("C", skimage's ``label`` + ``argmax``) order.
    The background (label 0) is never a candidate.
    """
    src = passing.view(np.uint8)
    lab = None
    if passing.size < 2**24:  # 16-bit labels + calcHist (float32 counts, exact below 2^24): ~3x faster
        try:
            n, lab = cv2.connectedComponents(src, connectivity=4, ltype=cv2.CV_16U)
            sizes = cv2.calcHist([lab], [0], None, [n], [0, n]).reshape(-1).astype(np.int64)
        except cv2.error:  # 65535 or more (provisional) labels
            lab = None
    if lab is None:
        n, lab = cv2.connectedComponents(src, connectivity=4, ltype=cv2.CV_32S)
        sizes = np.bincount(lab.reshape(-1), minlength=n)
    sizes[0] = 0
    best = int(np.argmax(sizes))
    if np.count_nonzero(sizes == sizes[best]) > 1:
        tied = np.isin(lab, np.flatnonzero(sizes == sizes[best]))
        if order == "F":
            cc, rr = np.nonzero(tied.T)  # sorted by column, then row
        else:
            rr, cc = np.nonzero(tied)
        best = int(lab[rr[0], cc[0]])
    return lab == best


def connectivity_levels(q: np.ndarray, thresholds: np.ndarray, mask: np.ndarray, order: str) -> np.ndarray:
    """Conn's level index (0..10) per pixel, valid where ``mask`` is True; (H, W) uint8.

    A pixel's level is t_(k-1) for the first threshold t_k at which it is not in the largest
    4-connected component of {q >= thresholds[k]}, and 1 (index 10) if it never leaves. q combines
    both alphas so that ``q >= thresholds[k]`` <=> pred and gt both pass t_k (e.g. min(pred, gt) for
    8-bit inputs); thresholds: (11,) in q's dtype, entry 0 unused. order: tie rule of
    :func:`largest_component`. Guard: where no pixel passes (in both images) the threshold is skipped,
    so pixels still in the component keep index 10 (l = 1), as IndexNet-Matting's copy of the MATLAB
    code and the SPKD evaluator do; the original crashes. Thresholds are nested, so the loop ends there.

    Speed: a pixel's index is the number of thresholds it survived, accumulated with one add per
    threshold; only the bounding box of the passing pixels is labelled (cv2, one pass per threshold,
    boxes nested), and the loop stops once no unknown pixel is left in the component.
    """
    level = np.zeros(q.shape, np.uint8)
    row_max, col_max = q.max(axis=1), q.max(axis=0)
    alive, ar0, ac0 = mask, 0, 0  # unknown pixels in every largest component so far, and their box origin
    for k in range(1, N_LEVELS + 1):
        t = thresholds[k]
        rsel = np.flatnonzero(row_max >= t)
        if rsel.size == 0:  # no pixel passes in both images: skip this and the (nested) later thresholds
            level[ar0:ar0 + alive.shape[0], ac0:ac0 + alive.shape[1]] += alive * np.uint8(N_LEVELS - k + 1)
            break
        csel = np.flatnonzero(col_max >= t)
        r0, r1, c0, c1 = int(rsel[0]), int(rsel[-1]) + 1, int(csel[0]), int(csel[-1]) + 1
        passing = q[r0:r1, c0:c1] >= t
        alive = alive[r0 - ar0:r1 - ar0, c0 - ac0:c1 - ac0] & passing  # box nested in the previous one
        ar0, ac0 = r0, c0
        if not alive.any():  # every tracked pixel leaves here (index k-1 already accumulated)
            break
        alive &= largest_component(passing, order)
        level[r0:r1, c0:c1] += alive
    return level


def official_conn(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Raw official Conn: sum over unknown pixels of |phi_p - phi_g|, phi = 1 - d*(d >= 0.15), d = a - l.

    Alphas are single(a)/255 and every comparison and difference is in float32, as in MATLAB.
    """
    if pred.dtype == np.uint8 and gt.dtype == np.uint8:
        q, thr = np.minimum(pred, gt), THRESH_U8
    else:
        q, thr = np.minimum(_alpha32(pred), _alpha32(gt)), THRESH32
    l32 = THRESH32[connectivity_levels(q, thr, mask, order="F")[mask]]
    return _phi_sum(_alpha32(pred[mask]) - l32, _alpha32(gt[mask]) - l32)


def _alpha32(x: np.ndarray) -> np.ndarray:
    """single(a)/255 for 8-bit values, float32(x) for floats in [0, 1]."""
    return ALPHA32[x] if x.dtype == np.uint8 else x.astype(F32)


def _phi_sum(dp: np.ndarray, dg: np.ndarray) -> float:
    """sum |phi(dp) - phi(dg)| with phi(d) = 1 - d*(d >= 0.15) in d's dtype (0.15 compared in that
    dtype, as NumPy does with a Python float), summed in float64."""
    def phi(d: np.ndarray) -> np.ndarray:
        one = d.dtype.type(1)
        return np.where(d >= d.dtype.type(0.15), one - d, one)

    return float(np.abs(phi(dp) - phi(dg)).sum(dtype=np.float64))


# ------------------------------------------------------------------------------------------ SPKD
SPKD_THRESH64 = np.arange(0, 1.1, 0.1)  # the SPKD code's thresholds (0.30000000000000004, ...)


def spkd_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The SPKD code's evaluator (its ``test.py`` + ``utils.py``), in the units it prints.

    pred: float32 prediction (8-bit becomes single(a)/255; never quantised); gt: a/255 in float64.
    - known regions of pred forced to 0 (trimap 0) / 1 (trimap 255);
    - SAD = sum over the *whole image* of |p - g| / 1000;
    - MSE = sum over the whole image of (p - g)^2 / number of unknown pixels;
    - Grad = sum_unknown (|grad p| - |grad g|)^2 / 10 with scipy's ``gaussian_filter(sigma=1.4,
      order=1)`` (reflect borders, float32 output), no min-max normalisation;
    - Conn = the official formula with float64 thresholds ``np.arange(0, 1.1, 0.1)`` (gt/255 in
      float64, so 153 fails 0.6000000000000001), pred compared in float32 (NumPy 1.x value-based
      casting, under which the 2020 code ran), ties to the first component in row-major order, the same
      empty-threshold guard, pred's phi in float32 and gt's in float64; / 1000.
    """
    p = _alpha32(pred).copy()
    g = gt / 255.0 if gt.dtype == np.uint8 else gt.astype(np.float64)
    p[trimap == 0] = 0.0
    p[trimap == 255] = 1.0
    diff = p - g  # float64
    n = int(np.count_nonzero(mask))
    sad = float(np.abs(diff).sum()) / 1000.0
    if n == 0:  # no unknown pixel (matting_lib.metrics warns): only the whole-image SAD is defined
        return {"sad": sad, "mse": 0.0, "grad": 0.0, "conn": 0.0}
    mse = float(np.square(diff).sum()) / n

    radius = int(4.0 * 1.4 + 0.5)  # scipy's truncate=4.0
    rows, cols = mask_bbox(mask, radius)
    mc = mask[rows, cols]

    def amp(x: np.ndarray) -> np.ndarray:
        xc = x[rows, cols]
        dx = gaussian_filter(xc, sigma=1.4, order=[1, 0], output=np.float32)[mc]
        dy = gaussian_filter(xc, sigma=1.4, order=[0, 1], output=np.float32)[mc]
        return np.sqrt(dx**2 + dy**2)  # float32

    grad = float(np.square(amp(p) - amp(g)).sum(dtype=np.float64)) / 10.0

    t32 = SPKD_THRESH64.astype(F32)
    qp = np.searchsorted(t32[1:], p, side="right").astype(np.uint8)  # thresholds passed, float32 compare
    qg = np.searchsorted(SPKD_THRESH64[1:], g, side="right").astype(np.uint8)  # float64 compare
    level = connectivity_levels(np.minimum(qp, qg), np.arange(N_LEVELS + 1, dtype=np.uint8), mask, order="C")
    l32 = np.append(t32[:N_LEVELS], F32(1.0))[level[mask]]  # float32 l_map: thresh[k-1], or 1
    conn = _phi_sum(p[mask] - l32, g[mask] - l32.astype(np.float64)) / 1000.0
    return {"sad": sad, "mse": mse, "grad": grad, "conn": conn}
