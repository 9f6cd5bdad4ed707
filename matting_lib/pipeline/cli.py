"""``run_all.sh``'s command line and run loop: plan the profile's jobs, skip those up to date, execute the rest in
stage order (student runs in parallel with ``-j``; on this machine, or as SLURM jobs: :mod:`.executors`), under
one lock per runs folder. Standard library only at import time."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matting_lib import cpu_env  # standard library only, like this package
from matting_lib.paths import DEFAULT_RUNS, REPO
from matting_lib.pipeline.common import STAGES, Job, PipelineError, ProfileError
from matting_lib.pipeline.executors import EXECUTORS, LocalRunner, option_problems
from matting_lib.pipeline.plan import plan_jobs
from matting_lib.pipeline.profiles import apply_overrides, figures_dir_for, load_profile
from matting_lib.pipeline.progress import Progress
from matting_lib.pipeline.state import (
    executed_path,
    fingerprint_parts,
    job_state,
    marker_path,
    parts_fingerprint,
    verify_outputs,
)

# ----------------------------------------------------------------------------------------------- execution
#: The jobs whose execution started in this process and has not returned (job key -> notebook), for the message of
#: an interrupted run.
IN_FLIGHT: dict[str, str] = {}


def interrupted_message(in_flight: dict[str, str]) -> str:
    """What ``run_all.sh`` says when it is interrupted (Ctrl-C): what was running, and that rerunning resumes."""
    if in_flight:
        what = ", ".join(f"{key} ({nb})" for key, nb in sorted(in_flight.items()))
        where = f"while running {what}; {'its kernel was' if len(in_flight) == 1 else 'their kernels were'} stopped"
    else:
        where = "between notebook runs"
    return (f"interrupted (Ctrl-C) {where}. Finished notebook runs are kept: rerun the same command to resume "
            f"(finished runs are skipped, an interrupted training continues from its last checkpoint)")


def run_job(job: Job, runs_root: Path, profile: str, *, log=print, env: dict[str, str] | None = None) -> float:
    """Execute one notebook under its limits (``env`` added to its kernel's environment); verify its outputs;
    write its marker. Returns wall seconds."""
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.files import atomic_write_text
    from matting_lib.pipeline.execute import execute_notebook

    if not job.notebook.is_file():
        raise PipelineError(f"stage {job.stage!r}: notebook {job.notebook} does not exist")
    out = executed_path(runs_root, profile, job)
    out.parent.mkdir(parents=True, exist_ok=True)
    marker = marker_path(runs_root, profile, job.key)
    marker.unlink(missing_ok=True)
    t0 = time.time()
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    log(f"[{profile}] {job.key}: running {job.notebook.name} -> {shown}")
    IN_FLIGHT[job.key] = job.notebook.name  # left there when the execution is cut short (Ctrl-C)
    execute_notebook(job.notebook, out, job.params, job=job.key, stage=job.stage, cwd=REPO, env=env,
                     **job.limits)
    IN_FLIGHT.pop(job.key, None)
    problems = verify_outputs(job.outputs, job)
    if problems:
        raise PipelineError(f"{job.notebook.name} finished in job {job.key!r} but its outputs do not verify: "
                            f"{'; '.join(problems)}.\n  executed copy: {out}")
    wall = time.time() - t0
    parts = fingerprint_parts(job, runs_root, profile)
    atomic_write_text(marker, json.dumps({
        "key": job.key, "stage": job.stage, "fingerprint": parts_fingerprint(parts), "parts": parts,
        "params": job.params, "outputs": job.outputs, "executed_notebook": str(out), "wall_s": round(wall, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2, default=str))
    log(f"[{profile}] {job.key}: done in {wall:.0f} s")
    return wall


@contextlib.contextmanager
def kernels_stopped_on_interrupt() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) first kills the running notebooks' kernels, then raises
    ``KeyboardInterrupt``: a kernel runs in its own process group and would train on, and one asked to shut down while
    busy prints ZMQ tracebacks. A SIGINT that is ignored (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        execute = sys.modules.get("matting_lib.pipeline.execute")  # not imported: no kernel was started
        if execute is not None:
            execute.kill_running_kernels()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def retrain_afresh(job: Job, profile: str, *, log=print) -> Path | None:
    """``--force``: a job that trains starts afresh. Its training folder (``job.train_dir``), when it holds anything,
    is moved aside to ``<folder>.stale-<UTC time>`` (kept, never deleted); without this the notebook would find the
    same training recorded there and only re-score the old weights. Returns the new place of the old folder."""
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.training.run_identity import move_aside  # standard library only

    folder = Path(job.train_dir) if job.train_dir else None
    if folder is None or not folder.is_dir() or not any(folder.iterdir()):
        return None
    aside = move_aside(folder)
    log(f"[{profile}] {job.key}: --force: moved the previous training {folder.name} to {aside.name}; training afresh")
    return aside


def _progress(args: argparse.Namespace, jobs: list[Job], runs_root: Path, parallel: int) -> Progress | None:
    """The overall ``[k/N]`` progress of a local run: N counts the jobs not up to date and those downstream of them
    (they run again once their inputs change); None for a listing or another executor."""
    if args.list or args.executor != "local":
        return None
    todo: set[str] = set()
    for job in jobs:  # in stage order, so a job's upstream is decided before it
        if args.force or any(n in todo for n in job.needs) or not job_state(job, runs_root, args.profile)[0]:
            todo.add(job.key)
    start = min(time.time(), float(os.environ.get("MATTING_START_TIME") or time.time()))
    return Progress([j for j in jobs if j.key in todo], parallel=parallel, profile=args.profile, start=start)


def make_runner(args: argparse.Namespace, runs_root: Path, parallel: int, *, progress: Progress | None = None):
    """Where the jobs run (``--executor``): :class:`~.executors.LocalRunner` or :class:`~.slurm.SubmititRunner`;
    a local runner reports each finished job to ``progress``."""
    if args.executor == "local":
        return LocalRunner(progress.wrap(run_job) if progress else run_job, runs_root, args.profile, parallel)
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.pipeline.slurm import SubmititRunner  # imports submitit

    return SubmititRunner.from_args(args, run_job, runs_root)


def resolve_profile(args: argparse.Namespace) -> dict[str, Any]:
    """The profile with ``--set``, ``--adobe-root`` and ``--public-teacher`` applied (not yet validated)."""
    prof = apply_overrides(load_profile(args.profile), args.set or [])
    # The notebooks run in the repository: resolve the user's relative paths against the current folder here.
    if args.adobe_root:
        prof.setdefault("data", {})["adobe_root"] = str(Path(args.adobe_root).expanduser().resolve())
    if args.public_teacher:
        prof.setdefault("teacher", {}).update(mode="import",
                                              public_checkpoint=str(Path(args.public_teacher).expanduser().resolve()))
    return prof


def run_pipeline(args: argparse.Namespace) -> int:
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.pipeline.runlock import RunLock
    from matting_lib.pipeline.validate import check_jobs, validate_profile

    prof = resolve_profile(args)
    validate_profile(prof, full=True)
    runs_root = Path(args.runs_dir).resolve()
    parallel = args.jobs if args.jobs is not None else int(prof.get("distill", {}).get("jobs", 1))
    # Torch threads per student run: the profile's distill.threads when it sets one (results then do not depend on
    # -j or on the machine's core count), else the cores split between the parallel runs.
    threads = int(prof.get("distill", {}).get("threads", 0)) or (
        max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0)
    cpu_env.pin()  # every notebook's kernel inherits the AVX2-pinned CPU kernels (matting_lib.cpu_env)
    jobs = plan_jobs(args.profile, prof, runs_root=runs_root, seeds=args.seeds, retrain_teacher=args.retrain_teacher,
                     threads=threads, figures_dir=args.figures_dir)
    check_jobs(jobs)  # every parameter is one its notebook declares: papermill would only warn
    jobs_to_run = [j for j in jobs if j.stage == args.only] if args.only else jobs
    if args.list:
        for j in jobs_to_run:
            done, why = job_state(j, runs_root, args.profile)
            print(f"{'done' if done else 'todo':5s} {j.key:40s} {j.notebook.name}" + ("" if done else f"  ({why})"))
        return 0
    runner = make_runner(args, runs_root, parallel, progress=_progress(args, jobs_to_run, runs_root, parallel))
    if args.print_sbatch:
        runner.print_scripts(jobs_to_run)
        return 0
    figures = figures_dir_for(args.profile, runs_root, args.figures_dir)
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.data.output_safety import check_output_folder

    for folder, option in ((runs_root / args.profile, "--runs-dir"), (figures, "--figures-dir")):
        try:  # a file, a read-only place or a dataset's folder: refused before anything is written
            check_output_folder(folder, what=f"{option} folder")
        except (OSError, ValueError) as err:
            raise ProfileError(str(err.strerror if isinstance(err, OSError) and err.strerror else err)) from None
    with RunLock(runs_root / args.profile):
        t0, ran = time.time(), []
        print(f"[{args.profile}] {len(jobs_to_run)} notebook run(s); runs in {runs_root / args.profile}")
        for stage in STAGES:
            batch = [j for j in jobs_to_run if j.stage == stage]
            todo = []
            for j in batch:
                done, why = (False, "--force") if args.force else job_state(j, runs_root, args.profile)
                print(f"[{args.profile}] {j.key}: " + ("up to date, skipped" if done else f"to run ({why})"))
                if not done:
                    todo.append(j)
                    if args.force:
                        retrain_afresh(j, args.profile)
            if not runner.run(stage, todo):  # --detach: jobs still queued or running
                return 0
            ran += todo
        # wall time since run_all.sh started (its environment checks included), not since the lock was taken
        start = min(t0, float(os.environ.get("MATTING_START_TIME") or t0))
        print(f"[{args.profile}] pipeline finished in {time.time() - start:.0f} s wall time ({len(ran)} notebook "
              f"run(s); {t0 - start:.0f} s of environment and profile checks before them); tables and figures in "
              f"{figures}")
    return 0


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.sh",
        description="Regenerate the paper's Table 1 and figures by executing the notebooks with papermill. "
                    "Sets up ./.venv from requirements.lock on first use.",
        epilog="Profiles: smoke (whole chain in minutes, for CI), default (embedded synthetic benchmark on a "
               "2-core CPU), calibrate (the calibration study of notebook 00: teacher vs no-KD student on the "
               "validation split; hours, resumable), ablation (the paper's Table 3: spatial+channel on four layer "
               "sets, default-profile settings), replication (the default profile at seeds 7-13), teacher2 (a second "
               "teacher trained from seed 1, hours, then six configurations distilled from it), paper (Adobe "
               "Composition-1k, full-size networks, 320 px, 30 epochs, for a GPU; needs --adobe-root). "
               "Exit codes: 0 done, 1 a stage failed or the runs folder is in use, "
               "2 bad arguments or profile (nothing was executed). Examples: ./run_all.sh ; "
               "./run_all.sh --profile smoke ; ./run_all.sh --only distill -j 2 ; "
               "./run_all.sh --profile paper --adobe-root /data/adobe",
    )  # each help text states its default once (ArgumentDefaultsHelpFormatter would repeat it, "None" included)
    p.add_argument(
        "--profile",
        default="default",
        help="smoke | default | calibrate | ablation | replication | teacher2 | paper (a file in profiles/; "
             "default: default)",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per student configuration (default: the profile's)")
    p.add_argument("--only", choices=STAGES, default=None, help="run only this stage")
    p.add_argument("--force", action="store_true", help="re-run stages even when their outputs are up to date; "
                   "trainings start afresh (the previous run folder is kept as <run>.stale-<UTC time>)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="student runs in parallel, CPU threads split between "
                   "them, one GPU each on a machine with several (default: the profile's distill.jobs, else 1)")
    p.add_argument("--retrain-teacher", action="store_true", help="train the teacher from scratch instead of "
                   "verifying the shipped one (hours on a CPU)")
    p.add_argument("--adobe-root", default="", help="folder with the Adobe dataset and COCO/VOC backgrounds "
                   "(paper profile); see docs/data.md")
    p.add_argument("--public-teacher", default="", help="path to DIM-PyTorch's BEST_checkpoint.tar to import as "
                   "the teacher")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", help="override one profile value, "
                   "e.g. --set distill.steps=200 or --set 'distill.configs=[\"student\",\"spatial\"]' (repeatable; "
                   "time limits: STAGE.cell_timeout_s, STAGE.job_timeout_s)")
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS), help="where executed notebooks, trainings, tables and "
                   "figures go (<runs-dir>/<profile>/); the dataset stays shared (default: runs/ in the repository)")
    p.add_argument("--figures-dir", default=None, help="where this run's tables and figures go (default: "
                   "figures/<profile> for the default --runs-dir, else <runs-dir>/<profile>/figures)")
    p.add_argument("--list", action="store_true", help="list the notebook runs and whether each is up to date")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="where the notebook runs execute: "
                   "local (this machine; with -j N and several GPUs one GPU per parallel student run, round robin), "
                   "slurm (one SLURM job per notebook run through submitit; see docs/cluster.md), local-submitit "
                   "(the slurm path with submitit's local executor, to try it without a cluster) (default: local)")
    p.add_argument("--detach", action="store_true", help="submitit executors: submit the jobs that are ready and "
                   "return; the same command later reports what finished, failed or is queued and goes on")
    p.add_argument("--print-sbatch", action="store_true", help="with --executor slurm: print the sbatch script of "
                   "every notebook run, as submitit writes it, and submit nothing (no SLURM needed)")
    slurm = p.add_argument_group("SLURM (--executor slurm; each notebook run is one job)")
    for name, metavar, kind, text in (
            ("partition", "P", str, "partition (default: the cluster's)"),
            ("gpus", "N", int, "GPUs per job (default: 1; the data stage gets none, a teacher with "
                               "teacher.ddp_processes = N gets N)"),
            ("time", "T", str, "time limit per job in SLURM syntax, e.g. 72:00:00 or 3-00:00:00; a job at its "
                               "limit is requeued and resumes (default: 24:00:00)"),
            ("cpus", "N", int, "CPU cores per job (default: the cluster's)"),
            ("mem", "M", str, "memory per job, e.g. 64G (default: the cluster's)"),
            ("account", "A", str, "account to charge (default: yours)"),
            ("qos", "Q", str, "quality of service (default: the cluster's)")):
        slurm.add_argument(f"--slurm-{name}", metavar=metavar, type=kind, default=None, help=text)
    p.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print(f"run_all.sh: error: -j/--jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 1:
        print(f"run_all.sh: error: --seeds must be at least 1, got {args.seeds}", file=sys.stderr)
        return 2
    problems = option_problems(args) + (["--print-sbatch needs --executor slurm"] if args.print_sbatch and
                                        args.executor != "slurm" else [])
    if problems:
        print("run_all.sh: error: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        if args.check_args:  # the base interpreter, before the environment exists: standard-library checks only
            # imported here: the pipeline loads only the standard library up front
            from matting_lib.pipeline.validate import validate_profile

            validate_profile(resolve_profile(args), full=False)
            return 0
        with kernels_stopped_on_interrupt():
            return run_pipeline(args)
    except KeyboardInterrupt:
        print(f"\nrun_all.sh: {interrupted_message(IN_FLIGHT)}", file=sys.stderr)
        return 130
    except ProfileError as err:
        print(f"run_all.sh: error: {err}", file=sys.stderr)
        return 2
    except PipelineError as err:
        print(f"run_all.sh: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a read-only runs folder, a file where a folder should be: no traceback
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.data.output_safety import explain_os_error

        where = Path(args.runs_dir) / args.profile
        print(f"run_all.sh: error: {explain_os_error(err, where)}; then the same command resumes: finished jobs "
              f"are skipped and an interrupted training continues from its last checkpoint", file=sys.stderr)
        return 1
