"""The pipeline's notebook runs as submitit jobs: on a SLURM cluster (``run_all.sh --executor slurm``) or as local
processes through submitit's ``LocalExecutor`` (``--executor local-submitit``, the test mode).

Each notebook run is one job, :class:`NotebookJob`: in the job's process it calls
:func:`matting_lib.pipeline.cli.run_job`, which executes the notebook under its time limits, verifies its outputs
and writes its marker, exactly as a local run does. :class:`SubmititRunner` submits a stage's jobs and waits for
them (stage order kept: data, teacher, students in parallel, results, explorer); with ``--detach`` it submits what
is ready and returns, and the same command later reports what finished, failed or is still queued and goes on.
Everything goes under ``<runs-dir>/<profile>/slurm/``: one record per job (``<job>.json``: job id, log paths,
the job's fingerprint when submitted) and submitit's folder per job id (``logs/<id>/``: the pickled call, the
``sbatch`` script, ``<id>_0_log.out`` / ``.err``, the result).

Preemption and time limits: submitit submits with ``--signal=USR2@90``; on that signal it calls
:meth:`NotebookJob.checkpoint`, which kills the notebook's kernel and resubmits the same call, and requeues the
job (``scontrol requeue``, at most ``max_num_timeout`` times for time limits). The requeued job executes the
notebook again, and its training resumes from ``last.pt`` exactly (:mod:`matting_lib.training.loop`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from submitit.core.core import Job as SubmititJob
from submitit.core.utils import FailedSubmissionError
from submitit.helpers import Checkpointable, DelayedSubmission
from submitit.local.local import LocalExecutor, LocalJob
from submitit.slurm.slurm import SlurmExecutor, SlurmJob

from matting_lib import cpu_env
from matting_lib.files import atomic_write_text, pid_alive
from matting_lib.pipeline.common import Job, PipelineError
from matting_lib.pipeline.execute import kill_running_kernels
from matting_lib.pipeline.executors import DEFAULT_SLURM_GPUS, DEFAULT_SLURM_TIME, slurm_minutes
from matting_lib.pipeline.state import job_fingerprint

QUEUED_STATES = {"PENDING", "REQUEUED", "CONFIGURING", "UNKNOWN", "REQUEUE_HOLD", "REQUEUE_FED", ""}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "STAGE_OUT", "SIGNALING"}
POLL_S = {"slurm": 30.0, "local-submitit": 1.0}


class NotebookJob(Checkpointable):
    """One notebook run as a submitit job: ``run_job(job, runs_root, profile)`` in the job's process (``run_job``
    is :func:`matting_lib.pipeline.cli.run_job`; it returns the wall seconds or raises ``PipelineError``)."""

    def __init__(self, run_job: Callable[..., float], job: Job, runs_root: Path, profile: str):
        self.run_job, self.job, self.runs_root, self.profile = run_job, job, Path(runs_root), profile

    def __call__(self) -> float:
        cpu_env.pin()  # as run_all.sh pins the driver's: the job's kernel inherits it
        return self.run_job(self.job, self.runs_root, self.profile)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Preempted or at the time limit: stop the notebook's kernel (so no training goes on writing behind the
        requeued job) and resubmit the same call; its training resumes from ``last.pt``."""
        kill_running_kernels()
        return super().checkpoint(*args, **kwargs)


class _OfflineSlurmExecutor(SlurmExecutor):
    """submitit's ``SlurmExecutor`` where there is no SLURM: it validates the parameters (``update_parameters``)
    and writes the ``sbatch`` script as submitit would, and is never used to submit."""

    @classmethod
    def affinity(cls) -> int:
        return 1


def slurm_parameters(opts: dict[str, Any], job: Job, profile: str) -> dict[str, Any]:
    """``SlurmExecutor.update_parameters`` arguments of one job. ``opts``: ``partition``, ``gpus``, ``time``
    (SLURM syntax), ``cpus``, ``mem``, ``account``, ``qos`` (None: not set). The data stage gets no GPU (it only
    composites images); a teacher trained with ``teacher.ddp_processes = N`` gets N GPUs."""
    gpus = DEFAULT_SLURM_GPUS if opts.get("gpus") is None else int(opts["gpus"])
    if job.stage == "data":
        gpus = 0
    elif job.stage == "teacher" and job.params.get("mode", "train") == "train":
        gpus = max(gpus, int(job.params.get("ddp_processes", 1)))
    params: dict[str, Any] = {"job_name": f"{profile}-{job.key}", "time": slurm_minutes(opts.get("time") or
                                                                                        DEFAULT_SLURM_TIME),
                              "nodes": 1, "ntasks_per_node": 1,
                              # eligible for requeueing (preemption, and submitit's requeue at the time limit)
                              "additional_parameters": {"requeue": True}}
    if gpus:
        params["gpus_per_node"] = gpus
    for key, name in (("cpus", "cpus_per_task"), ("mem", "mem"), ("partition", "partition"),
                      ("account", "account"), ("qos", "qos")):
        if opts.get(key) is not None:
            params[name] = opts[key]
    return params


def max_requeues(job: Job, time_min: int) -> int:
    """How often a job may be requeued at its time limit: enough for its ``job_timeout_s`` in ``time_min`` pieces,
    at least submitit's default of 3."""
    return max(3, math.ceil(job.limits["job_timeout_s"] / 60 / time_min) + 1)


def sbatch_script(folder: str | Path, params: dict[str, Any]) -> str:
    """The ``sbatch`` script submitit writes for a job with these ``SlurmExecutor`` parameters, made without a
    cluster; the parameters go through submitit's own validation (a wrong name or value raises ``ValueError``)."""
    ex = _OfflineSlurmExecutor(folder)
    ex.update_parameters(**params)
    # the text SlurmExecutor writes before calling sbatch (submitit has no public call that only renders it)
    return ex._make_submission_file_text(ex._submitit_command_str, "")


def _local_job_alive(pid: int) -> bool:
    """Whether a local-submitit job's controller process runs (reaped here when it is our child that ended)."""
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # started by an earlier call of the pipeline
        return pid_alive(pid)


class SubmititRunner:
    """Submits and follows a stage's jobs (see the module docstring). ``kind``: ``"slurm"`` or
    ``"local-submitit"``; ``opts``: the ``--slurm-*`` options (see :func:`slurm_parameters`)."""

    def __init__(self, kind: str, run_job: Callable[..., float], runs_root: Path, profile: str,
                 opts: dict[str, Any], *, detach: bool = False, parallel: int = 1, log=print):
        self.kind, self.run_job, self.runs_root, self.profile = kind, run_job, Path(runs_root), profile
        self.opts, self.detach, self.log = opts, detach, log
        self.parallel = parallel if kind == "local-submitit" else 10 ** 6  # the cluster schedules its own jobs
        self.folder = self.runs_root / profile / "slurm"
        self._reported = False

    @classmethod
    def from_args(cls, args, run_job: Callable[..., float], runs_root: Path) -> SubmititRunner:
        opts = {k.removeprefix("slurm_"): getattr(args, k) for k in vars(args) if k.startswith("slurm_")}
        parallel = args.jobs if args.jobs is not None else 1
        return cls(args.executor, run_job, runs_root, args.profile, opts, detach=args.detach, parallel=parallel)

    # ------------------------------------------------------------------ submitting
    def _executor(self, job: Job):
        logs = self.folder / "logs" / "%j"
        if self.kind == "local-submitit":
            ex = LocalExecutor(logs)
            # the pipeline's own watchdog (job_timeout_s) stops a job first; this is submitit's outer limit
            ex.update_parameters(timeout_min=job.limits["job_timeout_s"] / 60 + 10)
            return ex
        params = slurm_parameters(self.opts, job, self.profile)
        try:
            ex = SlurmExecutor(logs, max_num_timeout=max_requeues(job, params["time"]))
        except RuntimeError as err:  # submitit: no srun on this machine
            raise PipelineError(f"--executor slurm: {err} Run ./run_all.sh on the cluster's login node, or use "
                                f"--executor local-submitit to try the same path on this machine.") from None
        ex.update_parameters(**params)
        return ex

    def _submit(self, job: Job) -> SubmititJob:
        try:
            handle = self._executor(job).submit(NotebookJob(self.run_job, job, self.runs_root, self.profile))
        except FailedSubmissionError as err:
            raise PipelineError(f"submitting job {job.key!r} failed: {err}") from None
        rec = {"key": job.key, "executor": self.kind, "job_id": str(handle.job_id),
               "folder": str(self.folder / "logs" / "%j"), "stdout": str(handle.paths.stdout),
               "stderr": str(handle.paths.stderr), "fingerprint": job_fingerprint(job, self.runs_root, self.profile),
               "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._record_path(job.key), json.dumps(rec, indent=2) + "\n")
        self.log(f"[{self.profile}] {job.key}: submitted as job {handle.job_id}; log {handle.paths.stdout}")
        return handle

    # ------------------------------------------------------------------ records
    def _record_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def _read(self, key: str) -> dict | None:
        try:
            return json.loads(self._record_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _retire(self, rec: dict) -> None:
        """Move a record of a job that ended to ``slurm/history/``, so the job can be submitted again."""
        path = self._record_path(rec["key"])
        history = self.folder / "history"
        history.mkdir(parents=True, exist_ok=True)
        path.replace(history / f"{rec['key']}-{rec['job_id']}.json")

    def _handle(self, rec: dict) -> SubmititJob:
        cls = LocalJob if rec["executor"] == "local-submitit" else SlurmJob
        return cls(folder=rec["folder"], job_id=rec["job_id"])

    def state(self, rec: dict, handle: SubmititJob | None = None) -> tuple[str, str]:
        """(``queued`` | ``running`` | ``finished`` | ``failed``, detail) of a recorded job."""
        handle = handle or self._handle(rec)
        if handle.paths.result_pickle.exists():
            err = handle.exception()
            return ("finished", "") if err is None else ("failed", str(err).strip())
        if rec["executor"] == "local-submitit":
            proc = getattr(handle, "_process", None)
            alive = proc.poll() is None if proc is not None else _local_job_alive(int(rec["job_id"]))
            return ("running", "") if alive else ("failed", "its process ended without a result")
        info = handle.get_info(mode="force")
        slurm_state = (info.get("State") or "UNKNOWN").split()[0]
        if slurm_state in QUEUED_STATES:
            return "queued", slurm_state
        if slurm_state in RUNNING_STATES:
            return "running", slurm_state
        return "failed", f"SLURM state {slurm_state} without a result"

    def report(self) -> None:
        """One line per recorded job: what finished, failed or is still queued or running."""
        for path in sorted(self.folder.glob("*.json")):
            rec = self._read(path.stem)
            if rec:
                state, detail = self.state(rec)
                self.log(f"[{self.profile}] {rec['key']}: job {rec['job_id']} {state}"
                         + (f" ({detail.splitlines()[-1][:160]})" if detail and state != "failed" else ""))

    # ------------------------------------------------------------------ a stage
    def _failure(self, rec: dict, detail: str) -> str:
        self._retire(rec)
        # submitit's error holds the job's traceback: keep its last exception (with its message) only
        found = re.findall(r"^(?:[A-Za-z_][\w.]*\.)?(\w+(?:Error|Exception): .*?)(?=\n-{10,}|\Z)", detail, re.M | re.S)
        what = found[-1].strip() if found else detail.strip()
        return (f"{rec['key']} (job {rec['job_id']}): {what}\n    log: {rec['stdout']}\n    errors: {rec['stderr']}")

    def run(self, stage: str, todo: list[Job]) -> bool:
        """Submit (or re-attach to) the stage's jobs; wait for them unless detached. Returns True when the stage
        is complete, False when jobs are still queued or running (``--detach``). Raises ``PipelineError`` naming
        every failed job, its log and its error; the next call submits them again."""
        if not self._reported:
            self.report()
            self._reported = True
        handles: dict[str, tuple[SubmititJob, dict]] = {}
        pending, failures = [], []
        for job in todo:
            rec = self._read(job.key)
            state, detail = self.state(rec) if rec else ("none", "")
            if state in ("queued", "running"):
                if rec["fingerprint"] != job_fingerprint(job, self.runs_root, self.profile):
                    raise PipelineError(
                        f"{job.key}: job {rec['job_id']} is still {state} with other parameters or upstream "
                        f"results than this run's. Wait for it or cancel it (scancel {rec['job_id']}), then rerun.")
                handles[job.key] = (self._handle(rec), rec)
            elif state == "failed":  # ended while nobody waited: say so once; the next call resubmits it
                failures.append(self._failure(rec, detail))
            else:
                if rec:  # finished, yet its outputs are not up to date (changed since): submit it again
                    self._retire(rec)
                pending.append(job)
        if failures:
            raise PipelineError("job(s) failed since the last call:\n  - " + "\n  - ".join(failures) +
                                "\n  Rerun the same command to submit them again (trainings resume from last.pt).")
        states = {key: self.state(rec, h) for key, (h, rec) in handles.items()}
        while True:
            live = [k for k, (s, _) in states.items() if s in ("queued", "running")]
            while pending and len(live) < self.parallel:
                job = pending.pop(0)
                handles[job.key] = (self._submit(job), self._read(job.key))
                states[job.key] = ("queued", "")
                live.append(job.key)
            if self.detach and (live or pending):  # (each job was reported when submitted or by report())
                self.log(f"[{self.profile}] detached: {len(live)} job(s) of stage {stage!r} queued or running"
                         + (f", {len(pending)} waiting to be submitted" if pending else "") +
                         "; rerun the same command to see their state and go on")
                return False
            if not live and not pending:
                break
            time.sleep(POLL_S[self.kind])
            states = {key: self.state(rec, h) for key, (h, rec) in handles.items()}
        for key, (state, detail) in states.items():
            rec = handles[key][1]
            if state == "failed":
                failures.append(self._failure(rec, detail))
            else:
                self.log(f"[{self.profile}] {key}: job {rec['job_id']} finished")
        if failures:
            raise PipelineError("job(s) failed:\n  - " + "\n  - ".join(failures) +
                                "\n  Rerun the same command to submit them again (trainings resume from last.pt).")
        return True

    def print_scripts(self, jobs: list[Job]) -> None:
        """The ``sbatch`` script submitit would write for each job (nothing is submitted; no SLURM needed)."""
        for job in jobs:
            params = slurm_parameters(self.opts, job, self.profile)
            print(f"# ---- {job.key}: SlurmExecutor.update_parameters({params}), max_num_timeout="
                  f"{max_requeues(job, params['time'])}")
            print(sbatch_script(self.folder / "logs" / "%j", params))
