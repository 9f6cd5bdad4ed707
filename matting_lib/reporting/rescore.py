"""Score every finished run of a profile on another test set: one ``runs.csv`` in notebook 04's format.

A second test distribution (``docs/robustness.md``) asks whether a verdict of Table 1 is a property of
distillation or of the test images; its students are not retrained, they are evaluated again::

    python -m matting_lib.reporting.rescore --runs runs/default --data data/synthetic-comp1k-photos \\
        --generate comp1k-photos:1 --out docs/default_photos_runs.csv

:func:`rescore_runs` predicts and scores (both metric conventions, as notebook 03) the teacher
(``teacher/teacher.pt``) and each finished student (``students/kd-<config>-seed<n>/best.pt``, the weights its
``metrics.json`` was scored with) on the test composites of ``data``. Each run's scores are kept in
``<work>/<out stem>.parts/<run>.json`` (``work``: ``runs/rescore`` by default, never beside a committed CSV) with the
SHA-256 of the checkpoint and the test set's identity, so an interrupted rescoring resumes where it stopped and a part
whose checkpoint or test set changed is scored again. The CSV is written last, atomically; an existing one is
replaced only with ``force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from matting_lib.data.compositing import build_test_set, list_test_items
from matting_lib.data.layout import DatasetLayout, dataset_identity
from matting_lib.data.output_safety import check_output
from matting_lib.data.synthetic import PRESETS, generate_dataset
from matting_lib.files import atomic_write_text, sha256_file
from matting_lib.inference.evaluation import check_test_composites, score_test_set
from matting_lib.networks import checkpoints
from matting_lib.paths import RunLayout, parse_student_run_name, repo_path
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
    found = [(label, parse_student_run_name(folder.name)[1], folder / "best.pt")
             for label, folders in runs.student_runs().items() for folder in folders
             if (folder / "metrics.json").is_file() and (folder / "best.pt").is_file()]
    if not found:
        raise FileNotFoundError(f"no finished student run (metrics.json and best.pt) under {runs.students}")
    return out + sorted(found, key=lambda r: (r[0], r[1]))


def part_path(work: str | os.PathLike, out_csv: str | os.PathLike, config: str, seed: int | None) -> Path:
    """Where the scores of one run are kept while ``out_csv`` is made."""
    name = "teacher" if seed is None else f"{config}-seed{seed}"
    return repo_path(work) / f"{Path(out_csv).stem}.parts" / f"{name}.json"


def rescore_runs(runs_dir: str | os.PathLike, data_dir: str | os.PathLike, out_csv: str | os.PathLike, *,
                 work: str | os.PathLike = "runs/rescore", force: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Score the finished runs of ``runs_dir`` (:func:`finished_runs`) on the test set of ``data_dir`` and write
    ``out_csv`` (:func:`matting_lib.reporting.results.runs_csv`); returns the records (``config``, ``seed``,
    ``metrics``: {convention: means}). See the module docstring for the parts it keeps and resumes from."""
    out_csv = Path(out_csv)
    log = log or (lambda message: print(message, flush=True))  # a line per run as it is scored, also into a file
    runs = finished_runs(runs_dir)
    check_output(out_csv, datasets=[data_dir], force=force, what="--out", example="photos_runs.csv")
    layout = DatasetLayout.for_root(data_dir)
    items = list_test_items(layout)  # reads only the name lists; a missing one is a LayoutError naming it
    if not all(it.image_path.is_file() for it in items):
        build_test_set(layout, progress=progress)  # the published composites, as notebook 01 writes them
    check_test_composites(layout, items)  # an altered composite is never scored as the test set
    data_id = json.loads(json.dumps(dataset_identity(layout)))  # as a part file reads it back
    records = []
    for i, (config, seed, ckpt) in enumerate(runs, 1):
        part = part_path(work, out_csv, config, seed)
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


def generate_test_split(data_dir: str | os.PathLike, spec: str, *, progress: bool = True) -> Path:
    """``--generate PRESET:SEED``: the test split of a synthetic preset into ``data_dir``
    (:func:`matting_lib.data.synthetic.generate_dataset`, which keeps a complete folder of the same parameters and
    refuses one of others)."""
    preset, _, seed = spec.partition(":")
    if preset not in PRESETS or not seed.isdigit():
        raise ValueError(f"--generate {spec!r}: expected PRESET:SEED with a preset of {', '.join(PRESETS)} and a "
                         f"seed >= 0, e.g. comp1k-photos:1")
    return generate_dataset(data_dir, seed=int(seed), preset=preset, splits=("test",), progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m matting_lib.reporting.rescore --runs RUNS_DIR --data DIR --out CSV``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m matting_lib.reporting.rescore",
        description="Score every finished run of a profile's runs folder (the teacher and each student's best.pt) "
                    "on the test set of another Composition-1k-layout folder, both metric conventions, and write "
                    "one runs.csv in notebook 04's format (resumable).")
    ap.add_argument("--runs", required=True, metavar="RUNS_DIR",
                    help="the profile's runs folder, holding teacher/ and students/ (e.g. runs/default)")
    ap.add_argument("--data", required=True, help="dataset root whose test set scores the runs")
    ap.add_argument("--out", required=True, help="the runs.csv to write")
    ap.add_argument("--work", default="runs/rescore",
                    help="where each run's scores are kept until --out is written, to resume from (default: "
                         "runs/rescore)")
    ap.add_argument("--generate", metavar="PRESET:SEED",
                    help="first generate the test split of this synthetic preset and seed into --data (e.g. "
                         "comp1k-photos:1, the second test distribution; kept and verified when already there)")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = ap.parse_args(argv)
    try:
        if args.generate:
            generate_test_split(args.data, args.generate, progress=not args.no_progress)
        records = rescore_runs(args.runs, args.data, args.out, work=args.work, force=args.force,
                               progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError) as err:  # LayoutError and checkpoint errors included
        print(f"{ap.prog}: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(records)} runs (the teacher and {len(records) - 1} students) scored on "
          f"{args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
