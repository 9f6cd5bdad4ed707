"""Whether a pipeline job is up to date: its marker, its fingerprint, and the outputs it must leave behind.

A job is up to date only if its marker ``<runs-dir>/<profile>/pipeline/<job>.json`` records the job's current
fingerprint (parameters, notebook source, upstream results) *and* every declared output verifies
(:func:`verify_outputs`), so a deleted or truncated file makes the job run again. Kinds of output (declared in
``Job.outputs`` as ``(kind, path)`` by :func:`matting_lib.pipeline.plan.plan_jobs`; the executed notebook is checked
for every job):

    dataset     the data folder: its test composites (``Composition-1k/merged/*.png``) exist
    checkpoint  a matting_lib checkpoint that loads (``weights_only``) with its ``format``, ``arch`` and weights
    metrics     a run's ``metrics.json``: the record of this job's run (:func:`matting_lib.paths.metrics_problem`,
                the check notebook 04 makes before it builds a table)
    tables      the results folder: Table 1 (both conventions; Markdown, CSV, LaTeX; ``table1_compact.md``),
                ``summary.md``, ``costs.md``, ``runs.csv``, and the CSV has a row for the teacher and for every
                configuration of the job
    notebook    an executed notebook (valid JSON; papermill recorded no exception)
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from matting_lib.paths import RunLayout, metrics_problem  # standard library only

TABLE_FILES = tuple(f"table1_{conv}.{ext}" for conv in ("official", "spkd") for ext in ("md", "csv", "tex")) + (
    "table1_compact.md", "summary.md", "costs.md", "runs.csv")


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _check_dataset(path: Path, job: Any) -> str | None:
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.data.layout import DatasetLayout

    merged = DatasetLayout.for_root(path).merged_dir
    if not path.is_dir():
        return f"dataset folder {path} is missing"
    if not merged.is_dir() or not any(merged.glob("*.png")):
        return f"{merged} holds no test composites"
    return None


def _check_checkpoint(path: Path, job: Any) -> str | None:
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.networks.checkpoints import load_checkpoint

    if not path.is_file():
        return f"{path} is missing"
    try:
        ckpt = load_checkpoint(path)
    except Exception as err:  # whatever the loader refuses (truncated, empty, foreign, unsafe): not an output
        return f"{path} does not load ({str(err).splitlines()[0][:160]})"
    if not ckpt.get("arch") or not ckpt.get("model"):
        return f"{path} has no architecture or no weights"
    return None


def _read_json(path: Path, what: str) -> tuple[Any, str | None]:
    """``(content, None)``, or ``(None, the problem)`` when ``path`` is missing or not readable JSON."""
    try:
        return _json(path), None
    except FileNotFoundError:
        return None, f"{what}{path} is missing"
    except (OSError, ValueError) as err:
        return None, f"{what}{path} is not readable{' JSON' if not what else ''} ({err})"


def _check_metrics(path: Path, job: Any) -> str | None:
    # notebook 04's own check (paths.metrics_problem): what it refuses, the job's rerun mends
    if job.stage == "distill":
        return metrics_problem(path, job.params.get("config"), job.params.get("seed"))
    return metrics_problem(path, "teacher")


def _check_tables(path: Path, job: Any) -> str | None:
    missing = [name for name in TABLE_FILES if not (path / name).is_file() or (path / name).stat().st_size == 0]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    wanted = {"teacher", *job.params.get("configs", [])}
    with open(path / "table1_official.csv", newline="", encoding="utf-8") as fh:
        rows = {r.get("config") for r in csv.DictReader(fh)}
    absent = sorted(wanted - rows)
    return f"{path / 'table1_official.csv'} has no row for {', '.join(absent)}" if absent else None


def _check_notebook(path: Path, job: Any) -> str | None:
    nb, problem = _read_json(path, "executed notebook ")
    if problem:
        return problem
    if nb.get("metadata", {}).get("papermill", {}).get("exception"):
        return f"executed notebook {path} records a failure"
    return None


def _check_file(path: Path, job: Any) -> str | None:
    return None if path.is_file() and path.stat().st_size > 0 else f"{path} is missing or empty"


KINDS = {"dataset": _check_dataset, "checkpoint": _check_checkpoint, "metrics": _check_metrics,
         "tables": _check_tables, "notebook": _check_notebook, "file": _check_file}


def verify_outputs(outputs: list[tuple[str, str]], job: Any) -> list[str]:
    """Problems with the declared ``outputs`` of ``job`` (empty: all present and valid)."""
    problems = []
    for kind, path in outputs:
        problem = KINDS[kind](Path(path), job)
        if problem:
            problems.append(problem)
    return problems


# ----------------------------------------------------------------------------------------------- markers
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker_path(runs_root: Path, profile: str, key: str) -> Path:
    return RunLayout.of(runs_root, profile).markers / f"{key}.json"


def executed_path(runs_root: Path, profile: str, job: Any) -> Path:
    return RunLayout.of(runs_root, profile).notebooks / f"{job.notebook.stem}-{job.key}.ipynb"


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def job_fingerprint(job: Any, runs_root: Path, profile: str) -> str:
    """Hash of the job's parameters, its notebook's source, the digest of the library code its results depend on
    (``job.code``: :data:`matting_lib.provenance.CODE` groups; docstrings and comments do not count) and its
    upstream jobs' results (their fingerprints and when they last ran: an upstream job executed again means new
    inputs here)."""
    upstream = []
    for dep in job.needs:
        m = _read_marker(marker_path(runs_root, profile, dep)) or {}
        upstream.append([m.get("fingerprint"), m.get("finished")])
    if job.inputs:
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.files import sha256_file  # lazily: the pipeline imports only the standard library up front
    files = [sha256_file(f) if Path(f).is_file() else "missing" for f in job.inputs]
    code = {}
    if job.code:
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.provenance import code_digest  # standard library only

        code = {"code": code_digest(*job.code)}
    return _digest({"params": job.params, "notebook": _notebook_source_digest(job.notebook), "upstream": upstream,
                    **({"inputs": files} if files else {}), **code})


def _notebook_source_digest(path: Path) -> str:
    if not path.is_file():
        return "missing"
    nb = json.loads(path.read_text())
    return _digest([c.get("source") for c in nb.get("cells", [])])


def job_state(job: Any, runs_root: Path, profile: str) -> tuple[bool, str]:
    """(up to date?, why not): the marker must match and every declared output exist and verify."""
    marker = _read_marker(marker_path(runs_root, profile, job.key))
    if marker is None:
        return False, "never finished"
    if marker.get("fingerprint") != job_fingerprint(job, runs_root, profile):
        return False, "parameters, notebook, library code or upstream results changed"
    problems = verify_outputs(job.outputs + [("notebook", str(executed_path(runs_root, profile, job)))], job)
    return (False, "; ".join(problems)) if problems else (True, "")


def is_done(job: Any, runs_root: Path, profile: str) -> bool:
    return job_state(job, runs_root, profile)[0]
