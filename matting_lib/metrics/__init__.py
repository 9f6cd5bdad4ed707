"""SAD, MSE, Grad and Conn as the official Deep Image Matting MATLAB evaluation code computes them.

Official code: Xu et al., "Deep Image Matting", CVPR 2017, evaluation scripts by Ning Xu
(``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m`` + ``gaussgradient.m``,
``compute_connectivity_error.m``, driven by e.g. ``hleval.m`` in IndexNet-Matting's ``evaluation_code/``).
This package: the per-image API here (input checks and units), the numerical kernels in
:mod:`matting_lib.metrics.kernels`, folder evaluation in :mod:`matting_lib.metrics.folder` and the command line
in ``__main__`` (``python -m matting_lib.metrics --help``). Imports run one way only: ``folder`` uses this module,
this module never imports ``folder`` (no cycle).

Units (the ones papers print): ``sad`` = sum |p - g| / 255 / 1000 (the /1000 is inside the official
function), ``mse`` = mean ((p - g) / 255)^2 per unknown pixel, ``grad`` = official Grad / 1000,
``conn`` = official Conn / 1000. Only pixels with trimap == 128 are summed; Grad's filtering and Conn's
connected components see the whole image, so they change when only known pixels differ.

Decisions (each tested in ``tests/test_metrics.py``):

* **Inputs.** Alphas are (H, W) arrays: ``uint8`` 0..255 as read from a PNG, evaluated exactly like the
  official code, or float in [0, 1]. Floats are **quantised** by default as saving an 8-bit PNG would:
  ``np.rint(p * 255)`` in float64 (round half to even, as ``cv2.imwrite`` rounds). ``quantize=False``
  applies the same definitions to the unrounded values (SAD/MSE in float64, Conn's thresholds and
  differences in float32, Grad's ``mat2gray`` on the float image). The trimap holds 0 / 128 / 255
  (128 = unknown); a float trimap holding 0, 128/255, 1 (the datasets' tensors) is accepted. Anything
  else is refused with a message; :func:`snap_trimap` repairs resized or JPEG trimaps.
* **Precision.** Per-pixel terms are float32 as in MATLAB (``single``): SAD/MSE terms, Grad's
  ``single(|grad p|) - single(|grad g|)``, every Conn comparison and difference (so alpha 153 passes the
  0.6 threshold; in float64 it would not). For 8-bit alphas, comparing single(a)/255 with the double or
  with the single threshold gives the same answer; unquantised floats are compared in float32. Sums are
  taken in float64 rather than MATLAB's single-precision ``sum`` (whose order is unspecified); the
  difference is ~1e-7 relative. Single-minus-double (``pred - l_map``) is evaluated as single minus
  single(l): the two readings of MATLAB's mixed arithmetic differ by <= 6e-8 per pixel and never flip the
  ``d >= 0.15`` test for 8-bit inputs.
* **Grad.** ``mat2gray`` per image (limits = that image's min and max; a constant image has zero
  gradient), the 9x9 unit-L2 derivative-of-Gaussian pair of ``gaussgradient.m`` (sigma 1.4), which is
  separable and is applied as two 1-D passes with replicate borders in float64.
* **Conn.** Thresholds 0.1..1.0, 4-connectivity, the largest component over the whole image with ties
  going to the first in column-major order (``bwconncomp`` + ``max``). Where no pixel passes a threshold
  in both images the original code crashes; like the copy in IndexNet-Matting's ``evaluation_code/`` (and
  the SPKD evaluator) that threshold is **skipped**, so pixels still in the component at the last
  non-empty threshold keep l = 1 (they never "leave").
* **No unknown pixel.** SAD, MSE, Grad and Conn are all 0.0 (nothing to measure; MATLAB would give NaN
  for MSE) and a :class:`NoUnknownPixelsWarning` is issued; a folder evaluation records a note and goes on.
  Folder means average over every evaluated image, as ``hleval.m`` does.
* **convention="spkd"** reproduces the SPKD code's own evaluator (see
  :func:`matting_lib.metrics.kernels.spkd_metrics`): float predictions (never quantised) with known regions
  forced to 0/1, SAD over the whole image, MSE = whole-image squared error / unknown count, Grad from
  scipy's Gaussian derivative / 10 without ``mat2gray``, Conn with float64 thresholds and row-major ties.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from matting_lib.metrics import kernels as impl

__all__ = ["METRIC_KEYS", "CONVENTIONS", "MetricsInputError", "NoUnknownPixelsWarning", "evaluate_alpha",
           "evaluate_counted", "sad", "mse", "gradient_error", "connectivity_error"]

#: The four metrics, in the order every table, CSV and figure of the project prints them (the paper's Table 1).
METRIC_KEYS = ("sad", "mse", "grad", "conn")


class MetricsInputError(ValueError):
    """An input the metrics refuse (shape, dtype, value, file); the message says which and what to do."""


class NoUnknownPixelsWarning(UserWarning):
    """The trimap has no unknown (128) pixel; the metrics are reported as 0.0."""


# ----------------------------------------------------------------------------------------- inputs
def _to_2d(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (1,):
        raise MetricsInputError(
            f"{what} has shape {a.shape}: an RGB(A) image, not a single-channel alpha/trimap; pass one "
            f"channel (e.g. matting_lib.data.layout.read_gray(path))")
    while a.ndim > 2 and a.shape[0] == 1:  # (1, H, W), (1, 1, H, W)
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.size == 0:
        raise MetricsInputError(f"{what} must be a non-empty (H, W) array; got shape {a.shape}")
    return a


def _check_alpha(x: Any, what: str, quantize: bool) -> np.ndarray:
    """(H, W) uint8, or float64 in [0, 1] when ``quantize`` is False and the input is float."""
    a = _to_2d(x, what)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        raise MetricsInputError(f"{what} is boolean; pass an alpha matte (uint8 0..255 or float in [0, 1])")
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            hint = " (a 16-bit matte? the official code reads 8-bit PNGs: use np.rint(a / 257).astype(np.uint8))" \
                if hi > 255 else ""
            raise MetricsInputError(f"{what} ({a.dtype}) has values {lo}..{hi}, outside 0..255{hint}")
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricsInputError(f"{what} has dtype {a.dtype}; expected uint8 or float")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise MetricsInputError(f"{what} contains {int(bad.sum())} NaN/inf value(s), first at (row {r}, col {c}): "
                                f"{a[r, c]}; fix the prediction (e.g. np.nan_to_num) before evaluating")
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        hint = "; it looks like 0..255: divide by 255 or pass uint8" if hi <= 255 and lo >= 0 else \
            "; clip it to [0, 1] if that is intended"
        raise MetricsInputError(f"{what} is float with values {lo:g}..{hi:g}, outside [0, 1]{hint}")
    a = np.clip(a.astype(np.float64), 0.0, 1.0)
    return np.rint(a * 255.0).astype(np.uint8) if quantize else a


def _check_trimap(x: Any) -> np.ndarray:
    t = _to_2d(x, "trimap")
    if np.issubdtype(t.dtype, np.floating) and np.isfinite(t).all() and float(t.max()) <= 1.0:
        t = np.rint(t * 255.0)  # the datasets' 0, 128/255, 1
    if t.dtype != np.uint8:
        if not (np.isfinite(t).all() and float(t.min()) >= 0 and float(t.max()) <= 255 and (t == np.rint(t)).all()):
            raise MetricsInputError(f"trimap ({t.dtype}) must hold 0, 128 and 255 (or 0, 128/255, 1 as float)")
        t = t.astype(np.uint8)
    bad = (t != 0) & (t != 128) & (t != 255)
    if bad.any():
        vals, counts = np.unique(t[bad], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:5]
        top = ", ".join(f"{vals[i]} ({counts[i]} px)" for i in order)
        raise MetricsInputError(
            f"trimap has values other than 0/128/255: {top}; it was probably resized or saved as JPEG. "
            f"Snap it with matting_lib.data.trimap.snap_trimap(trimap) (nearest of 0/128/255) or regenerate it")
    return t


def _prepare(pred: Any, gt: Any, trimap: Any, quantize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated (pred, gt, trimap, unknown mask): alphas uint8 (or float64 in [0, 1] unquantised)."""
    p = _check_alpha(pred, "pred", quantize)
    g = _check_alpha(gt, "gt", quantize)
    t = _check_trimap(trimap)
    if not (p.shape == g.shape == t.shape):
        raise MetricsInputError(f"shape mismatch: pred {p.shape}, gt {g.shape}, trimap {t.shape}; "
                                f"all three must be the same (H, W) (predict at full resolution)")
    return p, g, t, t == 128


# ----------------------------------------------------------------------------------------- metrics
def _official(p: np.ndarray, g: np.ndarray, t: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    s, m = impl.official_sad_mse(p, g, mask)
    return {"sad": s / 1000.0, "mse": m, "grad": impl.official_grad(p, g, mask) / 1000.0,
            "conn": impl.official_conn(p, g, mask) / 1000.0}


def _spkd(p: np.ndarray, g: np.ndarray, t: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return impl.spkd_metrics(p, g, t, mask)


#: convention name -> (evaluator, quantises float predictions?)
CONVENTIONS: dict[str, tuple[Callable[..., dict[str, float]], bool]] = {
    "official": (_official, True),
    "spkd": (_spkd, False),
}


def evaluate_counted(pred: Any, gt: Any, trimap: Any, *, convention: str = "official", quantize: bool = True,
                     stacklevel: int = 2) -> tuple[dict[str, float], int]:
    """:func:`evaluate_alpha` and the number of unknown (128) pixels it measured (0: all metrics 0.0, warned)."""
    if convention not in CONVENTIONS:
        raise MetricsInputError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    fn, quantises = CONVENTIONS[convention]
    p, g, t, mask = _prepare(pred, gt, trimap, quantize and quantises)
    n = int(np.count_nonzero(mask))
    if n == 0:
        warnings.warn("trimap has no unknown (128) pixel: SAD, MSE, Grad and Conn are reported as 0.0",
                      NoUnknownPixelsWarning, stacklevel=stacklevel)
        if convention == "spkd":  # its SAD is over the whole image
            return impl.spkd_metrics(p, g, t, mask), 0
        out = dict.fromkeys(METRIC_KEYS, 0.0)
        return out, 0
    return fn(p, g, t, mask), n


def evaluate_alpha(pred: Any, gt: Any, trimap: Any, *, convention: str = "official",
                   quantize: bool = True) -> dict[str, float]:
    """All four metrics of one image: ``{"sad", "mse", "grad", "conn"}`` in the units papers print.

    pred, gt: (H, W) uint8 0..255 or float in [0, 1] (also (1, H, W) / (H, W, 1) arrays or tensors);
    trimap: (H, W) 0 / 128 / 255. convention: "official" (DIM MATLAB code) or "spkd" (the SPKD code's
    evaluator). quantize: round float alphas to 8 bits first (official convention only). See the module
    docstring for every choice. Raises :class:`MetricsInputError` on bad input.
    """
    return evaluate_counted(pred, gt, trimap, convention=convention, quantize=quantize, stacklevel=3)[0]


def _single(pred: Any, gt: Any, trimap: Any, quantize: bool, fn: Callable[..., float]) -> float:
    p, g, t, mask = _prepare(pred, gt, trimap, quantize)
    if not mask.any():
        warnings.warn("trimap has no unknown (128) pixel: the metric is reported as 0.0",
                      NoUnknownPixelsWarning, stacklevel=3)
        return 0.0
    return fn(p, g, mask)


def sad(pred: Any, gt: Any, trimap: Any, *, quantize: bool = True) -> float:
    """Official SAD over the unknown pixels: sum |p - g| / 255 / 1000 (``compute_sad_loss.m``)."""
    return _single(pred, gt, trimap, quantize, lambda p, g, u: impl.official_sad_mse(p, g, u)[0] / 1000.0)


def mse(pred: Any, gt: Any, trimap: Any, *, quantize: bool = True) -> float:
    """Official MSE: mean over the unknown pixels of ((p - g) / 255)^2 (``compute_mse_loss.m``)."""
    return _single(pred, gt, trimap, quantize, lambda p, g, u: impl.official_sad_mse(p, g, u)[1])


def gradient_error(pred: Any, gt: Any, trimap: Any, *, quantize: bool = True) -> float:
    """Official Grad / 1000 (``compute_gradient_loss.m``: mat2gray, gaussgradient sigma 1.4)."""
    return _single(pred, gt, trimap, quantize, lambda p, g, u: impl.official_grad(p, g, u) / 1000.0)


def connectivity_error(pred: Any, gt: Any, trimap: Any, *, quantize: bool = True) -> float:
    """Official Conn / 1000 (``compute_connectivity_error.m``, step 0.1; empty-threshold guard: skip)."""
    return _single(pred, gt, trimap, quantize, lambda p, g, u: impl.official_conn(p, g, u) / 1000.0)
