"""Where the pipeline's notebook jobs run (``run_all.sh --executor``): this machine, a SLURM cluster, or submitit's
local executor. Standard library only at import time; submitit is imported by :mod:`matting_lib.pipeline.slurm`
only when one of its executors is chosen.

* ``local`` (the default) — :class:`LocalRunner`: the jobs of a stage one after the other, the student runs of
  the distill stage ``-j N`` at a time in threads. On a machine with several GPUs each parallel student run
  takes a device slot (:class:`DeviceSlots`, round robin over the visible GPUs): its kernel starts with
  ``CUDA_VISIBLE_DEVICES`` set to that GPU, and the run log says which job ran on which GPU.
* ``slurm`` — every notebook run is one SLURM job submitted with submitit (one GPU per job by default); the
  driver submits a stage, waits for it, then submits the next (``--detach``: submits what is ready and returns;
  the same command later reports what finished, failed or is still queued, and goes on).
* ``local-submitit`` — the same submitit path with submitit's ``LocalExecutor`` (each job a local process):
  the SLURM executor's test mode on a machine without SLURM.

:func:`option_problems` checks the executor options before anything runs (``run_all.sh --check-args``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from matting_lib.pipeline.common import Job

EXECUTORS = ("local", "slurm", "local-submitit")
SLURM_OPTIONS = ("slurm_partition", "slurm_gpus", "slurm_time", "slurm_cpus", "slurm_mem", "slurm_account",
                 "slurm_qos")
DEFAULT_SLURM_TIME = "24:00:00"
DEFAULT_SLURM_GPUS = 1
_NAME = re.compile(r"^[A-Za-z0-9_.,:+-]+$")  # partition, account and QOS names (comma lists allowed)
_MEM = re.compile(r"^[1-9][0-9]*[KMGT]?$")  # sbatch --mem: an integer with an optional unit (default M)


def slurm_minutes(text: str) -> int:
    """Minutes of a SLURM time limit in ``sbatch --time`` syntax: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S`` (seconds are rounded up to a minute). Raises ``ValueError`` naming the value."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--slurm-time {text!r}: expected SLURM's time syntax, e.g. 72:00:00 or 3-00:00:00")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:  # H:M:S
        hours, minutes, seconds = a, b, c
    elif b is not None:  # M:S
        hours, minutes, seconds = 0, a, b
    else:  # M
        hours, minutes, seconds = 0, a, 0
    total = (days or 0) * 1440 + hours * 60 + minutes + (seconds + 59) // 60
    if total < 1:
        raise ValueError(f"--slurm-time {text!r}: the limit must be at least one minute")
    return total


def option_problems(args) -> list[str]:
    """What is wrong with the executor options of ``args`` (``run_all.sh``'s parsed options); empty: usable.
    Standard library only: ``run_all.sh --check-args`` runs it before the environment exists."""
    out = []
    given = [name for name in SLURM_OPTIONS if getattr(args, name, None) is not None]
    if args.executor != "slurm" and given:
        out.append(f"--{given[0].replace('_', '-')} applies to --executor slurm only (this run: --executor "
                   f"{args.executor})")
    if args.detach and args.executor == "local":
        out.append("--detach needs a submitit executor (--executor slurm or local-submitit): a local run cannot "
                   "leave its jobs running after it returns")
    if args.slurm_time is not None:
        try:
            slurm_minutes(args.slurm_time)
        except ValueError as err:
            out.append(str(err))
    if args.slurm_gpus is not None and args.slurm_gpus < 0:
        out.append(f"--slurm-gpus must be 0 or more (GPUs per job), got {args.slurm_gpus}")
    if args.slurm_cpus is not None and args.slurm_cpus < 1:
        out.append(f"--slurm-cpus must be at least 1 (CPU cores per job), got {args.slurm_cpus}")
    if args.slurm_mem is not None and not _MEM.match(args.slurm_mem):
        out.append(f"--slurm-mem {args.slurm_mem!r}: expected sbatch's --mem syntax, an integer with an optional "
                   f"unit K, M, G or T, e.g. 64G")
    for name in ("slurm_partition", "slurm_account", "slurm_qos"):
        value = getattr(args, name, None)
        if value is not None and not _NAME.match(value):
            out.append(f"--{name.replace('_', '-')} {value!r}: expected a SLURM name (letters, digits, _ . - , : +)")
    return out


# ----------------------------------------------------------------------------------------------- local GPUs
def visible_gpus() -> list[str]:
    """The GPUs this process may hand to its jobs: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (ids or
    UUIDs, passed on as they are), else ``0 .. torch.cuda.device_count() - 1``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    # imported here: the pipeline loads only the standard library up front
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class DeviceSlots:
    """Device slots for jobs that run ``parallel`` at a time on ``gpus``: slot k is GPU k mod len(gpus) (round
    robin), and a job takes the slot freed longest ago, so with ``parallel`` ≤ GPUs no two running jobs share one.
    """

    def __init__(self, gpus: list[str], parallel: int):
        if not gpus:
            raise ValueError("DeviceSlots needs at least one GPU")
        self._free: queue.Queue[str] = queue.Queue()
        for k in range(max(1, parallel)):
            self._free.put(gpus[k % len(gpus)])

    @contextlib.contextmanager
    def take(self) -> Iterator[str]:
        device = self._free.get()
        try:
            yield device
        finally:
            self._free.put(device)


# ----------------------------------------------------------------------------------------------- runners
RunJob = Callable[..., float]  # cli.run_job(job, runs_root, profile, *, log, env) -> wall seconds


@dataclass
class LocalRunner:
    """Runs a stage's jobs on this machine (see the module docstring). ``run_job`` is
    :func:`matting_lib.pipeline.cli.run_job`."""

    run_job: RunJob
    runs_root: Path
    profile: str
    parallel: int = 1
    log: Callable[[str], None] = print

    def run(self, stage: str, todo: list[Job]) -> bool:
        """Execute ``todo`` (the stage's jobs that are not up to date); raise the first failure. Returns True
        (the stage is complete)."""
        if stage == "distill" and self.parallel > 1 and len(todo) > 1:
            gpus = visible_gpus()
            slots = DeviceSlots(gpus, self.parallel) if gpus else None
            if slots is not None:
                self.log(f"[{self.profile}] {len(todo)} student runs, {self.parallel} at a time on "
                         f"{len(gpus)} GPU(s) ({', '.join(gpus)}), one GPU per run, round robin")

            def one(job: Job) -> float:
                if slots is None:
                    return self.run_job(job, self.runs_root, self.profile)
                with slots.take() as device:
                    self.log(f"[{self.profile}] {job.key}: on GPU {device} (CUDA_VISIBLE_DEVICES={device})")
                    return self.run_job(job, self.runs_root, self.profile, env={"CUDA_VISIBLE_DEVICES": device})

            with ThreadPoolExecutor(max_workers=self.parallel) as pool:
                futures = [pool.submit(one, j) for j in todo]
                try:
                    errors = [f.exception() for f in futures if f.exception() is not None]
                except KeyboardInterrupt:  # Ctrl-C reaches this thread only: stop the runs in the others
                    for f in futures:
                        f.cancel()
                    # imported here: the pipeline loads only the standard library up front
                    from matting_lib.pipeline.execute import kill_running_kernels

                    kill_running_kernels()
                    raise
            if errors:
                raise errors[0]
        else:
            for job in todo:
                self.run_job(job, self.runs_root, self.profile)
        return True

