"""SAD, MSE, Grad and Conn as the official Deep Image Matting MATLAB evaluation code computes them.

Official code: Xu et al., "Deep Image Matting", CVPR 2017, evaluation scripts by Ning Xu
(``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m`` + ``gaussgradient.m``,
``compute_connectivity_error.m``, driven by e.g. ``hleval.m`` in IndexNet-Matting's ``evaluation_code/``).
The numerical kernels live in :mod:`matting_lib._metrics_impl`; this module checks inputs, applies units,
evaluates folders and is the command line (``python -m matting_lib.metrics --help``).

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
  :func:`matting_lib._metrics_impl.spkd_metrics`): float predictions (never quantised) with known regions
  forced to 0/1, SAD over the whole image, MSE = whole-image squared error / unknown count, Grad from
  scipy's Gaussian derivative / 10 without ``mat2gray``, Conn with float64 thresholds and row-major ties.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import cv2
import numpy as np

from matting_lib import _metrics_impl as impl
from matting_lib.trimap import snap_trimap  # noqa: F401 (public here too: the error message points to it)
from matting_lib.utils import atomic_write_text

METRIC_KEYS = ("sad", "mse", "grad", "conn")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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
            f"channel (e.g. cv2.imread(path, cv2.IMREAD_GRAYSCALE) or read_alpha(path))")
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
            f"Snap it with matting_lib.metrics.snap_trimap(trimap) (nearest of 0/128/255) or regenerate it")
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


def _evaluate(pred: Any, gt: Any, trimap: Any, convention: str, quantize: bool) -> tuple[dict[str, float], int]:
    if convention not in CONVENTIONS:
        raise MetricsInputError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    fn, quantises = CONVENTIONS[convention]
    p, g, t, mask = _prepare(pred, gt, trimap, quantize and quantises)
    n = int(np.count_nonzero(mask))
    if n == 0:
        warnings.warn("trimap has no unknown (128) pixel: SAD, MSE, Grad and Conn are reported as 0.0",
                      NoUnknownPixelsWarning, stacklevel=3)
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
    return _evaluate(pred, gt, trimap, convention, quantize)[0]


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


# ----------------------------------------------------------------------------------------- files
def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit single-channel image (alpha matte, prediction or trimap) as (H, W) uint8.

    A 3/4-channel file whose colour channels are identical (and alpha opaque) is accepted as grey, as
    ``hleval.m`` reads ``gt(:, :, 1)``. 16-bit files, differing channels and unreadable files raise
    :class:`MetricsInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MetricsInputError(f"{path}: no such file")
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MetricsInputError(f"{path}: not a readable image")
    if img.dtype != np.uint8:
        raise MetricsInputError(f"{path}: {img.dtype} image (max value {int(img.max())}); the official evaluation "
                                f"reads 8-bit PNGs; save it as 8-bit (e.g. np.rint(a / 257).astype(np.uint8))")
    if img.ndim == 3:
        color = img[..., :3] if img.shape[2] >= 3 else img[..., :1]
        opaque = img.shape[2] != 4 or bool((img[..., 3] == 255).all())
        if not (opaque and (color == color[..., :1]).all()):
            raise MetricsInputError(f"{path}: {img.shape[2]}-channel image with differing channels; save the "
                                    f"alpha matte / trimap as a single-channel 8-bit PNG")
        img = img[..., 0]
    return np.ascontiguousarray(img)


def _index_dir(folder: Path, what: str) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise MetricsInputError(f"{what} folder {folder} does not exist")
    out: dict[str, list[Path]] = {}
    for f in folder.iterdir():
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
            out.setdefault(f.stem, []).append(f)
    return out


def _pick(index: dict[str, list[Path]], stem: str, prefer: str) -> Path | None:
    cands = index.get(stem, [])
    for c in cands:
        if c.name == prefer:
            return c
    return sorted(cands)[0] if cands else None


def _match_same_name(gt: dict, tri: dict, stem: str, name: str) -> tuple[Path | None, Path | None, str]:
    return _pick(gt, stem, name), _pick(tri, stem, name), f"{stem}.* in the gt and trimap folders"


def _match_composition1k(gt: dict, tri: dict, stem: str, name: str) -> tuple[Path | None, Path | None, str]:
    parts = stem.rsplit("!", 3)
    if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
        raise MetricsInputError(f"{name}: not a Composition-1k name '{{bg}}!{{fg}}!{{f}}!{{b}}.png'; "
                                f"use matcher='same_name' for other layouts")
    fg, b = parts[1], parts[3]
    hint = f"gt {fg}.* and trimap {fg}_{b}.*"
    if int(b) >= 20:
        hint += (f" (b={b} looks like a global background index as in DIM-PyTorch's test.py; this layout "
                 f"expects b within the foreground, 0..K-1)")
    return _pick(gt, fg, fg + ".png"), _pick(tri, f"{fg}_{b}", f"{fg}_{b}.png"), hint


#: matcher name -> function(gt index, trimap index, prediction stem, prediction file name) -> (gt, trimap, hint);
#: an index maps a file stem to the image files with that stem in one folder.
MATCHERS: dict[str, Callable[..., tuple[Path | None, Path | None, str]]] = {
    "same_name": _match_same_name,
    "composition1k": _match_composition1k,
}


def _evaluate_job(job: tuple[str, str, str, str, str]) -> dict[str, Any]:
    """Worker: one image's row; input problems are returned in ``error`` so the run goes on."""
    name, pred_path, gt_path, trimap_path, convention = job
    row: dict[str, Any] = {"name": name, **dict.fromkeys(METRIC_KEYS, math.nan), "n_unknown": -1,
                           "note": "", "error": "", "pred": pred_path, "gt": gt_path, "trimap": trimap_path}
    try:
        images = [read_alpha(pred_path), read_alpha(gt_path), read_alpha(trimap_path)]  # errors name the file
    except MetricsInputError as e:
        row["error"] = str(e)
        return row
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values, n = _evaluate(*images, convention, True)
        row.update(values, n_unknown=n, note="; ".join(str(w.message) for w in caught))
    except MetricsInputError as e:
        row["error"] = f"{e} (pred {pred_path}, gt {gt_path}, trimap {trimap_path})"
    return row


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one image per process; no nested thread pools


def evaluate_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, trimap_dir: str | os.PathLike, *,
                    out_csv: str | os.PathLike | None = None, convention: str = "official",
                    workers: int | None = None, matcher: Literal["same_name", "composition1k"] = "same_name",
                    progress: bool = True) -> dict[str, Any]:
    """Evaluate every prediction in ``pred_dir`` against its ground truth and trimap.

    Matching (``matcher``): "same_name" = the same file stem in all three folders; "composition1k" =
    prediction ``{bg}!{fg}!{f}!{b}.png`` -> alpha ``{fg}.png`` and trimap ``{fg}_{b}.png``. All files are
    matched before any work starts; missing partners raise :class:`MetricsInputError` listing them.
    Images run in parallel (a process pool of ``workers`` processes, chunked; ``None`` = one per
    available core, in-process for fewer than 8 images; 0 or 1 = in-process) with a progress bar.

    Returns ``{"mean": {sad, mse, grad, conn}, "rows": [per-image dicts], "count", "convention"}``.
    ``out_csv`` gets the rows (written atomically) and ``<out_csv>.mean.json`` the means. Images whose
    files are unusable are listed in one error raised at the end, after the CSV is written.
    """
    if convention not in CONVENTIONS:
        raise MetricsInputError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    if matcher not in MATCHERS:
        raise MetricsInputError(f"unknown matcher {matcher!r}; valid: {', '.join(MATCHERS)}")
    pred_i = _index_dir(Path(pred_dir), "prediction")
    gt_i, tri_i = _index_dir(Path(gt_dir), "ground-truth"), _index_dir(Path(trimap_dir), "trimap")
    jobs, missing = [], []
    for stem in sorted(pred_i):
        for pred_path in sorted(pred_i[stem]):
            gt_path, tri_path, hint = MATCHERS[matcher](gt_i, tri_i, stem, pred_path.name)
            if gt_path is None or tri_path is None:
                what = "gt" if gt_path is None else "trimap"
                missing.append(f"{pred_path.name}: no {what} found (looked for {hint})")
            else:
                jobs.append((pred_path.name, str(pred_path), str(gt_path), str(tri_path), convention))
    if missing:
        more = f" ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise MetricsInputError(f"{len(missing)} prediction(s) in {pred_dir} have no partner:\n  "
                                + "\n  ".join(missing[:10]) + more)
    if not jobs:
        raise MetricsInputError(f"no prediction images ({', '.join(IMAGE_EXTENSIONS)}) in {pred_dir}")
    if matcher == "same_name":
        unused = sorted(set(gt_i) - set(pred_i))
        if unused:
            warnings.warn(f"{len(unused)} ground-truth file(s) have no prediction (e.g. {unused[0]}); "
                          f"the means cover the {len(jobs)} predictions only", stacklevel=2)
    rows = _run_jobs(jobs, workers, progress)
    good = [r for r in rows if not r["error"]]
    mean = {k: float(np.mean([r[k] for r in good])) if good else math.nan for k in METRIC_KEYS}
    result = {"mean": mean, "rows": rows, "count": len(good), "convention": convention}
    if out_csv is not None:
        _write_csv(Path(out_csv), rows)
        summary = {"convention": convention, "count": len(good), "failed": len(rows) - len(good), "mean": mean,
                   "pred_dir": str(pred_dir), "gt_dir": str(gt_dir), "trimap_dir": str(trimap_dir)}
        atomic_write_text(Path(str(out_csv) + ".mean.json"), json.dumps(summary, indent=2) + "\n")
    failed = [r for r in rows if r["error"]]
    if failed:
        where = f"; the other rows are in {out_csv}" if out_csv is not None else ""
        raise MetricsInputError(f"{len(failed)} of {len(rows)} image(s) could not be evaluated{where}:\n  "
                                + "\n  ".join(f"{r['name']}: {r['error']}" for r in failed[:10]))
    notes = [r for r in rows if r["note"]]
    if notes:
        warnings.warn(f"{len(notes)} image(s) have notes (e.g. {notes[0]['name']}: {notes[0]['note']})",
                      NoUnknownPixelsWarning, stacklevel=2)
    return result


def _run_jobs(jobs: list[tuple[str, str, str, str, str]], workers: int | None, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = 1 if len(jobs) < 8 else min(cores, len(jobs))
    bar = dict(total=len(jobs), desc="metrics", unit="img", disable=not progress)
    if workers <= 1:
        return [_evaluate_job(j) for j in tqdm(jobs, **bar)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(16, math.ceil(len(jobs) / (4 * workers))))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as ex:
        return list(tqdm(ex.map(_evaluate_job, jobs, chunksize=chunk), **bar))


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = ["name", *METRIC_KEYS, "n_unknown", "note", "error", "pred", "gt", "trimap"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r[c] for c in cols})
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m matting_lib.metrics --pred DIR --gt DIR --trimap DIR [--out CSV] ...``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m matting_lib.metrics",
                                 description="SAD / MSE / Grad / Conn of a folder of predicted alpha mattes, "
                                             "as the official Deep Image Matting MATLAB code computes them.")
    ap.add_argument("--pred", required=True, help="folder of predicted alphas (8-bit single-channel PNGs)")
    ap.add_argument("--gt", required=True, help="folder of ground-truth alphas")
    ap.add_argument("--trimap", required=True, help="folder of trimaps (0/128/255)")
    ap.add_argument("--out", default=None, help="per-image CSV to write (means go to <out>.mean.json)")
    ap.add_argument("--convention", default="official", choices=sorted(CONVENTIONS),
                    help="official = DIM MATLAB code (default); spkd = the SPKD code's evaluator")
    ap.add_argument("--layout", default="same_name", choices=sorted(MATCHERS),
                    help="same_name: same file stem in all folders; composition1k: {bg}!{fg}!{f}!{b}.png -> "
                         "{fg}.png alpha and {fg}_{b}.png trimap")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = ap.parse_args(argv)
    try:
        res = evaluate_folder(args.pred, args.gt, args.trimap, out_csv=args.out, convention=args.convention,
                              workers=args.workers, matcher=args.layout, progress=not args.no_progress)
    except MetricsInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = res["mean"]
    print(f"{res['count']} images ({res['convention']}): SAD {m['sad']:.2f}  MSE {m['mse']:.4f}  "
          f"Grad {m['grad']:.2f}  Conn {m['conn']:.2f}")
    return 0


if __name__ == "__main__":
    from matting_lib.metrics import main as _main  # the importable module, so pool workers can find the job

    sys.exit(_main())
