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


def fingerprint_parts(job: Any, runs_root: Path, profile: str) -> dict[str, Any]:
    """What a job's fingerprint is made of, part by part (recorded in its marker, so that a rerun can say which
    part changed): ``params`` (digest of its parameters), ``notebook`` (its source), ``upstream`` (per upstream job,
    its fingerprint and when it last ran: an upstream job executed again means new inputs here), ``inputs`` (the
    SHA-256 of each input file) and ``code`` (per :mod:`matting_lib.provenance` group of ``job.code``, the digest of
    the library code its results depend on; docstrings and comments do not count)."""
    upstream = {}
    for dep in job.needs:
        m = _read_marker(marker_path(runs_root, profile, dep)) or {}
        upstream[dep] = [m.get("fingerprint"), m.get("finished")]
    parts: dict[str, Any] = {"params": _digest(job.params), "notebook": _notebook_source_digest(job.notebook),
                             "upstream": upstream}
    if job.inputs:
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.files import sha256_file  # lazily: the pipeline imports only the standard library up front

        parts["inputs"] = {str(f): sha256_file(f) if Path(f).is_file() else "missing" for f in job.inputs}
    if job.code:
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.provenance import group_digests  # standard library only

        parts["code"] = group_digests(*job.code)
    return parts


def parts_fingerprint(parts: dict[str, Any]) -> str:
    """The fingerprint of a job whose :func:`fingerprint_parts` are ``parts``."""
    return _digest(parts)


def job_fingerprint(job: Any, runs_root: Path, profile: str) -> str:
    """Hash of the job's :func:`fingerprint_parts`."""
    return parts_fingerprint(fingerprint_parts(job, runs_root, profile))


def changed_parts(marker: dict, job: Any, parts: dict[str, Any]) -> str:
    """Which parts of a job's fingerprint differ from those its marker recorded, in words: the parameters by name,
    the notebook, the upstream jobs, the input files and the code groups that changed."""
    old = marker.get("parts")
    if not isinstance(old, dict):
        return "parameters, notebook, library code or upstream results changed (its marker does not record which)"
    said = []
    if old.get("params") != parts["params"]:
        before, now = marker.get("params") or {}, json.loads(json.dumps(job.params, default=str))
        keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        said.append("parameters changed: " + ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in keys[:4])
                    + (", …" if len(keys) > 4 else "") if keys else "parameters changed")
    if old.get("notebook") != parts["notebook"]:
        said.append(f"the notebook {job.notebook.name} changed")
    ran = sorted(d for d in parts["upstream"] if (old.get("upstream") or {}).get(d) != parts["upstream"][d])
    if ran:
        said.append(f"upstream results changed ({', '.join(ran)} ran again)")
    files = sorted(f for f in parts.get("inputs", {}) if (old.get("inputs") or {}).get(f) != parts["inputs"][f])
    if files:
        said.append(f"input file(s) changed: {', '.join(files)}")
    code = sorted(g for g in parts.get("code", {}) if (old.get("code") or {}).get(g) != parts["code"][g])
    if code:
        said.append(f"library code changed: {', '.join(code)} (the units of each group: matting_lib.provenance)")
    return "; ".join(said) or "its fingerprint changed"


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
    parts = fingerprint_parts(job, runs_root, profile)
    if marker.get("fingerprint") != parts_fingerprint(parts):
        return False, changed_parts(marker, job, parts)
    problems = verify_outputs(job.outputs + [("notebook", str(executed_path(runs_root, profile, job)))], job)
    return (False, "; ".join(problems)) if problems else (True, "")


