"""Where things are: the repository, paths as the notebooks mean them, and the one layout of a profile's runs folder.

A profile's runs live under ``<runs-dir>/<profile>/`` (:class:`RunLayout`)::

    teacher/                     notebook 02: teacher.pt, metrics.json; train/ when the teacher is trained here
    students/kd-<label>-seed<n>/ notebook 03, one student: best.pt, last.pt, log.csv, tb/, run.json, metrics.json
    teacher-cache/               the frozen teacher's outputs, shared by the student runs of a seed
    batch-cache/                 the composed training batches, shared by the student runs of a seed
    notebooks/                   the executed notebooks
    pipeline/                    the pipeline's markers (one JSON per finished notebook run)

Every module that reads or writes these folders asks :class:`RunLayout` for them. Standard library only, like
:mod:`matting_lib.pipeline`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO / "runs"


def repo_path(path: str | os.PathLike) -> Path:
    """``path`` as the notebooks mean it: absolute as given, else relative to the repository (where papermill
    runs them), whatever the current folder of an interactive kernel."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def student_run_name(label: str, seed: int) -> str:
    """The one name of a student run: its folder under ``students/`` and its pipeline job (marker, executed
    notebook), ``kd-<configuration label>-seed<seed>``, e.g. ``kd-spatial+channel-seed0``."""
    return f"kd-{label}-seed{seed}"


def parse_student_run_name(name: str) -> tuple[str, int] | None:
    """``(configuration label, seed)`` of a student run folder's name (:func:`student_run_name`), or None for any
    other name (a moved-aside ``<run>.stale-<time>`` folder included)."""
    m = re.fullmatch(student_run_name("(.+)", 0).removesuffix("0") + r"(\d+)", name)
    return (m[1], int(m[2])) if m else None


def metrics_problem(path: str | os.PathLike, config: str, seed: int | None = None) -> str | None:
    """Why ``path`` is not the ``metrics.json`` of the run of configuration ``config`` and ``seed`` (None: the
    teacher, ``config`` ``"teacher"``, whose seed is not compared): missing, not readable JSON, not a run record
    (no ``config`` or ``metrics``), or the record of another run (a run folder copied or renamed); None when it is.

    The one check of a run's record: notebook 04 (:func:`matting_lib.reporting.results.collect`) refuses a record
    that fails it, and the pipeline (:mod:`matting_lib.pipeline.state`) runs again the job whose record fails it,
    so rerunning that job always mends what notebook 04 refuses."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{path} is missing"
    except (OSError, ValueError) as err:  # truncated, not JSON, not UTF-8, a folder
        return f"{path} is not readable JSON ({err})"
    if not isinstance(rec, dict) or "config" not in rec or "metrics" not in rec:
        return f"{path} is not a run metrics file (it lacks 'config' or 'metrics'; notebooks 02 and 03 write them)"
    try:
        recorded = int(rec.get("seed"))
    except (TypeError, ValueError):
        recorded = None
    if rec["config"] != config or (seed is not None and recorded != seed):
        return (f"{path} holds config {rec['config']!r} seed {rec.get('seed')!r}, not {config!r}"
                + ("" if seed is None else f" seed {seed}") + ": a run folder was copied or renamed")
    return None


@dataclass(frozen=True)
class RunLayout:
    """The folders of one profile's runs, ``root`` = ``<runs-dir>/<profile>`` (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, runs_dir: str | os.PathLike, profile: str) -> RunLayout:
        """The layout of ``profile`` under ``runs_dir`` (the ``--runs-dir`` of the pipeline)."""
        return cls(Path(runs_dir) / profile)

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.teacher / "teacher.pt"

    @property
    def students(self) -> Path:
        return self.root / "students"

    def student(self, label: str, seed: int) -> Path:
        """The run folder of the student of configuration ``label`` and ``seed``."""
        return self.students / student_run_name(label, seed)

    def student_runs(self) -> dict[str, list[Path]]:
        """The student run folders under ``students/`` by configuration label, each list in seed order."""
        found: dict[str, list[tuple[int, Path]]] = {}
        for path in sorted(self.students.iterdir()) if self.students.is_dir() else []:
            parsed = parse_student_run_name(path.name)
            if parsed and path.is_dir():
                found.setdefault(parsed[0], []).append((parsed[1], path))
        return {label: [p for _, p in sorted(runs)] for label, runs in found.items()}

    @property
    def teacher_cache(self) -> Path:
        return self.root / "teacher-cache"

    @property
    def batch_cache(self) -> Path:
        return self.root / "batch-cache"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def markers(self) -> Path:
        return self.root / "pipeline"
