"""The pipeline's shared names, standard library only: the stages and their notebooks, the profile keys the pipeline
consumes itself, a notebook job, and the two errors every part of the pipeline raises.

Every other module of :mod:`matting_lib.pipeline` imports these from here, so the package has no import cycle and
``python -m matting_lib.pipeline --help`` answers before the heavy dependencies are installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matting_lib.paths import REPO

STAGES = ("data", "calibrate", "teacher", "distill", "results", "explorer")
NOTEBOOKS = {
    "calibrate": "00_calibration.ipynb",
    "data": "01_compositing.ipynb",
    "teacher": "02_teacher.ipynb",
    "distill": "03_distill.ipynb",
    "results": "04_results.ipynb",
    "explorer": "05_similarity_explorer.ipynb",
}
TIMEOUT_KEYS = ("cell_timeout_s", "job_timeout_s")
#: Profile keys the pipeline consumes itself, per stage table (never passed to a notebook).
PIPELINE_KEYS = {stage: set(TIMEOUT_KEYS) | ({"configs", "seeds", "first_seed", "jobs", "threads", "shared_caches"}
                                             if stage == "distill" else set())
                 for stage in STAGES}
#: Limits for a profile that sets none (each shipped profile sets its own): 6 h per cell, 24 h per job.
DEFAULT_LIMITS = {"cell_timeout_s": 6 * 3600, "job_timeout_s": 24 * 3600}


class PipelineError(RuntimeError):
    """A stage failed or the run cannot start; the message says which notebook/cell/key and what to do."""


class ProfileError(PipelineError):
    """The profile (after ``--set``) is unusable: nothing was executed. ``run_all.sh`` exits with code 2."""


@dataclass
class Job:
    """One notebook execution and what it must leave behind."""

    stage: str
    key: str  # unique within the profile; a student's is its run name, e.g. "kd-spatial+channel-seed0"
    params: dict[str, Any]
    needs: list[str] = field(default_factory=list)  # keys of jobs whose results this one reads
    inputs: list[str] = field(default_factory=list)  # files whose contents are part of the fingerprint
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (kind, path): see pipeline.state.KINDS
    limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))  # cell_/job_timeout_s
    notebook: Path | None = None  # default: notebooks/<the stage's notebook>
    train_dir: str | None = None  # the training folder this job resumes (moved aside by --force)
    code: tuple[str, ...] = ()  # provenance groups (CODE names, kd:<type>) whose digests are in the fingerprint

    def __post_init__(self) -> None:
        if self.notebook is None:
            self.notebook = REPO / "notebooks" / NOTEBOOKS[self.stage]


