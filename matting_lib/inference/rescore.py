"""Score every finished run of a profile on another test set: one ``runs.csv`` in notebook 04's format.

A second test distribution (``docs/robustness.md``) asks whether a verdict of Table 1 is a property of
distillation or of the test images; its students are not retrained, they are evaluated again::

    python -m matting_lib.evaluation --runs runs/default --data data/synthetic-comp1k-photos \\
        --out docs/default_photos_runs.csv

:func:`rescore_runs` predicts and scores (both metric conventions, as notebook 03) the teacher
(``teacher/teacher.pt``) and each finished student (``students/kd-<config>-seed<n>/best.pt``, the weights its
``metrics.json`` was scored with) on the test composites of ``data``. Each run's scores are kept in
``<out>.parts/<run>.json`` with the SHA-256 of the checkpoint and the test set's identity, so an interrupted rescoring
resumes where it stopped and a part whose checkpoint or test set changed is scored again. The CSV is written last,
atomically; an existing one is replaced only with ``force``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from matting_lib.data.compositing import build_test_set, list_test_items
from matting_lib.data.layout import DatasetLayout, dataset_identity
from matting_lib.data.output_safety import check_output
from matting_lib.files import atomic_write_text, sha256_file
from matting_lib.inference.evaluation import check_test_composites, score_test_set
from matting_lib.networks import checkpoints
from matting_lib.paths import RunLayout, parse_student_run_name
from matting_lib.reporting.results import runs_csv

CONVENTIONS = ("official", "spkd")


def finished_runs(runs_dir: str | os.PathLike) -> list[tuple[str, int | None, Path]]:
    """``(config, seed, checkpoint)`` of the teacher (seed None) and of every student run of ``runs_dir`` that has a
    ``metrics.json`` (a finished run) and its ``best.pt``, sorted by configuration and seed. Raises
    ``FileNotFoundError`` when there is no teacher or no finished student."""
    runs = RunLayout(runs_dir)
    if not runs.teacher_checkpoint.is_file():
        raise FileNotFoundError(f"{runs.teacher_checkpoint} is missing: {runs_dir} is not a profile's runs folder "
                                "(give the folder that holds teacher/ and students/, e.g. runs/default)")
    out: list[tuple[str, int | None, Path]] = [("teacher", None, runs.teacher_checkpoint)]
    found = []
    for folder in sorted(runs.students.glob("*")) if runs.students.is_dir() else []:
        parsed = parse_student_run_name(folder.name)
        if parsed and (folder / "metrics.json").is_file() and (folder / "best.pt").is_file():
            found.append((*parsed, folder / "best.pt"))
    if not found:
        raise FileNotFoundError(f"no finished student run (metrics.json and best.pt) under {runs.students}")
    return out + sorted(found, key=lambda r: (r[0], r[1]))


def _part_path(out_csv: Path, config: str, seed: int | None) -> Path:
    name = "teacher" if seed is None else f"{config}-seed{seed}"
    return out_csv.with_name(out_csv.name + ".parts") / f"{name}.json"


def rescore_runs(runs_dir: str | os.PathLike, data_dir: str | os.PathLike, out_csv: str | os.PathLike, *,
                 force: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Score the finished runs of ``runs_dir`` (:func:`finished_runs`) on the test set of ``data_dir`` and write
    ``out_csv`` (:func:`matting_lib.reporting.results.runs_csv`); returns the records (``config``, ``seed``,
    ``metrics``: {convention: means}). See the module docstring for the parts it keeps and resumes from."""
    out_csv = Path(out_csv)
    check_output(out_csv, datasets=[data_dir], force=force, what="--out", example="photos_runs.csv")
    layout = DatasetLayout.for_root(data_dir)
    items = list_test_items(layout)  # reads only the name lists; a missing one is a LayoutError naming it
    if not all(it.image_path.is_file() for it in items):
        build_test_set(layout, progress=progress)  # the published composites, as notebook 01 writes them
    check_test_composites(layout, items)  # an altered composite is never scored as the test set
    data_id = json.loads(json.dumps(dataset_identity(layout)))  # as a part file reads it back
    records = []
    runs = finished_runs(runs_dir)
    for i, (config, seed, ckpt) in enumerate(runs, 1):
        part = _part_path(out_csv, config, seed)
        digest = sha256_file(ckpt)
        if part.is_file():
            kept = json.loads(part.read_text(encoding="utf-8"))
            if kept.get("checkpoint_sha256") == digest and kept.get("data") == data_id:
                records.append(kept["record"])
                continue
        model = checkpoints.load_model(ckpt, kind="teacher" if seed is None else "student")
        scores = score_test_set(model, items, None, conventions=CONVENTIONS, progress=progress, report=False)
        record = {"config": config, "seed": seed, "metrics": {c: scores[c]["mean"] for c in CONVENTIONS}}
        atomic_write_text(part, json.dumps({"checkpoint": str(ckpt), "checkpoint_sha256": digest, "data": data_id,
                                            "images": len(items), "record": record}, indent=1) + "\n")
        log(f"[{i}/{len(runs)}] {config}{'' if seed is None else f' seed {seed}'}: SAD "
            f"{record['metrics']['official']['sad']:.4f} ({len(items)} images)")
        records.append(record)
    atomic_write_text(out_csv, runs_csv(records))
    return records


def rescore_main(runs_dir: str, data_dir: str, out_csv: str | None, *, force: bool, progress: bool,
                 prog: str) -> int:
    """The ``--runs`` form of ``python -m matting_lib.evaluation``; returns the exit code."""
    if not out_csv:
        print(f"{prog}: error: --runs needs --out FILE.csv (the runs.csv to write)", file=sys.stderr)
        return 2
    records = rescore_runs(runs_dir, data_dir, out_csv, force=force, progress=progress)
    print(f"wrote {out_csv}: {len(records)} runs (the teacher and {len(records) - 1} students) scored on "
          f"{data_dir}")
    return 0

