"""The calibration study: how far the teacher leads the no-KD student, measured on the validation split only.

The default profile must follow from evidence, never from the test set. This module measures the gap between
teacher and student on **full-size validation composites** (the held-out training foregrounds of
:func:`matting_lib.data.datasets.split_train_val`, each over some of its own listed backgrounds, composited like the
Composition-1k test set with a fixed-band trimap like the test trimaps) as training goes on:

* :func:`train_run` trains one network (teacher or no-KD student) with periodic full snapshots
  (``TrainConfig.snapshot_every``), resumable in stints (a killed run resumes exactly from ``last.pt``);
* :func:`validation_composites` builds the validation images in memory (deterministic from the seed);
* :func:`evaluate_snapshots` scores every snapshot of a run on them (official SAD/MSE/Grad/Conn, per kind too)
  and caches the scores beside the snapshots (``curve.csv``), so a curve grows as a long run goes on;
* :func:`gap_table` pairs teacher and student curves into the relative gap 1 − SAD_teacher / SAD_student.

Command line (long teacher runs, one stint per call; interrupt any time, rerun to continue)::

    python -m matting_lib.calibration train --data data/synthetic-comp1k --kind teacher --width 0.5 \\
        --crop-size 160 --steps 20000 --snapshot-every 1000 --run-dir runs/calibrate/teacher-w0.5-c160
    python -m matting_lib.calibration curve --data data/synthetic-comp1k --run-dir runs/calibrate/teacher-w0.5-c160
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matting_lib.data.compositing import composite, list_test_items
from matting_lib.data.datasets import split_train_val
from matting_lib.data.layout import DatasetLayout, compare_training_data, dataset_identity, read_alpha, read_rgb
from matting_lib.data.output_safety import check_output_folder
from matting_lib.data.synthetic import fg_kind
from matting_lib.data.trimap import trimap_from_distance
from matting_lib.files import atomic_write_text, sha256_file
from matting_lib.inference.evaluation import predict_alpha, score_test_set
from matting_lib.metrics import METRIC_KEYS, evaluate_alpha
from matting_lib.networks.checkpoints import (
    check_ship_destination,
    load_checkpoint,
    load_evaluated_model,
    manifest_path,
    model_from_checkpoint,
    save_checkpoint,
    write_manifest,
)
from matting_lib.networks.models import build_student, build_teacher, count_parameters
from matting_lib.networks.profiling import count_macs
from matting_lib.params import help_of
from matting_lib.settings import TrainSettings, override, setting
from matting_lib.training.loop import list_snapshots
from matting_lib.training.run import train_network
from matting_lib.training.run_identity import identity_values, record
from matting_lib.training.run_identity import read_settings as stored


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class RunSettings(TrainSettings):
    """One calibration run: the shared training settings (:class:`matting_lib.settings.TrainSettings`, with the
    calibration's defaults) plus what is trained (``kind``) and how often a full snapshot is kept."""

    crop_size: int = override(TrainSettings, "crop_size", 160)
    steps: int = override(TrainSettings, "steps", 20000, "optimiser steps (a stint may stop earlier; a larger target "
                                                          "continues the run)")
    val_every: int = override(TrainSettings, "val_every", 500)
    num_workers: int = override(TrainSettings, "num_workers", 1)
    kind: str = setting("teacher", '"teacher" | "student" (no KD)')
    snapshot_every: int = setting(1000, "keep a full snapshot every N steps: the curve's points", identity=False)

    def __post_init__(self):
        super().__post_init__()
        if self.kind not in ("teacher", "student"):
            raise ValueError(f"kind={self.kind!r}; valid: teacher, student")
        if self.snapshot_every < 1 or self.crop_size < 32:
            raise ValueError(f"snapshot_every ({self.snapshot_every}) must be >= 1 and crop_size ({self.crop_size}) "
                             f">= 32")


def train_run(data_dir: str | os.PathLike, run_dir: str | os.PathLike, settings: RunSettings, *,
              stop_after_steps: int | None = None, progress: bool = True):
    """Train (or continue) one calibration run; returns :class:`matting_lib.training.loop.TrainResult`.

    ``run_dir/run.json`` records the run's identity (:func:`matting_lib.training.run_identity.training_identity`:
    settings, data, code) and every setting; a run folder holding another training is moved aside first (never
    continued), a larger ``steps`` continues it. ``stop_after_steps`` ends this stint early."""
    return train_network(settings, run_dir, data_dir, network=settings.kind, identity=f"calibration-{settings.kind}",
                         snapshot_every=settings.snapshot_every, stop_after_steps=stop_after_steps, progress=progress)


def study_plan(*, teacher_widths: Sequence[float], teacher_crop: int, teacher_steps: int, snapshot_every: int,
               student_widths: Sequence[float], student_crops: Sequence[int], student_steps: int,
               student_snapshot_every: int, student_seeds: int, batch_size: int = 16,
               threads: int = 0) -> dict[str, RunSettings]:
    """The runs of a calibration study, students first: ``{run folder name: settings}``. Students validate at
    every snapshot; teachers every half snapshot interval, with one DataLoader worker (as the shipped teacher)."""
    plan = {}
    for w in student_widths:
        for c in student_crops:
            for seed in range(student_seeds):
                plan[f"student-w{w:g}-c{c}-seed{seed}"] = RunSettings(
                    kind="student",
                    width=float(w),
                    crop_size=int(c),
                    steps=student_steps,
                    seed=seed,
                    snapshot_every=student_snapshot_every,
                    val_every=student_snapshot_every,
                    num_workers=0,
                    batch_size=batch_size,
                    threads=threads,
                )
    for w in teacher_widths:
        plan[f"teacher-w{w:g}-c{teacher_crop}"] = RunSettings(
            kind="teacher", width=float(w), crop_size=teacher_crop, steps=teacher_steps, snapshot_every=snapshot_every,
            val_every=max(1, snapshot_every // 2), num_workers=1, batch_size=batch_size, threads=threads)
    return plan


def train_stint(data_dir: str | os.PathLike, run_dir: str | os.PathLike, settings: RunSettings, *,
                stint_steps: int = 0, progress: bool = True):
    """:func:`train_run` for at most ``stint_steps`` more steps (0: to ``settings.steps``): one sitting's share of
    a long run. The next call continues exactly where this one stopped."""
    last = Path(run_dir) / "last.pt"
    done = load_checkpoint(last)["step"] if last.is_file() else 0
    stop = min(settings.steps, done + stint_steps) if stint_steps else None
    return train_run(data_dir, run_dir, settings, stop_after_steps=stop, progress=progress)


# ------------------------------------------------------------------------------------------ validation images
@dataclass(frozen=True)
class Composite:
    """One full-size validation image: uint8 image (H, W, 3), trimap (H, W) in {0, 128, 255}, alpha (H, W)."""

    name: str
    kind: str
    image: np.ndarray
    trimap: np.ndarray
    alpha: np.ndarray


def validation_composites(data_dir: str | os.PathLike, *, val_fraction: float = 0.1, split_seed: int = 0,
                          bg_per_fg: int = 4, trimap_width: tuple[float, float] = (6.0, 14.0),
                          seed: int = 0) -> list[Composite]:
    """The held-out foregrounds of the training split, each over its first ``bg_per_fg`` listed backgrounds,
    composited as the test set (top-left crop, :func:`matting_lib.data.compositing.composite`), with a fixed-band
    trimap (:func:`matting_lib.data.trimap.trimap_from_distance`, band width drawn per foreground from
    ``trimap_width`` with ``seed``, as the synthetic test trimaps). Deterministic; nothing is written."""
    layout = DatasetLayout.for_root(data_dir)
    names, bgs, k = layout.fg_names("train"), layout.bg_names("train"), layout.bg_per_fg("train")
    _, val_fg = split_train_val(names, val_fraction, split_seed)
    if not 1 <= bg_per_fg <= k:
        raise ValueError(f"bg_per_fg={bg_per_fg} must be between 1 and the {k} backgrounds listed per foreground")
    index = {n: i for i, n in enumerate(names)}
    out = []
    for fg_name in val_fg:
        fg, alpha = read_rgb(layout.fg_path("train", fg_name)), read_alpha(layout.alpha_path("train", fg_name))
        width = np.random.default_rng([seed, 11, index[fg_name]]).uniform(*trimap_width)
        trimap = trimap_from_distance(alpha, width)
        for b in range(bg_per_fg):
            bg_name = bgs[index[fg_name] * k + b]
            image = composite(fg, alpha, read_rgb(layout.bg_path("train", bg_name)))
            out.append(Composite(f"{Path(bg_name).stem}!{Path(fg_name).stem}!{b}", fg_kind(fg_name), image,
                                 trimap, alpha))
    return out


def score_model(model, composites: Sequence[Composite], *, metrics: Sequence[str] = METRIC_KEYS
                ) -> dict[str, dict[str, float]]:
    """Official metrics of ``model`` on ``composites``: ``{"all": {metric: mean}, "<kind>": {...}, ...}``, plus
    ``"count"`` per group. Predictions as :func:`matting_lib.inference.evaluation.predict_alpha` (8-bit, known regions
    forced), so the numbers are those the test-set evaluation would give on these images."""
    rows: dict[str, list[dict[str, float]]] = {}
    for c in composites:
        pred = predict_alpha(model, c.image, c.trimap)
        m = evaluate_alpha(pred, c.alpha, c.trimap)
        for group in ("all", c.kind):
            rows.setdefault(group, []).append({k: m[k] for k in metrics})
    return {g: {**{k: float(np.mean([r[k] for r in rs])) for k in metrics}, "count": len(rs)}
            for g, rs in rows.items()}


# ------------------------------------------------------------------------------------------ curves
CURVE_FIELDS = ("step", "group", "count", *METRIC_KEYS)


def evaluate_snapshots(run_dir: str | os.PathLike, composites: Sequence[Composite], *, progress: bool = True,
                       score_new: bool = True) -> list[dict]:
    """Score every snapshot of ``run_dir`` on ``composites``; rows ``{step, group, count, sad, mse, grad, conn}``.

    Scores are cached in ``run_dir/curve.csv`` keyed by step (and by a digest of the composites' names, so
    another validation set is scored afresh): a growing run only scores its new snapshots. ``score_new=False``
    returns the cached rows only (nothing is computed)."""

    run_dir = Path(run_dir)
    digest = hashlib.sha256("\n".join(c.name for c in composites).encode()).hexdigest()[:12]
    cache = run_dir / f"curve-{digest}.csv"
    rows = []
    if cache.is_file():
        with cache.open(newline="") as fh:
            rows = [{k: (r[k] if k == "group" else float(r[k])) for k in CURVE_FIELDS} for r in csv.DictReader(fh)]
    done = {int(r["step"]) for r in rows}
    todo = {s: p for s, p in list_snapshots(run_dir).items() if s not in done} if score_new else {}
    for step, path in todo.items():
        t0 = time.time()
        scores = score_model(load_evaluated_model(path), composites)  # a run with ema_decay: its averaged weights
        rows += [{"step": step, "group": g, **{k: s[k] for k in CURVE_FIELDS[2:]}} for g, s in sorted(scores.items())]
        rows.sort(key=lambda r: (r["step"], r["group"]))
        lines = [",".join(CURVE_FIELDS)] + [",".join(str(r[k]) for k in CURVE_FIELDS) for r in rows]
        atomic_write_text(cache, "\n".join(lines) + "\n")
        if progress:
            print(f"{run_dir.name} step {step}: validation SAD {scores['all']['sad']:.3f} "
                  f"({scores['all']['count']} images, {time.time() - t0:.0f} s)", flush=True)
    for r in rows:
        r["step"], r["count"] = int(r["step"]), int(r["count"])
    return rows


def recorded_curve(manifest_path: str | os.PathLike) -> tuple[RunSettings, list[dict], dict]:
    """The validation curve a shipped teacher's manifest records (:func:`ship_teacher` stores every scored
    snapshot's validation SAD, group ``all``): ``(settings, rows like evaluate_snapshots', validation info)``.
    Rows carry SAD only (the other metrics are NaN). For a study whose teacher run folder is gone: the curve the
    shipped teacher was chosen from, as it was measured."""
    path = Path(manifest_path)
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the teacher manifest ({err})") from None
    val = man.get("validation") or {}
    curve = val.get("curve_sad")
    if man.get("mode") != "calibration" or not curve or not isinstance(man.get("parameters"), dict):
        raise ValueError(f"{path}: records no calibration curve (mode 'calibration' with validation.curve_sad and "
                         f"parameters); only teachers shipped by python -m matting_lib.calibration ship have one")
    fields = set(RunSettings.__dataclass_fields__)
    settings = RunSettings(**{k: v for k, v in man["parameters"].items() if k in fields})
    nan = float("nan")
    rows = [
        {
            "step": int(step),
            "group": "all",
            "count": int(val.get("composites", 0)),
            "sad": float(sad),
            **{k: nan for k in METRIC_KEYS if k != "sad"},
        }
        for step, sad in sorted(curve.items(), key=lambda x: int(x[0]))
    ]
    return settings, rows, {"composites": val.get("composites"), "bg_per_fg": val.get("bg_per_fg"),
                            "dataset": man.get("dataset"), "source": str(path)}


def _same_run(a: RunSettings, b: RunSettings) -> bool:
    """The same training up to its length (the settings marked as identity, :mod:`matting_lib.settings`)."""
    return identity_values(a)[0] == identity_values(b)[0]


def recorded_stand_ins(runs_dir: str | os.PathLike, plan: dict[str, RunSettings], recorded: Sequence[str | os.PathLike],
                       *, data_dir: str | os.PathLike | None = None, n_composites: int | None = None,
                       bg_per_fg: int | None = None) -> dict[str, tuple[RunSettings, list[dict], str]]:
    """``{run name: (recorded settings, rows, manifest path)}`` for every run of ``plan`` not started in ``runs_dir``
    whose settings a shipped teacher's manifest in ``recorded`` has (:func:`recorded_curve`).

    Raises ``ValueError`` naming the manifest when it cannot stand in: trained on other data than ``data_dir`` (its
    dataset identity), or scored on another number of validation composites than ``n_composites`` or another
    ``bg_per_fg`` (each checked when given). Cheap (no scoring), so notebook 00 calls it before the students train."""
    records = [recorded_curve(p) for p in recorded]
    here = dataset_identity(DatasetLayout.for_root(data_dir)) if data_dir is not None and records else None
    out = {}
    for name, settings in plan.items():
        if (Path(runs_dir) / name / "run.json").is_file():
            continue
        for rec_settings, rows, info in records:
            if not _same_run(rec_settings, settings):
                continue
            problems = []
            if (n_composites is not None and info["composites"] != n_composites) or (
                    bg_per_fg is not None and info["bg_per_fg"] != bg_per_fg):
                problems.append(f"it was scored on {info['composites']} composites (bg_per_fg {info['bg_per_fg']}), "
                                f"this study on {n_composites} (bg_per_fg {bg_per_fg})")
            if here is not None and info["dataset"] != here:
                problems.append(f"it was trained and scored on other data than {data_dir} (identity "
                                f"{str((info['dataset'] or {}).get('sha256'))[:12]}… there, {here['sha256'][:12]}… "
                                f"here; generated data differ between CPUs with and without AVX-512: "
                                f"docs/reproducibility.md)")
            if problems:
                raise ValueError(f"the recorded curve in {info['source']} cannot stand in for run {name}: "
                                 + "; ".join(problems) + ". Train the run (notebook 00 with train=True and "
                                 "train_teachers=True) or leave that manifest out of recorded_teachers")
            out[name] = (rec_settings, rows, info["source"])
            break
    return out


def study_curves(runs_dir: str | os.PathLike, plan: dict[str, RunSettings], composites: Sequence[Composite], *,
                 progress: bool = True, recorded: Sequence[str | os.PathLike] = (), bg_per_fg: int | None = None,
                 data_dir: str | os.PathLike | None = None) -> dict[str, tuple[RunSettings, list[dict]]]:
    """``{run name: (recorded settings, evaluate_snapshots rows)}`` for every run of ``plan`` that has started in
    ``runs_dir`` (its ``run.json`` exists); runs never started are left out, so a study can be scored while some of
    its runs are still to come (notebook 00 with ``train=False``). Refuses a study with no started run.

    ``recorded``: shipped teachers' manifests (:func:`recorded_curve`). A teacher run of the plan that is not in
    ``runs_dir`` takes the curve of a manifest with the same settings, provided that manifest was scored on the
    same validation composites (count and ``bg_per_fg``) of the same data (``data_dir``'s identity); otherwise it
    is refused with the reason (:func:`recorded_stand_ins`). Its rows are what was measured when the teacher was
    shipped."""
    runs_dir = Path(runs_dir)
    out = {name: (read_settings(runs_dir / name), evaluate_snapshots(runs_dir / name, composites, progress=progress))
           for name in plan if (runs_dir / name / "run.json").is_file()}
    stand_ins = recorded_stand_ins(runs_dir, plan, recorded, data_dir=data_dir, n_composites=len(composites),
                                   bg_per_fg=bg_per_fg)
    for name, (rec_settings, rows, source) in stand_ins.items():
        out[name] = (rec_settings, rows)
        if progress:
            print(f"{name}: not in {runs_dir}; its curve ({len(rows)} points, validation SAD) as recorded in {source}")
    if not out:
        raise FileNotFoundError(f"no run of this calibration study has started in {runs_dir} (looked for "
                                f"{', '.join(plan)}); train them first: notebook 00 with train=True, "
                                "./run_all.sh --profile calibrate, or python -m matting_lib.calibration train")
    return {name: out[name] for name in plan if name in out}


def gap_table(teacher_rows: Sequence[dict], student_rows: Sequence[dict], *, group: str = "all") -> list[dict]:
    """Relative gap ``1 − SAD_teacher(step_t) / SAD_student(step_s)`` for every pair of snapshot steps of one
    group: positive = the teacher is better. Rows ``{teacher_step, student_step, teacher_sad, student_sad, gap}``."""
    t = {r["step"]: r["sad"] for r in teacher_rows if r["group"] == group}
    s = {r["step"]: r["sad"] for r in student_rows if r["group"] == group}
    return [{"teacher_step": ts, "student_step": ss, "teacher_sad": t[ts], "student_sad": s[ss],
             "gap": 1.0 - t[ts] / s[ss]} for ts in sorted(t) for ss in sorted(s)]


def training_tmacs(settings: RunSettings, steps: int) -> float:
    """Training compute of ``steps`` optimiser steps in tera multiply-accumulates: forward MACs of one crop
    (:func:`matting_lib.networks.profiling.count_macs`) × 3 (forward + backward ≈ 3 forwards) × batch × steps."""
    macs = _forward_macs(settings.kind, settings.width, settings.crop_size)
    return 3 * macs * settings.batch_size * steps / 1e12


@functools.cache
def _forward_macs(kind: str, width: float, size: int) -> int:

    return count_macs((build_teacher if kind == "teacher" else build_student)(width), size)


def setting_label(settings: RunSettings) -> str:
    """``teacher w0.25 c160`` (seeds of one setting share a label)."""
    return f"{settings.kind} w{settings.width:g} c{settings.crop_size}"


def read_settings(run_dir: str | os.PathLike) -> RunSettings:
    """The :class:`RunSettings` recorded in ``run_dir/run.json`` (with the target steps)."""
    return RunSettings(**stored(run_dir))


def curve_frame(runs: dict[str, tuple[RunSettings, Sequence[dict]]], *, group: str = "all") -> list[dict]:
    """One row per (setting, step): validation SAD mean ± std over the setting's seeds, compute in TMACs.
    ``runs`` maps a run name to ``(settings, evaluate_snapshots rows)``."""
    by: dict[tuple[str, int], list[float]] = {}
    kind: dict[str, RunSettings] = {}
    for settings, rows in runs.values():
        label = setting_label(settings)
        kind[label] = settings
        for r in rows:
            if r["group"] == group:
                by.setdefault((label, r["step"]), []).append(r["sad"])
    out = []
    for (label, step), sads in sorted(by.items()):
        st = kind[label]
        out.append({"setting": label, "kind": st.kind, "width": st.width, "crop_size": st.crop_size, "step": step,
                    "tmacs": training_tmacs(st, step), "seeds": len(sads), "sad": float(np.mean(sads)),
                    "sad_std": float(np.std(sads, ddof=1)) if len(sads) > 1 else 0.0})
    return out


def study_table(frame: Sequence[dict]) -> list[dict]:
    """Gap ``1 − SAD_teacher / SAD_student`` of every teacher point against every student setting at each of the
    student's steps that exist for all its seeds (validation split). Rows sorted by teacher, student, steps."""
    teachers = [r for r in frame if r["kind"] == "teacher"]
    students = [r for r in frame if r["kind"] == "student"]
    rows = [{"teacher": t["setting"], "teacher_step": t["step"], "teacher_tmacs": t["tmacs"], "teacher_sad": t["sad"],
             "student": s["setting"], "student_step": s["step"], "student_seeds": s["seeds"],
             "student_sad": s["sad"], "student_sad_std": s["sad_std"], "gap": 1.0 - t["sad"] / s["sad"]}
            for t in teachers for s in students]
    return sorted(rows, key=lambda r: (r["teacher"], r["student"], r["teacher_step"], r["student_step"]))


def table_markdown(table: Sequence[dict], *, student_steps: Sequence[int] = ()) -> str:
    """The study in one Markdown table: every teacher snapshot against every student setting at
    ``student_steps`` (e.g. the default profile's student budget; steps a student run lacks are skipped), or at
    the student's last step when ``student_steps`` is empty."""
    last = {}
    for r in table:
        last[r["student"]] = max(last.get(r["student"], 0), r["student_step"])
    wanted = {int(s) for s in student_steps}
    rows = [r for r in table if (r["student_step"] in wanted if wanted else r["student_step"] == last[r["student"]])]
    if not rows:
        raise ValueError(f"no student curve point at steps {sorted(wanted)}; the students have points up to "
                         f"{last or 'none'}")
    lines = ["| teacher | step | TMACs | val SAD | student (no KD) | step | seeds | val SAD | gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        std = f" ± {r['student_sad_std']:.2f}" if r["student_seeds"] > 1 else ""
        lines.append(f"| {r['teacher']} | {r['teacher_step']} | {r['teacher_tmacs']:.1f} | {r['teacher_sad']:.2f} | "
                     f"{r['student']} | {r['student_step']} | {r['student_seeds']} | {r['student_sad']:.2f}{std} | "
                     f"{100 * r['gap']:+.1f}% |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Rows of dicts (same keys) as CSV, atomically."""

    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------ shipping
def ship_teacher(data_dir: str | os.PathLike, run_dir: str | os.PathLike, step: int, out: str | os.PathLike, *,
                 profile: str = "default", force: bool = False, bg_per_fg: int = 4, progress: bool = True) -> Path:
    """Ship snapshot ``step`` of the teacher run ``run_dir`` as a profile's teacher (e.g.
    ``matting_lib/assets/teacher-default.pt``): the weights alone (no optimiser state) and a provenance manifest
    beside them with the run's settings, the data's identity, the snapshot's validation scores and the whole
    validation curve (the evidence for choosing this step), and its test metrics in both conventions (which
    notebook 02 re-checks when it loads the teacher).

    The snapshot must already be scored on the validation composites (``python -m matting_lib.calibration
    curve``); choose the step from that curve, never from test metrics. ``out`` (or its manifest) existing is
    refused without ``force``; nothing is written before every check has passed."""

    run_dir, out = Path(run_dir), Path(out)
    settings = read_settings(run_dir)
    if settings.kind != "teacher":
        raise ValueError(f"{run_dir} is a {settings.kind} run; only a teacher run is shipped as a profile's teacher")
    snapshots = list_snapshots(run_dir)
    if step not in snapshots:
        raise ValueError(f"{run_dir} has no snapshot at step {step}; it has {sorted(snapshots) or 'none'}")
    check_ship_destination(out, force=force)
    layout = DatasetLayout.for_root(data_dir)
    kind, _, sha = str(json.loads((run_dir / "run.json").read_text())["identity"]["dataset"]).partition(":")
    trained_on = {"kind": kind, "sha256": sha}
    same, message = compare_training_data({"dataset": trained_on}, layout)
    if not same:
        raise ValueError(f"{run_dir}: {message}")
    comps = validation_composites(data_dir, val_fraction=settings.val_fraction, split_seed=settings.split_seed,
                                  bg_per_fg=bg_per_fg)
    rows = evaluate_snapshots(run_dir, comps, score_new=False)
    val = {r["group"]: {k: r[k] for k in CURVE_FIELDS[2:]} for r in rows if r["step"] == step}
    if "all" not in val:
        raise ValueError(f"snapshot {step} of {run_dir} has no validation scores yet; score it first: python -m "
                         f"matting_lib.calibration curve --data {data_dir} --run-dir {run_dir}")
    ckpt = load_checkpoint(snapshots[step])
    model = model_from_checkpoint(ckpt, snapshots[step])
    items = list_test_items(layout)
    scores = score_test_set(model, items, progress=progress, report=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model=model, config=ckpt["config"], epoch=ckpt["epoch"], step=ckpt["step"],
                    metrics={"val_sad": val["all"]["sad"]})
    try:
        source = snapshots[step].resolve().relative_to(Path.cwd().resolve())
    except ValueError:  # a run folder outside the working directory: its name only (no machine paths)
        source = Path(run_dir.name) / "snapshots" / snapshots[step].name
    man = layout.root / "manifest.json"
    curve = {str(r["step"]): r["sad"] for r in rows if r["group"] == "all"}
    write_manifest(
        out, config="teacher", kind="teacher", mode="calibration", profile=profile, seed=settings.seed,
        width=settings.width, params=count_parameters(model), steps=step, parameters=record(settings),
        dataset=dataset_identity(layout), dataset_manifest_sha256=sha256_file(man) if man.is_file() else None,
        test_images=len(items), metrics={conv: s["mean"] for conv, s in scores.items()},
        validation={"composites": len(comps), "bg_per_fg": bg_per_fg, "step": step, "scores": val,
                    "curve_sad": curve},
        shipped_from=source.as_posix(),
        note=(f"snapshot {step} of the calibration run {run_dir.name} (python -m matting_lib.calibration train "
              f"--data {Path(data_dir).as_posix()} --kind teacher --width {settings.width:g} --crop-size "
              f"{settings.crop_size} --lr {settings.lr:g} --steps {settings.steps} --snapshot-every "
              f"{settings.snapshot_every} --val-every {settings.val_every} --num-workers {settings.num_workers}), "
              f"chosen on the validation curve (curve_sad); shipped by python -m matting_lib.calibration ship"))
    if progress:
        print(f"wrote {out} and {manifest_path(out).name}: step {step}, validation SAD {val['all']['sad']:.3f}, "
              f"test SAD {scores['official']['mean']['sad']:.3f} ({len(items)} images)")
    return out


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m matting_lib.calibration", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train or continue one calibration run (resumable; interrupt any time)")
    t.add_argument("--data", required=True, help="dataset root (Adobe layout)")
    t.add_argument("--run-dir", required=True)
    for f in RunSettings.__dataclass_fields__.values():
        t.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                       help=f"{help_of(RunSettings, f.name)} (default: {f.default!r})")
    t.add_argument("--stop-after-steps", type=int, default=None, help="end this stint after this global step")
    c = sub.add_parser("curve", help="score a run's snapshots on the validation composites (cached)")
    c.add_argument("--data", required=True)
    c.add_argument("--run-dir", required=True, nargs="+")
    c.add_argument("--bg-per-fg", type=int, default=4)
    c.add_argument("--split-seed", type=int, default=0)
    c.add_argument("--val-fraction", type=float, default=0.1)
    sh = sub.add_parser("ship", help="ship a scored teacher snapshot as a profile's teacher (weights + manifest)")
    sh.add_argument("--data", required=True, help="the dataset the run was trained on")
    sh.add_argument("--run-dir", required=True)
    sh.add_argument("--step", type=int, required=True, help="the snapshot, chosen on the validation curve")
    sh.add_argument("--out", required=True, help="e.g. matting_lib/assets/teacher-default.pt")
    sh.add_argument("--profile", default="default")
    sh.add_argument("--bg-per-fg", type=int, default=4, help="validation composites per held-out foreground")
    sh.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    try:
        return _run_command(args)
    except (ValueError, OSError) as err:  # bad settings, a missing dataset or run folder, an unwritable place
        print(f"matting_lib.calibration {args.cmd}: error: {err}", file=sys.stderr)
        return 1


def _run_command(args: argparse.Namespace) -> int:
    """One subcommand of :func:`main`; its errors (ValueError, OSError) name the file or value."""
    DatasetLayout.for_root(args.data).bg_per_fg("train")  # the dataset is there (its name lists name it if not)
    runs = {"ship": [args.run_dir], "curve": args.run_dir}.get(args.cmd, [])
    for run in runs:  # before any work: a missing run is named as such
        if not (Path(run) / "run.json").is_file():
            raise FileNotFoundError(f"run folder {run} " + ("holds no run.json: it is not a calibration run"
                                                            if Path(run).is_dir() else "does not exist")
                                    + "; give a folder written by python -m matting_lib.calibration train --run-dir")
    if args.cmd == "ship":
        ship_teacher(args.data, args.run_dir, args.step, args.out, profile=args.profile, force=args.force,
                     bg_per_fg=args.bg_per_fg)
        return 0
    if args.cmd == "train":
        fields = RunSettings.__dataclass_fields__
        settings = RunSettings(**{k: getattr(args, k) for k in fields})
        check_output_folder(args.run_dir, datasets=[args.data], what="--run-dir")
        res = train_run(args.data, args.run_dir, settings, stop_after_steps=args.stop_after_steps)
        print(f"{args.run_dir}: step {res.step} of {res.total_steps} ({'stint ended' if res.interrupted else 'done'})")
        return 0
    comps = validation_composites(args.data, val_fraction=args.val_fraction, split_seed=args.split_seed,
                                  bg_per_fg=args.bg_per_fg)
    for run in args.run_dir:
        evaluate_snapshots(run, comps)
    return 0
