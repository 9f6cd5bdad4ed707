"""The notebook pipeline behind ``run_all.sh``: profiles, stages, skipping finished work, papermill.

Stages, in order (each is a parameterised notebook executed headlessly with papermill):

    data      notebooks/01_compositing.ipynb    build / check the dataset and the test composites
    teacher   notebooks/02_teacher.ipynb        load + verify the shipped teacher (or train / import one)
    distill   notebooks/03_distill.ipynb        one student per (configuration, seed); independent runs
    results   notebooks/04_results.ipynb        the paper's Table 1 side by side, figures
    explorer  notebooks/05_similarity_explorer.ipynb   the widget notebook, executed headlessly as a check

A profile (``profiles/<name>.toml``) holds one table per stage; every key in a stage's table becomes a
notebook parameter, except the pipeline's own keys (``configs``, ``seeds``). The pipeline adds the derived
ones (profile, data folder, run folders, the teacher checkpoint, thread count). Executed notebooks go to
``runs/<profile>/notebooks/``; a stage whose marker ``runs/<profile>/pipeline/<job>.json`` records the
same parameters (and the same upstream results) is skipped, so an interrupted run resumes where it stopped.

This module imports only the standard library at import time so ``--help`` and argument checks are instant.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "teacher", "distill", "results", "explorer")
NOTEBOOKS = {
    "data": "01_compositing.ipynb",
    "teacher": "02_teacher.ipynb",
    "distill": "03_distill.ipynb",
    "results": "04_results.ipynb",
    "explorer": "05_similarity_explorer.ipynb",
}
PIPELINE_KEYS = {"configs", "seeds", "jobs"}  # profile keys the pipeline consumes itself


class PipelineError(RuntimeError):
    """A stage failed or the profile is unusable; the message says which notebook/cell/key and what to do."""


# ----------------------------------------------------------------------------------------------- profiles
def profiles_dir() -> Path:
    return REPO / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    """Read ``profiles/<name>.toml``; raise naming the valid profiles on a typo."""
    path = profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; valid profiles: {', '.join(available_profiles())} "
                            f"(files in {profiles_dir()})")
    with path.open("rb") as fh:
        prof = tomllib.load(fh)
    unknown = sorted(set(prof) - set(STAGES) - {"description"})
    if unknown:
        raise PipelineError(f"{path}: unknown table(s) {unknown}; valid tables: {', '.join(STAGES)}")
    return prof


def apply_overrides(profile: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set stage.key=value`` overrides (value parsed as TOML, else taken as a string)."""
    prof = json.loads(json.dumps(profile))
    for item in overrides:
        key, sep, raw = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or stage not in STAGES or not name:
            raise PipelineError(f"--set {item!r}: expected STAGE.KEY=VALUE with STAGE one of {', '.join(STAGES)}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        prof.setdefault(stage, {})[name] = value
    return prof


# ----------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One notebook execution."""

    stage: str
    key: str  # unique within the profile, e.g. "distill-spatial+channel-seed0"
    params: dict[str, Any]
    needs: list[str] = field(default_factory=list)  # keys of jobs whose results this one reads
    inputs: list[str] = field(default_factory=list)  # files whose contents are part of the fingerprint

    @property
    def notebook(self) -> Path:
        return REPO / "notebooks" / NOTEBOOKS[self.stage]


def plan_jobs(profile_name: str, prof: dict[str, Any], *, runs_root: Path, seeds: int | None = None,
              retrain_teacher: bool = False, threads: int = 0) -> list[Job]:
    """Turn a profile into the ordered list of notebook executions. ``threads`` (torch threads of each student
    run; 0 = torch's default) is set when student runs execute in parallel; the teacher always gets every core."""
    runs = runs_root / profile_name
    figures = REPO / "figures" / profile_name
    common = {"profile": profile_name, "figures_dir": str(figures)}
    data = dict(prof.get("data", {}))
    data_dir = str(data.get("data_dir", f"data/{profile_name}"))
    jobs = [Job("data", "data", {**common, **data, "data_dir": data_dir})]

    teacher = dict(prof.get("teacher", {}))
    if retrain_teacher:
        teacher["mode"] = "train"
    teacher_dir = runs / "teacher"
    inputs = []
    if teacher.get("mode", "train") == "load":  # a replaced shipped checkpoint re-runs everything downstream
        shipped = Path(teacher.get("shipped_checkpoint") or f"matting_lib/assets/teacher-{profile_name}.pt")
        inputs.append(str(shipped if shipped.is_absolute() else REPO / shipped))
    jobs.append(Job("teacher", "teacher",
                    {**common, **teacher, "data_dir": data_dir, "run_dir": str(teacher_dir)},
                    needs=["data"], inputs=inputs))
    teacher_ckpt = str(teacher_dir / "teacher.pt")

    student = dict(prof.get("distill", {}))
    configs = list(student.get("configs", []))
    n_seeds = int(seeds if seeds is not None else student.get("seeds", 1))
    base = {k: v for k, v in student.items() if k not in PIPELINE_KEYS}
    student_keys = []
    for cfg in configs:
        for seed in range(n_seeds):
            key = f"distill-{cfg}-seed{seed}"
            student_keys.append(key)
            jobs.append(Job("distill", key,
                            {**common, **base, "config": cfg, "seed": seed, "data_dir": data_dir,
                             "teacher_checkpoint": teacher_ckpt, "runs_dir": str(runs / "students"),
                             "threads": threads},
                            needs=["data", "teacher"]))
    results = dict(prof.get("results", {}))
    jobs.append(Job("results", "results",
                    {**common, **results, "data_dir": data_dir, "runs_dir": str(runs),
                     "configs": ",".join(configs), "seeds": n_seeds},
                    needs=["teacher", *student_keys]))
    explorer = dict(prof.get("explorer", {}))
    jobs.append(Job("explorer", "explorer",
                    {**common, **explorer, "data_dir": data_dir, "runs_dir": str(runs)},
                    needs=["teacher", *student_keys]))
    return jobs


# ----------------------------------------------------------------------------------------------- markers
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker_path(runs_root: Path, profile: str, key: str) -> Path:
    return runs_root / profile / "pipeline" / f"{key}.json"


def job_fingerprint(job: Job, runs_root: Path, profile: str) -> str:
    """Hash of the job's parameters, its notebook's source and its upstream jobs' fingerprints."""
    upstream = []
    for dep in job.needs:
        m = marker_path(runs_root, profile, dep)
        upstream.append(json.loads(m.read_text())["fingerprint"] if m.is_file() else None)
    if job.inputs:
        from .utils import sha256_file  # lazily: this module imports only the standard library up front
    files = [sha256_file(f) if Path(f).is_file() else "missing" for f in job.inputs]
    return _digest({"params": job.params, "notebook": _notebook_source_digest(job.notebook), "upstream": upstream,
                    **({"inputs": files} if files else {})})


def _notebook_source_digest(path: Path) -> str:
    if not path.is_file():
        return "missing"
    nb = json.loads(path.read_text())
    return _digest([c.get("source") for c in nb.get("cells", [])])


def is_done(job: Job, runs_root: Path, profile: str) -> bool:
    m = marker_path(runs_root, profile, job.key)
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text()).get("fingerprint") == job_fingerprint(job, runs_root, profile)
    except (json.JSONDecodeError, OSError):
        return False


# ----------------------------------------------------------------------------------------------- execution
@functools.cache
def _ipc_kernel_manager() -> type:
    """nbclient's kernel manager talking to the kernel over local IPC sockets instead of TCP: nothing listens on
    the network, and ipykernel has no reason to warn about unencrypted TCP traffic on every notebook."""
    import shutil
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # a private folder per kernel: parallel jobs never race for socket names
            self._ipc_dir = tempfile.mkdtemp(prefix="matting-kernel-")
            return os.path.join(self._ipc_dir, "ipc")

        def cleanup_connection_file(self) -> None:  # called once the kernel is gone for good (not on restart)
            super().cleanup_connection_file()
            if getattr(self, "_ipc_dir", None):
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

    return IPCKernelManager


def check_parameters(job: Job) -> None:
    """Refuse parameters the notebook does not declare (papermill would only warn)."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(job.notebook)))
    extra = sorted(set(job.params) - declared)
    if extra:
        raise PipelineError(f"{job.notebook.name} does not declare parameter(s) {extra} given for job {job.key!r}; "
                            f"it declares: {', '.join(sorted(declared))}. Fix the profile or the notebook.")


def run_job(job: Job, runs_root: Path, profile: str, *, log=print) -> float:
    """Execute one notebook with papermill; write its marker on success. Returns wall seconds."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from .utils import atomic_write_text

    if not job.notebook.is_file():
        raise PipelineError(f"stage {job.stage!r}: notebook {job.notebook} does not exist")
    check_parameters(job)
    out = runs_root / profile / "notebooks" / f"{job.notebook.stem}-{job.key}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    marker = marker_path(runs_root, profile, job.key)
    marker.unlink(missing_ok=True)
    t0 = time.time()
    log(f"[{profile}] {job.key}: running {job.notebook.name} -> {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    try:
        pm.execute_notebook(str(job.notebook), str(out), parameters=job.params, cwd=str(REPO),
                            progress_bar=False, kernel_name="python3", kernel_manager_class=_ipc_kernel_manager())
    except PapermillExecutionError as err:
        raise PipelineError(
            f"{job.notebook.name} failed in job {job.key!r} at cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"  executed copy with the traceback: {out}") from None
    wall = time.time() - t0
    atomic_write_text(marker, json.dumps({
        "key": job.key, "stage": job.stage, "fingerprint": job_fingerprint(job, runs_root, profile),
        "params": job.params, "executed_notebook": str(out), "wall_s": round(wall, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2, default=str))
    log(f"[{profile}] {job.key}: done in {wall:.0f} s")
    return wall


def run_pipeline(args: argparse.Namespace) -> int:
    prof = apply_overrides(load_profile(args.profile), args.set or [])
    # The notebooks run in the repository: resolve the user's relative paths against the current folder here.
    if args.adobe_root:
        prof.setdefault("data", {})["adobe_root"] = str(Path(args.adobe_root).expanduser().resolve())
    if args.public_teacher:
        prof.setdefault("teacher", {}).update(mode="import",
                                              public_checkpoint=str(Path(args.public_teacher).expanduser().resolve()))
    runs_root = Path(args.runs_dir).resolve()
    parallel = args.jobs if args.jobs is not None else int(prof.get("distill", {}).get("jobs", 1))
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0
    jobs = plan_jobs(args.profile, prof, runs_root=runs_root, seeds=args.seeds,
                     retrain_teacher=args.retrain_teacher, threads=threads)
    if args.only:
        jobs_to_run = [j for j in jobs if j.stage == args.only]
    else:
        jobs_to_run = jobs
    if args.list:
        for j in jobs_to_run:
            state = "done" if is_done(j, runs_root, args.profile) else "todo"
            print(f"{state:5s} {j.key:40s} {j.notebook.name}")
        return 0
    t0 = time.time()
    print(f"[{args.profile}] {len(jobs_to_run)} notebook run(s); runs in {runs_root / args.profile}")
    for stage in STAGES:
        batch = [j for j in jobs_to_run if j.stage == stage]
        todo = [j for j in batch if args.force or not is_done(j, runs_root, args.profile)]
        for j in batch:
            if j not in todo:
                print(f"[{args.profile}] {j.key}: up to date, skipped")
        if not todo:
            continue
        if stage == "distill" and parallel > 1:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                futures = [pool.submit(run_job, j, runs_root, args.profile) for j in todo]
                errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]
        else:
            for j in todo:
                run_job(j, runs_root, args.profile)
    print(f"[{args.profile}] pipeline finished in {time.time() - t0:.0f} s; tables and figures in "
          f"{REPO / 'figures' / args.profile}")
    return 0


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.sh",
        description="Regenerate the paper's Table 1 and figures by executing the notebooks with papermill. "
                    "Sets up ./.venv from requirements.lock on first use.",
        epilog="Profiles: smoke (whole chain in minutes, for CI), default (embedded synthetic benchmark on a "
               "2-core CPU), paper (Adobe Composition-1k, full-size networks, 320 px, 30 epochs, for a GPU; "
               "needs --adobe-root). Examples: ./run_all.sh ; ./run_all.sh --profile smoke ; "
               "./run_all.sh --only distill -j 2 ; ./run_all.sh --profile paper --adobe-root /data/adobe",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--profile", default="default", help="smoke | default | paper (a file in profiles/)")
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
                   "e.g. --set distill.steps=200 (repeatable)")
    p.add_argument("--runs-dir", default=str(REPO / "runs"), help="where executed notebooks and runs go")
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
        load_profile(args.profile)
        if args.check_args:
            return 0
        return run_pipeline(args)
    except PipelineError as err:
        print(f"run_all.sh: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
