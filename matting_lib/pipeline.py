"""The notebook pipeline behind ``run_all.sh``: profiles, stages, skipping finished work, papermill.

Stages, in order (each is a parameterised notebook executed headlessly with papermill):

    data      notebooks/01_compositing.ipynb    build / check the dataset and the test composites
    teacher   notebooks/02_teacher.ipynb        load + verify the shipped teacher (or train / import one)
    distill   notebooks/03_distill.ipynb        one student per (configuration, seed); independent runs
    results   notebooks/04_results.ipynb        the paper's Table 1 side by side, figures
    explorer  notebooks/05_similarity_explorer.ipynb   the widget notebook, executed headlessly as a check

A profile (``profiles/<name>.toml``) holds one table per stage; every key in a stage's table becomes a
notebook parameter, except the pipeline's own keys (:data:`PIPELINE_KEYS`: ``configs``, ``seeds``, ``jobs`` and
each stage's ``cell_timeout_s`` / ``job_timeout_s``). The pipeline adds the derived ones (profile, data folder,
run folders, figures folder, the teacher checkpoint, thread count). The whole profile is validated against the
notebooks' declared parameters before anything runs (:mod:`matting_lib.pipeline_validate`).

Everything a run writes goes under ``<runs-dir>/<profile>/``: executed notebooks in ``notebooks/``, markers in
``pipeline/``, trainings in ``teacher/`` and ``students/``, and the tables and figures in ``figures/`` — except
with the default ``--runs-dir`` (``runs/``), whose tables and figures go to the repository's
``figures/<profile>/``, and with ``--figures-dir``. A job is up to date when its marker
``pipeline/<job>.json`` records the same parameters, notebook source and upstream results *and* its declared
outputs exist and verify (:mod:`matting_lib.pipeline_state`); so an interrupted or damaged run resumes where it
stopped. A lock per ``<runs-dir>/<profile>`` refuses a second pipeline on the same folder (:mod:`matting_lib.runlock`).

This module imports only the standard library at import time so ``--help`` and argument checks are instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# re-exported: whether a job is up to date (standard library only at import time, like this module)
from . import cpu_env  # standard library only, like this module
from .run_identity import student_run_name  # standard library only at import time
from .pipeline_state import (executed_path, is_done, job_fingerprint, job_state, marker_path,  # noqa: F401
                             verify_outputs)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO / "runs"
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
PIPELINE_KEYS = {stage: set(TIMEOUT_KEYS) | ({"configs", "seeds", "jobs", "threads", "shared_caches"} if stage == "distill" else set())
                 for stage in STAGES}
#: Limits for a profile that sets none (each shipped profile sets its own): 6 h per cell, 24 h per job.
DEFAULT_LIMITS = {"cell_timeout_s": 6 * 3600, "job_timeout_s": 24 * 3600}


class PipelineError(RuntimeError):
    """A stage failed or the run cannot start; the message says which notebook/cell/key and what to do."""


class ProfileError(PipelineError):
    """The profile (after ``--set``) is unusable: nothing was executed. ``run_all.sh`` exits with code 2."""


# ----------------------------------------------------------------------------------------------- profiles
def profiles_dir() -> Path:
    return REPO / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    """Read ``profiles/<name>.toml``; raise naming the valid profiles on a typo."""
    path = profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}; valid profiles: {', '.join(available_profiles())} "
                           f"(files in {profiles_dir()})")
    with path.open("rb") as fh:
        prof = tomllib.load(fh)
    unknown = sorted(set(prof) - set(STAGES) - {"description"})
    if unknown:
        raise ProfileError(f"{path}: unknown table(s) {unknown}; valid tables: {', '.join(STAGES)}")
    return prof


def apply_overrides(profile: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set stage.key=value`` overrides (value parsed as TOML, else taken as a string; the profile is
    validated afterwards, so a string where a list or number belongs is reported, never split or guessed)."""
    prof = json.loads(json.dumps(profile))
    for item in overrides:
        key, sep, raw = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or stage not in STAGES or not name:
            raise ProfileError(f"--set {item!r}: expected STAGE.KEY=VALUE with STAGE one of {', '.join(STAGES)}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        prof.setdefault(stage, {})[name] = value
    return prof


def figures_dir_for(profile_name: str, runs_root: Path, figures_dir: str | os.PathLike | None = None) -> Path:
    """Where a run's tables and figures go: ``figures_dir`` if given; the repository's ``figures/<profile>`` for
    the default runs folder; else ``<runs-dir>/<profile>/figures`` (two runs folders never share tables)."""
    if figures_dir:
        return Path(figures_dir).expanduser().resolve()
    if Path(runs_root).resolve() == DEFAULT_RUNS.resolve():
        return REPO / "figures" / profile_name
    return Path(runs_root).resolve() / profile_name / "figures"


# ----------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One notebook execution and what it must leave behind."""

    stage: str
    key: str  # unique within the profile; a student's is its run name, e.g. "kd-spatial+channel-seed0"
    params: dict[str, Any]
    needs: list[str] = field(default_factory=list)  # keys of jobs whose results this one reads
    inputs: list[str] = field(default_factory=list)  # files whose contents are part of the fingerprint
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (kind, path): see pipeline_state.KINDS
    limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))  # cell_/job_timeout_s
    notebook: Path | None = None  # default: notebooks/<the stage's notebook>

    def __post_init__(self) -> None:
        if self.notebook is None:
            self.notebook = REPO / "notebooks" / NOTEBOOKS[self.stage]


def plan_jobs(profile_name: str, prof: dict[str, Any], *, runs_root: Path, seeds: int | None = None,
              retrain_teacher: bool = False, threads: int = 0, figures_dir: str | None = None) -> list[Job]:
    """Turn a (validated) profile into the ordered list of notebook executions. ``threads`` (torch threads of each
    student run; 0 = torch's default) is set when student runs execute in parallel; the teacher gets every core."""
    runs = Path(runs_root) / profile_name
    figures = figures_dir_for(profile_name, runs_root, figures_dir)
    common = {"profile": profile_name, "figures_dir": str(figures)}

    def table(stage: str) -> tuple[dict[str, Any], dict[str, float]]:
        t = dict(prof.get(stage, {}))
        limits = {k: float(t.pop(k, DEFAULT_LIMITS[k])) for k in TIMEOUT_KEYS}
        return t, limits

    data, limits = table("data")
    data_dir = str(data.get("data_dir", f"data/{profile_name}"))
    data_path = Path(data_dir) if Path(data_dir).is_absolute() else REPO / data_dir  # notebooks resolve it so
    jobs = [Job("data", "data", {**common, **data, "data_dir": data_dir}, outputs=[("dataset", str(data_path))],
                limits=limits)]
    if "calibrate" in prof:  # the calibration study (notebook 00) is a profile of its own: data, then the study
        calib, limits = table("calibrate")
        jobs.append(Job("calibrate", "calibrate", {**common, **calib, "data_dir": data_dir,
                                                   "runs_dir": str(runs)},
                        needs=["data"], limits=limits, outputs=[("file", str(figures / "calibration.md"))]))
        return jobs

    teacher, limits = table("teacher")
    if retrain_teacher:
        teacher["mode"] = "train"
    teacher_dir = runs / "teacher"
    inputs = []
    if teacher.get("mode", "train") == "load":  # a replaced shipped checkpoint re-runs everything downstream
        shipped = Path(teacher.get("shipped_checkpoint") or f"matting_lib/assets/teacher-{profile_name}.pt")
        inputs.append(str(shipped if shipped.is_absolute() else REPO / shipped))
    teacher_ckpt = str(teacher_dir / "teacher.pt")
    jobs.append(Job("teacher", "teacher", {**common, **teacher, "data_dir": data_dir, "run_dir": str(teacher_dir)},
                    needs=["data"], inputs=inputs, limits=limits,
                    outputs=[("checkpoint", teacher_ckpt), ("metrics", str(teacher_dir / "metrics.json"))]))

    student, limits = table("distill")
    configs = list(student.get("configs", []))
    n_seeds = int(seeds if seeds is not None else student.get("seeds", 1))
    base = {k: v for k, v in student.items() if k not in PIPELINE_KEYS["distill"]}
    # shared_caches: the runs of one seed compose each batch once (batch_cache) and run the teacher once per batch
    # (teacher_cache); off unless the profile turns it on (at the paper's size they would need terabytes)
    shared = bool(student.get("shared_caches", False))
    caches = {"teacher_cache_dir": str(runs / "teacher-cache") if shared else "",
              "batch_cache_dir": str(runs / "batch-cache") if shared else ""}
    caches.update({k: base[k] for k in caches if k in base})  # an explicit folder in the profile wins
    student_keys = []
    for cfg in configs:
        for seed in range(n_seeds):
            key = student_run_name(cfg, seed)  # the job is named as its run folder
            run = runs / "students" / key
            student_keys.append(key)
            jobs.append(Job("distill", key,
                            {**common, **base, "config": cfg, "seed": seed, "data_dir": data_dir,
                             "teacher_checkpoint": teacher_ckpt, "runs_dir": str(runs / "students"),
                             **caches,
                             "threads": threads},
                            needs=["data", "teacher"], limits=limits,
                            outputs=[("checkpoint", str(run / "best.pt")), ("metrics", str(run / "metrics.json"))]))
    results, limits = table("results")
    jobs.append(Job("results", "results",
                    {**common, **results, "data_dir": data_dir, "runs_dir": str(runs),
                     "configs": list(configs), "seeds": n_seeds},
                    needs=["teacher", *student_keys], limits=limits, outputs=[("tables", str(figures))]))
    explorer, limits = table("explorer")
    # the explorer writes no figures: it gets no figures_dir
    jobs.append(Job("explorer", "explorer", {"profile": profile_name, **explorer, "data_dir": data_dir,
                                             "runs_dir": str(runs)},
                    needs=["teacher", *student_keys], limits=limits))
    return jobs


# ----------------------------------------------------------------------------------------------- execution
def run_job(job: Job, runs_root: Path, profile: str, *, log=print) -> float:
    """Execute one notebook under its limits; verify its outputs; write its marker. Returns wall seconds."""
    from .pipeline_exec import execute_notebook
    from .utils import atomic_write_text

    if not job.notebook.is_file():
        raise PipelineError(f"stage {job.stage!r}: notebook {job.notebook} does not exist")
    out = executed_path(runs_root, profile, job)
    out.parent.mkdir(parents=True, exist_ok=True)
    marker = marker_path(runs_root, profile, job.key)
    marker.unlink(missing_ok=True)
    t0 = time.time()
    log(f"[{profile}] {job.key}: running {job.notebook.name} -> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    execute_notebook(job.notebook, out, job.params, job=job.key, stage=job.stage, cwd=REPO, **job.limits)
    problems = verify_outputs(job.outputs, job)
    if problems:
        raise PipelineError(f"{job.notebook.name} finished in job {job.key!r} but its outputs do not verify: "
                            f"{'; '.join(problems)}.\n  executed copy: {out}")
    wall = time.time() - t0
    atomic_write_text(marker, json.dumps({
        "key": job.key, "stage": job.stage, "fingerprint": job_fingerprint(job, runs_root, profile),
        "params": job.params, "outputs": job.outputs, "executed_notebook": str(out), "wall_s": round(wall, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2, default=str))
    log(f"[{profile}] {job.key}: done in {wall:.0f} s")
    return wall


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
    from .pipeline_validate import check_jobs, validate_profile
    from .runlock import RunLock

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
    figures = figures_dir_for(args.profile, runs_root, args.figures_dir)
    from .output_safety import check_output_folder

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
            if stage == "distill" and parallel > 1 and len(todo) > 1:
                with ThreadPoolExecutor(max_workers=parallel) as pool:
                    futures = [pool.submit(run_job, j, runs_root, args.profile) for j in todo]
                    errors = [f.exception() for f in futures if f.exception() is not None]
                if errors:
                    raise errors[0]
                ran += todo
            else:
                for j in todo:
                    run_job(j, runs_root, args.profile)
                    ran.append(j)
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
               "2-core CPU), paper (Adobe Composition-1k, full-size networks, 320 px, 30 epochs, for a GPU; "
               "needs --adobe-root). Exit codes: 0 done, 1 a stage failed or the runs folder is in use, "
               "2 bad arguments or profile (nothing was executed). Examples: ./run_all.sh ; "
               "./run_all.sh --profile smoke ; ./run_all.sh --only distill -j 2 ; "
               "./run_all.sh --profile paper --adobe-root /data/adobe",
    )  # each help text states its default once (ArgumentDefaultsHelpFormatter would repeat it, "None" included)
    p.add_argument("--profile", default="default", help="smoke | default | paper (a file in profiles/; "
                   "default: default)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per student configuration (default: the profile's)")
    p.add_argument("--only", choices=STAGES, default=None, help="run only this stage")
    p.add_argument("--force", action="store_true", help="re-run stages even when their outputs are up to date")
    p.add_argument("-j", "--jobs", type=int, default=None, help="student runs in parallel, CPU threads split between "
                   "them (default: the profile's distill.jobs, else 1)")
    p.add_argument("--retrain-teacher", action="store_true", help="train the teacher from scratch instead of "
                   "verifying the shipped one (hours on a CPU)")
    p.add_argument("--adobe-root", default="", help="folder with the Adobe dataset and COCO/VOC backgrounds "
                   "(paper profile); see README")
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
    try:
        if args.check_args:  # the base interpreter, before the environment exists: standard-library checks only
            from .pipeline_validate import validate_profile

            validate_profile(resolve_profile(args), full=False)
            return 0
        return run_pipeline(args)
    except ProfileError as err:
        print(f"run_all.sh: error: {err}", file=sys.stderr)
        return 2
    except PipelineError as err:
        print(f"run_all.sh: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a read-only runs folder, a file where a folder should be: no traceback
        from .output_safety import explain_os_error

        where = Path(args.runs_dir) / args.profile
        print(f"run_all.sh: error: {explain_os_error(err, where)}; then the same command resumes: finished jobs "
              f"are skipped and an interrupted training continues from its last checkpoint", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # run the importable module's main, not this __main__ copy: the helper modules raise matting_lib.pipeline's
    # exception classes, which a second copy of this module would not catch
    from matting_lib.pipeline import main as _main

    sys.exit(_main())
