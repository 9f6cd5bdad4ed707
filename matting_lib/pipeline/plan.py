"""A validated profile turned into the ordered list of notebook jobs (:func:`plan_jobs`). Standard library only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matting_lib.paths import REPO, RunLayout, student_run_name  # standard library only
from matting_lib.pipeline.common import DEFAULT_LIMITS, PIPELINE_KEYS, TIMEOUT_KEYS, Job
from matting_lib.pipeline.profiles import figures_dir_for


def student_code(config: str) -> tuple[str, ...]:
    """The code groups (:mod:`matting_lib.provenance`) a student of configuration ``config`` trains with: the shared
    training code, the student's objective and the entry of each distillation type it uses, so that an edit of one
    loss reruns only the runs that use it."""
    # imported here: the pipeline loads only the standard library up front (the configurations need torch)
    from matting_lib.distillation.distill import CONFIGS
    from matting_lib.params import lookup
    from matting_lib.provenance import training_groups

    return training_groups(lookup(CONFIGS, config, "configuration").types)


def plan_jobs(profile_name: str, prof: dict[str, Any], *, runs_root: Path, seeds: int | None = None,
              retrain_teacher: bool = False, threads: int = 0, figures_dir: str | None = None) -> list[Job]:
    """Turn a (validated) profile into the ordered list of notebook executions. ``threads`` (torch threads of each
    student run; 0 = torch's default) is set when student runs execute in parallel; the teacher gets every core."""
    runs = RunLayout.of(runs_root, profile_name)
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
                                                   "runs_dir": str(runs.root)},
                        needs=["data"], limits=limits, outputs=[("file", str(figures / "calibration.md"))],
                        code=("training", "evaluation", "tables")))
        return jobs

    teacher, limits = table("teacher")
    if retrain_teacher:
        teacher["mode"] = "train"
    teacher_dir = runs.teacher
    inputs = []
    if teacher.get("mode", "load") == "load":  # a replaced shipped checkpoint re-runs everything downstream
        shipped = Path(teacher.get("shipped_checkpoint") or f"matting_lib/assets/teacher-{profile_name}.pt")
        inputs.append(str(shipped if shipped.is_absolute() else REPO / shipped))
    teacher_ckpt = str(runs.teacher_checkpoint)
    trains = teacher.get("mode", "load") == "train"
    jobs.append(Job("teacher", "teacher", {**common, **teacher, "data_dir": data_dir, "run_dir": str(teacher_dir)},
                    needs=["data"], inputs=inputs, limits=limits, code=("training", "evaluation"),
                    train_dir=str(teacher_dir / "train") if trains else None,
                    outputs=[("checkpoint", teacher_ckpt), ("metrics", str(teacher_dir / "metrics.json"))]))

    student, limits = table("distill")
    configs = list(student.get("configs", []))
    n_seeds = int(seeds if seeds is not None else student.get("seeds", 1))
    first = int(student.get("first_seed", 0))  # seeds first .. first + n_seeds - 1 (a replication: fresh seeds)
    base = {k: v for k, v in student.items() if k not in PIPELINE_KEYS["distill"]}
    # shared_caches: the runs of one seed compose each batch once (batch_cache) and run the teacher once per batch
    # (teacher_cache); off unless the profile turns it on (at the paper's size they would need terabytes)
    shared = bool(student.get("shared_caches", False))
    caches = {"teacher_cache_dir": str(runs.teacher_cache) if shared else "",
              "batch_cache_dir": str(runs.batch_cache) if shared else ""}
    caches.update({k: base[k] for k in caches if k in base})  # an explicit folder in the profile wins
    student_keys = []
    for cfg in configs:
        for seed in range(first, first + n_seeds):
            key = student_run_name(cfg, seed)  # the job is named as its run folder
            run = runs.student(cfg, seed)
            student_keys.append(key)
            jobs.append(Job("distill", key,
                            {**common, **base, "config": cfg, "seed": seed, "data_dir": data_dir,
                             "teacher_checkpoint": teacher_ckpt, "runs_dir": str(runs.students),
                             **caches,
                             "threads": threads},
                            needs=["data", "teacher"], limits=limits, code=(*student_code(cfg), "evaluation"),
                            train_dir=str(run),
                            outputs=[("checkpoint", str(run / "best.pt")), ("metrics", str(run / "metrics.json"))]))
    results, limits = table("results")
    jobs.append(Job("results", "results",
                    {**common, **results, "data_dir": data_dir, "runs_dir": str(runs.root),
                     "configs": list(configs), "seeds": n_seeds, "first_seed": first},
                    needs=["teacher", *student_keys], limits=limits, outputs=[("tables", str(figures))],
                    code=("tables",)))
    explorer, limits = table("explorer")
    # the explorer writes no figures: it gets no figures_dir
    jobs.append(Job("explorer", "explorer", {"profile": profile_name, **explorer, "data_dir": data_dir,
                                             "runs_dir": str(runs.root)},
                    needs=["teacher", *student_keys], limits=limits, code=("explorer",)))
    return jobs
