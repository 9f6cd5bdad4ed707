"""Predict alpha mattes for single images and for a test set, then score them.

Known regions are forced from the trimap by default (alpha = 0 where the trimap is 0, 1 where it is 255), as the
official DIM-PyTorch test script (``test.py``) and the SPKD evaluator do; the official metrics only look at the
unknown region, so this changes only how the saved mattes look (``force_known=False`` keeps the raw output).
Predictions are written as 8-bit PNGs (``round(α·255)``), the input the official MATLAB metrics expect; scoring a
folder is :func:`matting_lib.metrics.folder.evaluate_folder`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from matting_lib.data.compositing import MERGED_MANIFEST, build_test_set, list_test_items
from matting_lib.data.datasets import make_input
from matting_lib.data.layout import DatasetLayout, LayoutError, read_gray, read_rgb
from matting_lib.data.output_safety import (  # noqa: F401 - part of this module's API
    LOSSLESS_SUFFIXES,
    check_alpha_suffix,
    check_output,
    check_output_folder,
    one_line_warnings,
)
from matting_lib.data.synthetic import comp1k_test_kinds, fg_kind
from matting_lib.files import atomic_write_bytes, atomic_write_text, sha256_file
from matting_lib.inference.export import load_network
from matting_lib.metrics import METRIC_KEYS, MetricsInputError
from matting_lib.metrics.folder import ImagesNotEvaluatedError, workers_option
from matting_lib.networks.devices import checked_device


@torch.no_grad()
def predict_alpha(model: nn.Module, image_rgb: np.ndarray, trimap: np.ndarray, *,
                  device: torch.device | str | None = None, force_known: bool = True) -> np.ndarray:
    """Alpha matte of one image: ``image_rgb`` uint8 (H, W, 3), ``trimap`` uint8 (H, W) in {0, 128, 255}
    → uint8 (H, W) in [0, 255]. The model runs in eval mode (its mode is restored after); H, W ≥ 32."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {image_rgb.dtype} {image_rgb.shape}")
    if trimap.shape != image_rgb.shape[:2] or trimap.dtype != np.uint8:
        raise ValueError(f"trimap must be uint8 {image_rgb.shape[:2]} like the image, "
                         f"got {trimap.dtype} {trimap.shape}")
    # a model without parameters (an onnxruntime-backed export.OnnxMatting) takes CPU inputs
    device = torch.device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        # (1, 4, H, W) in channels_last: the convolutions take their faster NHWC path (~0.7x the time on a CPU)
        x = make_input(image_rgb, trimap)[None].to(device, memory_format=torch.channels_last)
        alpha = model(x)[0, 0].float().cpu().numpy()  # (H, W) in [0, 1]
    finally:
        model.train(was_training)
    bad = int((~np.isfinite(alpha)).sum())
    if bad:  # NaN would become 0 in the uint8 matte: a silently empty result
        raise ValueError(f"the network's output holds {bad} NaN/inf value(s) of {alpha.size}; its weights are "
                         f"broken (a diverged training?): use another checkpoint")
    if force_known:
        alpha[trimap == 0] = 0.0
        alpha[trimap == 255] = 1.0
    return np.clip(np.round(alpha * 255.0), 0, 255).astype(np.uint8)


def write_gray(path: str | os.PathLike, gray: np.ndarray) -> Path:
    """Write a uint8 (H, W) image atomically in the lossless format its suffix names (:data:`LOSSLESS_SUFFIXES`)."""
    path = check_alpha_suffix(path)
    ok, buf = cv2.imencode(path.suffix.lower(), gray)
    if not ok:
        raise RuntimeError(f"{path.suffix} encoding failed for {path}")
    return atomic_write_bytes(path, buf.tobytes())


def write_png(path: str | os.PathLike, gray: np.ndarray) -> Path:
    """Write a uint8 (H, W) image as PNG atomically; ``path`` must end in ``.png`` (never PNG bytes under
    another name)."""
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"{path}: write_png writes PNG files; give a .png name or use write_gray")
    return write_gray(path, gray)


def prediction_path(out_dir: str | os.PathLike, name: str) -> Path:
    """``out_dir/<name>.png`` (``name`` is a composite's file stem; a trailing ``.png`` is not doubled)."""
    return Path(out_dir) / (name if name.endswith(".png") else f"{name}.png")


def predict_folder(model: nn.Module, items: Sequence[Any], out_dir: str | os.PathLike, *, overwrite: bool = False,
                   device: torch.device | str | None = None, force_known: bool = True,
                   progress: bool = True) -> list[Path]:
    """Write ``out_dir/<item.name>.png`` for each item (``.name``, ``.image_path``, ``.trimap_path``, e.g.
    :class:`matting_lib.data.compositing.TestItem`); existing files are kept unless ``overwrite``. Returns all paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in tqdm(items, desc=f"predict → {out_dir.name}", disable=not progress):
        path = prediction_path(out_dir, item.name)
        paths.append(path)
        if path.is_file() and not overwrite:
            continue
        if item.trimap_path is None:
            raise ValueError(f"item {item.name} has no trimap; predictions need one (test items carry it)")
        alpha = predict_alpha(model, read_rgb(item.image_path), read_gray(item.trimap_path, what="trimap"),
                              device=device, force_known=force_known)
        write_png(path, alpha)
    return paths


def evaluate_model(model: nn.Module, items: Sequence[Any], pred_dir: str | os.PathLike, *,
                   conventions: Iterable[str] = ("official", "spkd"), overwrite: bool = False,
                   device: torch.device | str | None = None, workers: int | None = None,
                   progress: bool = True) -> dict[str, dict]:
    """Predict ``items`` into ``pred_dir`` and score them with :func:`matting_lib.metrics.folder.evaluate_folder`
    (Composition-1k name matching); returns ``{convention: evaluate_folder result}``, per-image CSVs beside
    the predictions (``pred_dir/../metrics_<convention>.csv``). ``workers`` None: as many metric processes as torch
    has threads here (one: in this process, as a pipeline run pinned to one thread scores: on the default
    profile's 200 composites 11.5 s, against 14.1 s with a pool of two spawned processes)."""
    from matting_lib.metrics.folder import evaluate_folder  # written by another module; imported only when scoring

    if not items:
        raise ValueError("no test items to evaluate")
    pred_dir = Path(pred_dir)
    predict_folder(model, items, pred_dir, overwrite=overwrite, device=device, progress=progress)
    gt_dir, trimap_dir = Path(items[0].alpha_path).parent, Path(items[0].trimap_path).parent
    wanted = {prediction_path(pred_dir, it.name).name for it in items}
    stray = sorted(p.name for p in pred_dir.glob("*.png") if p.name not in wanted)
    if stray:
        raise ValueError(f"{pred_dir} holds {len(stray)} prediction(s) of images not in this test set "
                         f"(e.g. {stray[0]}); use an empty folder per model and test set")
    workers = torch.get_num_threads() if workers is None else workers
    return {conv: evaluate_folder(pred_dir, gt_dir, trimap_dir, out_csv=pred_dir.parent / f"metrics_{conv}.csv",
                                  convention=conv, workers=workers, matcher="composition1k", force=True,
                                  progress=progress)
            for conv in conventions}


def score_test_set(model: nn.Module, items: Sequence[Any], pred_dir: str | os.PathLike | None = None, *,
                   conventions: Iterable[str] = ("official", "spkd"), device: torch.device | str | None = None,
                   workers: int | None = None, progress: bool = True, report: bool = True) -> dict[str, dict]:
    """Score a network on a test set: the one scoring step of notebooks 02 and 03 (``metrics.json`` of the
    teacher and every student), of shipping a teacher and of ``python -m matting_lib.evaluation``.

    Predicts ``items`` into ``pred_dir`` — emptied first, so stale predictions are never scored; ``None``: a
    temporary folder, removed afterwards — and scores them in each convention (official DIM and the SPKD code's)
    with :func:`evaluate_model`; prints one line per convention when ``report``. Returns
    ``{convention: evaluate_folder result}`` (``mean``, ``rows``, ``count``)."""

    with tempfile.TemporaryDirectory(prefix="matting-scores-") as tmp:
        folder = Path(tmp) / "predictions" if pred_dir is None else Path(pred_dir)
        shutil.rmtree(folder, ignore_errors=True)
        scores = evaluate_model(model, items, folder, conventions=conventions, device=device, workers=workers,
                                progress=progress)
    if report:
        for conv, sc in scores.items():
            print(f"{conv:8s} " + "  ".join(f"{m.upper()} {sc['mean'][m]:.4f}" for m in METRIC_KEYS)
                  + f"  ({sc['count']} images)")
    return scores


def qualitative_samples(items: Sequence[Any], pred_dir: str | os.PathLike, names: Sequence[str] | None = None,
                        ) -> list[dict[str, np.ndarray]]:
    """Image, trimap, ground truth, prediction and |error| (uint8 arrays) for the named items (default: first 4),
    ready for :func:`matting_lib.reporting.figures.qualitative_grid`."""
    by_name = {it.name: it for it in items}
    names = list(names) if names is not None else [it.name for it in items[:4]]
    samples = []
    for name in names:
        it = by_name[name]
        gt = read_gray(it.alpha_path, what="alpha matte")
        pred = read_gray(prediction_path(pred_dir, name), what="prediction")
        samples.append({"image": read_rgb(it.image_path), "trimap": read_gray(it.trimap_path, what="trimap"), "gt": gt,
                        "pred": pred, "error": np.abs(pred.astype(np.int16) - gt).astype(np.uint8)})
    return samples


# ------------------------------------------------------------------------------------ one call: checkpoint + folder
def foreground_categories(fg_names: Sequence[str]) -> dict[str, str] | None:
    """``{fg name: category}`` when the names give one: the synthetic benchmark's ``test-0003-hair.png``, or an
    official Composition-1k test name (``assets/comp1k_test_kinds.csv``). Names with neither are ``"other"``;
    None when no name gives a category (no breakdown is worth printing)."""
    official = comp1k_test_kinds()
    cats = {n: fg_kind(n) if fg_kind(n) != "other" else official.get(n, "other") for n in fg_names}
    return cats if any(c != "other" for c in cats.values()) else None


def _group_means(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, float]:
    return {"count": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def check_test_composites(layout: Any, items: Sequence[Any]) -> None:
    """Refuse test composites that were changed after they were composited: each composite of ``items`` present in
    ``Composition-1k/merged/`` must have the SHA-256 that ``merged/manifest.json`` recorded when
    :func:`matting_lib.data.compositing.build_test_set` wrote it (an altered composite would be scored as if it were the
    test set). A :class:`~matting_lib.data.layout.LayoutError` names the altered files and what to do. Composites
    without a manifest (made by other code) are taken as they are when they are all there, and refused when some are
    missing; an unfinished manifest is left to ``build_test_set``, which finishes it; missing composites with a manifest
    are not an error (they are composited again)."""

    merged = Path(layout.merged_dir)
    manifest = merged / MERGED_MANIFEST
    if not manifest.is_file():
        missing = [it.image_path.name for it in items if not it.image_path.is_file()]
        if missing and len(missing) < len(items):  # composites made by other code, some of them missing
            raise LayoutError(f"{merged} holds {len(items) - len(missing)} of the {len(items)} test composites but no "
                              f"{MERGED_MANIFEST} (they were made by other code) and lacks {len(missing)} (e.g. "
                              f"{missing[0]}); nothing is composited into it. Add the missing ones, or move the folder "
                              f"away to have the whole test set composited from the dataset's foregrounds and "
                              f"backgrounds")
        return
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        files = dict(record.get("files") or {}) if record.get("complete") else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as err:
        raise LayoutError(f"{manifest} cannot be read ({type(err).__name__}: {err}); it records the test composites' "
                          f"SHA-256. Delete {merged} to have the test set composited again from the dataset's "
                          f"foregrounds and backgrounds") from None
    if files is None:
        return
    altered = [it.image_path.name for it in items
               if it.image_path.is_file() and files.get(it.image_path.name) != sha256_file(it.image_path)]
    if altered:
        shown = ", ".join(altered[:5]) + (f" and {len(altered) - 5} more" if len(altered) > 5 else "")
        raise LayoutError(f"{len(altered)} of {len(items)} test composite(s) in {merged} are not the ones composited "
                          f"from this dataset (their SHA-256 differs from {MERGED_MANIFEST}): {shown}. They were "
                          f"changed afterwards, so their scores would not be the test set's; nothing was scored. "
                          f"Delete them to have them composited again from the dataset's foregrounds and backgrounds "
                          f"on the next run, or restore them from a copy")


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, *,
                        out_csv: str | os.PathLike | None = None, convention: str = "official",
                        pred_dir: str | os.PathLike | None = None, force: bool = False, device: str = "auto",
                        workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Load ``checkpoint`` (see :func:`matting_lib.inference.export.load_network`), predict every test composite of the
    Composition-1k-layout folder ``data_dir`` and score it (``convention`` "official" or "spkd"), in one call.

    The test composites are built first when ``Composition-1k/merged/`` lacks them
    (:func:`matting_lib.data.compositing.build_test_set`, as notebook 01 does); composites changed since they were built
    (their SHA-256 in ``merged/manifest.json``) are refused before the checkpoint is loaded
    (:func:`check_test_composites`). Predictions go to a temporary folder,
    or are kept in ``pred_dir`` (other files there are left alone and not scored; a prediction of the same name
    is replaced only with ``force``). ``out_csv`` (refused if it exists, unless ``force``) gets one row per
    image with its category; ``<out_csv>.summary.json`` the means. Both, and ``pred_dir``, are checked before any
    work (:mod:`matting_lib.data.output_safety`: never in ``data_dir``'s inputs or ground truth, never the checkpoint).
    When some images cannot be scored (an unreadable ground truth), the scored rows are still written (to
    ``out_csv``, else to a kept ``matting-eval-partial-*.csv`` in the temporary folder of the system) and a
    :class:`~matting_lib.metrics.MetricsInputError` names that file and the failed images.

    Returns ``{"checkpoint", "data", "convention", "count", "mean": {metric: value},
    "categories": {category: {"count", metric...}} (empty when the names give none), "rows": [...]}``; the
    metrics are those of :func:`matting_lib.metrics.evaluate_alpha` (SAD and Grad /1000 etc.).
    """

    # before any work: never into the dataset or onto an input; an existing result is replaced only with force
    if out_csv is not None:
        check_output(out_csv, inputs=[checkpoint], datasets=[data_dir], force=force, example="metrics.csv",
                     companions=[f"{out_csv}.summary.json"])
    if pred_dir is not None:
        check_output_folder(pred_dir, inputs=[checkpoint], datasets=[data_dir], what="--pred-dir")
    if Path(data_dir).is_file():
        raise NotADirectoryError(f"--data {data_dir} is a file; give the dataset folder that holds Combined_Dataset/")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 (0 or 1: in this process), got {workers}")
    layout = DatasetLayout.for_root(data_dir)
    items = list_test_items(layout)  # reads only the name lists; a missing one is a LayoutError naming it
    if pred_dir is not None:
        clash = [p for it in items if (p := prediction_path(pred_dir, it.name)).exists()]
        if clash and not force:
            raise FileExistsError(
                f"{pred_dir} already holds {len(clash)} prediction(s) of this test set (e.g. "
                f"{clash[0].name}); pass --force (force=True) to replace them, or choose another folder"
            )
    check_test_composites(layout, items)  # an altered composite is never scored as the test set

    model = load_network(checkpoint)
    dev = checked_device("cpu" if Path(checkpoint).suffix.lower() == ".onnx" else device)
    model = model.to(dev)
    if not all(it.image_path.is_file() for it in items):
        build_test_set(layout, progress=progress)  # the published composites, as notebook 01 writes them
    with tempfile.TemporaryDirectory(prefix="matting-eval-") as tmp:
        # a fresh folder: predictions of other images are refused, stale ones never reused
        try:
            scored = score_test_set(model, items, Path(tmp) / "pred", conventions=(convention,), device=dev,
                                    workers=workers, progress=progress, report=False)[convention]
        except ImagesNotEvaluatedError as err:  # some images unreadable: keep the rows scored, then say so
            scored = err.result
        if pred_dir is not None:
            Path(pred_dir).mkdir(parents=True, exist_ok=True)
            for it in items:
                shutil.copyfile(prediction_path(Path(tmp) / "pred", it.name), prediction_path(pred_dir, it.name))
    cats = foreground_categories([it.fg_name for it in items]) or {}
    cat_of = {prediction_path("", it.name).name: cats.get(it.fg_name, "") for it in items}
    rows = [{"name": r["name"], "category": cat_of.get(r["name"], ""), **{k: r[k] for k in METRIC_KEYS},
             "n_unknown": r["n_unknown"], "note": r["note"]} for r in scored["rows"] if not r["error"]]
    by_cat: dict[str, list[dict]] = {}
    for r in rows:
        if r["category"]:
            by_cat.setdefault(r["category"], []).append(r)
    result = {"checkpoint": str(checkpoint), "data": str(data_dir), "convention": convention,
              "count": scored["count"], "mean": scored["mean"],
              "categories": {c: _group_means(rs, METRIC_KEYS) for c, rs in sorted(by_cat.items())}, "rows": rows}
    failed = [{"name": r["name"], "error": r["error"]} for r in scored["rows"] if r["error"]]
    if failed:  # the means cover the scored images only: the summary says which were left out
        result["failed"] = failed
    summary = out_csv is not None
    if failed and out_csv is None:  # keep the scored rows in a file that outlives the temporary folder
        fd, name = tempfile.mkstemp(prefix="matting-eval-partial-", suffix=".csv")
        os.close(fd)
        out_csv = Path(name)
    if out_csv is not None:

        buf = io.StringIO()
        fields = list(rows[0]) if rows else ["name", "category", *METRIC_KEYS, "n_unknown", "note"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(Path(out_csv), buf.getvalue())
        if summary:
            atomic_write_text(Path(f"{out_csv}.summary.json"),
                              json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2) + "\n")
    if failed:
        where = (f"{out_csv} (the means in {out_csv}.summary.json cover them only)" if summary else
                 f"{out_csv} (pass --out to choose the file)")
        raise MetricsInputError(
            f"{len(failed)} of {len(scored['rows'])} image(s) could not be evaluated; the {len(rows)} scored row(s) "
            f"are in {where}. Fix or replace the files named below and run again:\n  "
            + "\n  ".join(f"{r['name']}: {r['error']}" for r in failed[:10])
            + (f"\n  ... and {len(failed) - 10} more" if len(failed) > 10 else ""))
    return result


def format_summary(result: dict[str, Any]) -> str:
    """The means of :func:`evaluate_checkpoint`'s result as a small text table, overall then per category."""
    head = f"{'':<10} {'images':>6} {'SAD':>8} {'MSE':>8} {'Grad':>8} {'Conn':>8}"
    lines = [f"{result['checkpoint']} on {result['data']} ({result['convention']} metrics)", head]
    groups = [("all", {"count": result["count"], **result["mean"]}), *result["categories"].items()]
    for name, m in groups:
        lines.append(f"{name:<10} {m['count']:>6} {m['sad']:>8.3f} {m['mse']:>8.4f} {m['grad']:>8.3f} "
                     f"{m['conn']:>8.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m matting_lib.evaluation --checkpoint CKPT --data DIR [--out CSV]``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m matting_lib.evaluation",
        description="Predict and score the test set of a Composition-1k-layout folder with one checkpoint: "
                    "SAD / MSE / Grad / Conn overall and per foreground category where the names give one.")
    ap.add_argument("--checkpoint", required=True,
                    help="matting_lib checkpoint (best.pt, teacher.pt), DIM-PyTorch BEST_checkpoint.tar, or a .onnx "
                         "from matting_lib.export")
    ap.add_argument("--data", required=True, help="dataset root holding Combined_Dataset/ (e.g. data/synthetic-smoke)")
    ap.add_argument("--out", default=None, help="per-image CSV to write (the means go to <out>.summary.json)")
    ap.add_argument("--convention", default="official", choices=("official", "spkd"),
                    help="official = the DIM MATLAB code (default); spkd = the SPKD code's evaluator")
    ap.add_argument("--pred-dir", default=None, help="keep the predicted PNGs in this folder (default: not kept)")
    ap.add_argument("--force", action="store_true", help="replace an existing --out and predictions in --pred-dir")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ... (a .onnx always runs on the CPU)")
    ap.add_argument("--workers", type=workers_option, default=None, help="metric processes (default: one per core)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = ap.parse_args(argv)

    try:
        with one_line_warnings(ap.prog):
            res = evaluate_checkpoint(args.checkpoint, args.data, out_csv=args.out, convention=args.convention,
                                      pred_dir=args.pred_dir, force=args.force, device=args.device,
                                      workers=args.workers, progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError, ImportError) as err:  # Checkpoint/Layout/MetricsInputError included
        print(f"{ap.prog}: error: {err}", file=sys.stderr)
        return 1
    print(format_summary(res))
    if args.out:
        print(f"wrote {args.out} and {args.out}.summary.json")
    return 0
