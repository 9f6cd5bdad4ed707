"""Folder evaluation and the command line of :mod:`matting_lib.metrics` (``python -m matting_lib.metrics --help``).

Reads 8-bit single-channel images with :func:`matting_lib.data.layout.read_gray` (the official evaluation's rules:
``hleval.m`` takes ``gt(:, :, 1)``; 16-bit files and differing colour channels are refused), matches each prediction
with its ground truth and trimap (the same file stem, or Composition-1k names ``{bg}!{fg}!{f}!{b}.png`` -> ``{fg}.png``
and ``{fg}_{b}.png``), scores the images with :mod:`matting_lib.metrics` (in a spawn process pool: the worker
:func:`_evaluate_job` stays a module-level function) and writes a per-image CSV and ``<csv>.mean.json``. An image
without unknown pixels scores 0.0 and gets a note; the run goes on. Folder means average over every evaluated image, as
``hleval.m`` does. ``python -m matting_lib.metrics`` runs :func:`main` (``matting_lib/metrics/__main__.py``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from tqdm.auto import tqdm

from matting_lib.data.layout import LayoutError, read_gray
from matting_lib.data.output_safety import check_output, one_line_warnings
from matting_lib.files import atomic_write_text
from matting_lib.metrics import CONVENTIONS, METRIC_KEYS, MetricsInputError, NoUnknownPixelsWarning, evaluate_counted

__all__ = ["IMAGE_EXTENSIONS", "MATCHERS", "ImagesNotEvaluatedError", "evaluate_folder", "main"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImagesNotEvaluatedError(MetricsInputError):
    """Some images could not be scored (unreadable, 16-bit, mismatched...); raised after the others were.
    ``result`` is :func:`evaluate_folder`'s return value, the failed rows included (their ``error`` set)."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


# ----------------------------------------------------------------------------------------- files
def _index_dir(folder: Path, what: str) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise MetricsInputError(f"{what} folder {folder} " + ("is a file, not a folder" if folder.exists() else
                                                             "does not exist"))
    out: dict[str, list[Path]] = {}
    for f in folder.iterdir():
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
            out.setdefault(f.stem, []).append(f)
    return out


def _refuse_duplicates(index: dict[str, list[Path]], folder: Path, what: str) -> None:
    """Two predictions of one image (``im1.png`` and ``im1.bmp``) would count it twice in the means."""
    dupes = sorted(sorted(p.name for p in files) for files in index.values() if len(files) > 1)
    if dupes:
        shown = "; ".join(" and ".join(d) for d in dupes[:5]) + (f"; ... and {len(dupes) - 5} more" if len(dupes) > 5
                                                                  else "")
        raise MetricsInputError(f"{what} folder {folder} holds {len(dupes)} image(s) under two or more file names "
                                f"with the same stem ({shown}); keep one file per image")


def _pick(index: dict[str, list[Path]], stem: str, prefer: str) -> Path | None:
    cands = index.get(stem, [])
    for c in cands:
        if c.name == prefer:
            return c
    if len(cands) > 1:  # which one is the ground truth / trimap is a guess: refuse it
        raise MetricsInputError(f"{' and '.join(sorted(str(c) for c in cands))} share the stem {stem!r} and none is "
                                f"{prefer}; keep one file per image")
    return cands[0] if cands else None


def _match_same_name(gt: dict, tri: dict, stem: str, name: str) -> tuple[Path | None, Path | None, str]:
    return _pick(gt, stem, name), _pick(tri, stem, name), f"{stem}.* in the gt and trimap folders"


def _match_composition1k(gt: dict, tri: dict, stem: str, name: str) -> tuple[Path | None, Path | None, str]:
    parts = stem.rsplit("!", 3)
    if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
        raise MetricsInputError(f"{name}: not a Composition-1k name '{{bg}}!{{fg}}!{{f}}!{{b}}.png'; "
                                f"use --layout same_name (matcher='same_name') for other layouts")
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
        images = [read_gray(pred_path, what="prediction"), read_gray(gt_path, what="ground truth"),
                  read_gray(trimap_path, what="trimap")]  # errors name the file
    except LayoutError as e:
        row["error"] = str(e)
        return row
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values, n = evaluate_counted(*images, convention=convention)
        row.update(values, n_unknown=n, note="; ".join(str(w.message) for w in caught))
    except MetricsInputError as e:
        row["error"] = f"{e} (pred {pred_path}, gt {gt_path}, trimap {trimap_path})"
    return row


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one image per process; no nested thread pools


def evaluate_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, trimap_dir: str | os.PathLike, *,
                    out_csv: str | os.PathLike | None = None, convention: str = "official",
                    workers: int | None = None, matcher: Literal["same_name", "composition1k"] = "same_name",
                    force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Evaluate every prediction in ``pred_dir`` against its ground truth and trimap.

    Matching (``matcher``): "same_name" = the same file stem in all three folders; "composition1k" =
    prediction ``{bg}!{fg}!{f}!{b}.png`` -> alpha ``{fg}.png`` and trimap ``{fg}_{b}.png``. All files are
    matched before any work starts; missing partners raise :class:`MetricsInputError` listing them, and so do
    two predictions with the same stem (``im1.png`` and ``im1.bmp``), a ground truth or trimap that is
    ambiguous in the same way, and an ``out_csv`` that :func:`matting_lib.data.output_safety.check_output` refuses
    (inside one of the three folders or a dataset's inputs, a folder, not writable, or existing without ``force``).
    Images run in parallel (a process pool of ``workers`` processes, chunked; ``None`` = one per
    available core, in-process for fewer than 8 images; 0 or 1 = in-process) with a progress bar.

    Returns ``{"mean": {sad, mse, grad, conn}, "rows": [per-image dicts], "count", "convention"}``.
    ``out_csv`` gets the rows (written atomically) and ``<out_csv>.mean.json`` the means. Images whose
    files are unusable are listed in one error raised at the end, after the CSV is written
    (:class:`ImagesNotEvaluatedError`, which carries the result).
    """
    if convention not in CONVENTIONS:
        raise MetricsInputError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    if matcher not in MATCHERS:
        raise MetricsInputError(f"unknown matcher {matcher!r}; valid: {', '.join(MATCHERS)}")
    if out_csv is not None:  # before any work: never into an input folder, a folder, a read-only place ...
        try:
            check_output(out_csv, inputs=[pred_dir, gt_dir, trimap_dir], force=force, example="metrics.csv",
                         companions=[str(out_csv) + ".mean.json"])
        except (OSError, ValueError) as err:
            raise MetricsInputError(str(err)) from None
    if Path(pred_dir).is_dir() and Path(gt_dir).is_dir() and os.path.samefile(pred_dir, gt_dir):
        raise MetricsInputError(f"the prediction folder {pred_dir} is the ground-truth folder {gt_dir}: every image "
                                f"would score 0; give the folder of the predicted mattes")
    if workers is not None and workers < 0:
        raise MetricsInputError(f"workers must be >= 0 (0 or 1: in this process), got {workers}")
    pred_i = _index_dir(Path(pred_dir), "prediction")
    _refuse_duplicates(pred_i, Path(pred_dir), "prediction")
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
        raise ImagesNotEvaluatedError(f"{len(failed)} of {len(rows)} image(s) could not be evaluated{where}:\n  "
                                      + "\n  ".join(f"{r['name']}: {r['error']}" for r in failed[:10]), result)
    notes = [r for r in rows if r["note"]]
    if notes:
        warnings.warn(f"{len(notes)} image(s) have notes (e.g. {notes[0]['name']}: {notes[0]['note']})",
                      NoUnknownPixelsWarning, stacklevel=2)
    return result


def _run_jobs(jobs: list[tuple[str, str, str, str, str]], workers: int | None, progress: bool) -> list[dict]:

    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = 1 if len(jobs) < 8 else min(cores, len(jobs))
    bar = dict(total=len(jobs), desc="metrics", unit="img", disable=not progress)
    if workers <= 1:
        return [_evaluate_job(j) for j in tqdm(jobs, **bar)]

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
def workers_option(text: str) -> int:
    """``--workers``: a count of processes, 0 or more (0 or 1: in this process)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (0 or 1: in this process), got {text}")
    return n


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
    ap.add_argument("--force", action="store_true", help="replace an existing --out (never a file in --pred, --gt "
                    "or --trimap)")
    ap.add_argument("--workers", type=workers_option, default=None, help="processes (default: one per core)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = ap.parse_args(argv)
    try:
        with one_line_warnings(ap.prog):
            res = evaluate_folder(args.pred, args.gt, args.trimap, out_csv=args.out, convention=args.convention,
                                  workers=args.workers, matcher=args.layout, force=args.force,
                                  progress=not args.no_progress)
    except MetricsInputError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    m = res["mean"]
    print(f"{res['count']} images ({res['convention']}): SAD {m['sad']:.2f}  MSE {m['mse']:.4f}  "
          f"Grad {m['grad']:.2f}  Conn {m['conn']:.2f}")
    return 0
