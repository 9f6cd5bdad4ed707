"""The pipeline behind run_all.sh: planning, validation, outputs that must verify, figures per runs folder,
failures, and the smoke run (with reruns after a deleted/truncated output and after a teacher change)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from matting_lib.pipeline import cli, common, plan, profiles, state, validate
from matting_lib.training.student import DistillRunParams


def test_plan_smoke_profile():
    prof = profiles.load_profile("smoke")
    jobs = plan.plan_jobs("smoke", prof, runs_root=REPO / "runs", seeds=2)
    stages = [j.stage for j in jobs]
    assert stages[:2] == ["data", "teacher"] and stages[-2:] == ["results", "explorer"]
    distill = [j for j in jobs if j.stage == "distill"]
    assert len(distill) == 2 * len(prof["distill"]["configs"]) == 20
    assert {j.params["seed"] for j in distill} == {0, 1}
    assert all(j.params["teacher_checkpoint"].endswith("teacher/teacher.pt") for j in distill)
    assert jobs[1].params["mode"] == "train"
    retrain = plan.plan_jobs("smoke", {**prof, "teacher": {**prof["teacher"], "mode": "load"}},
                                 runs_root=REPO / "runs", retrain_teacher=True)
    assert retrain[1].params["mode"] == "train"
    # every job declares what it must leave behind; the limits come from the profile and never reach a notebook
    first = distill[0]
    assert first.outputs == [("checkpoint", str(REPO / "runs/smoke/students/kd-student-seed0/best.pt")),
                             ("metrics", str(REPO / "runs/smoke/students/kd-student-seed0/metrics.json"))]
    assert jobs[0].outputs == [("dataset", str(REPO / "data/synthetic-smoke"))]
    assert jobs[1].outputs[0] == ("checkpoint", str(REPO / "runs/smoke/teacher/teacher.pt"))
    assert jobs[-2].outputs == [("tables", str(REPO / "figures/smoke"))]
    assert first.limits == {"cell_timeout_s": 600, "job_timeout_s": 1200}
    assert not any(k in j.params for j in jobs for k in common.TIMEOUT_KEYS)


def test_first_seed_shifts_every_student_run_and_reaches_notebook_04():
    """A replication profile sets distill.first_seed: its runs are seeds first_seed .. first_seed + n - 1, named
    so, and notebook 04 is told where they start; a negative or fractional value is refused with the key."""
    prof = profiles.load_profile("replication")
    assert prof["distill"]["first_seed"] == 7
    jobs = plan.plan_jobs("replication", prof, runs_root=REPO / "runs", seeds=2)
    distill = [j for j in jobs if j.stage == "distill"]
    assert {j.params["seed"] for j in distill} == {7, 8}
    assert {j.key for j in distill if j.params["config"] == "student"} == {"kd-student-seed7", "kd-student-seed8"}
    assert not any("first_seed" in j.params for j in distill)  # a pipeline key: never a notebook 03 parameter
    results = next(j for j in jobs if j.stage == "results")
    assert (results.params["seeds"], results.params["first_seed"]) == (2, 7)
    default = profiles.load_profile("default")
    assert {j.params["seed"] for j in plan.plan_jobs("default", default, runs_root=REPO / "runs", seeds=2)
            if j.stage == "distill"} == {0, 1}
    for bad in (-1, 1.5, True):
        problems = validate._pipeline_key_problems("distill", {"first_seed": bad})
        assert problems and problems[0].startswith(f"distill.first_seed = {bad!r}: expected an integer >= 0")


@pytest.mark.parametrize("name", profiles.available_profiles())
def test_every_profile_validates_against_its_notebooks(name):
    """Each profile only sets parameters its notebooks declare, with their types (papermill would merely warn)."""
    prof = profiles.load_profile(name)
    if prof["data"].get("source") == "adobe":  # the paper profile runs with --adobe-root
        prof["data"]["adobe_root"] = "/data/adobe"
    validate.validate_profile(prof, full=True)
    jobs = plan.plan_jobs(name, prof, runs_root=REPO / "runs", seeds=1)
    validate.check_jobs(jobs)
    assert all(set(j.limits) == set(common.TIMEOUT_KEYS) for j in jobs)


# Values only a notebook's parameter dataclass (or the teacher) can judge, refused when the jobs are planned, before
# the data and teacher stages run: (profile, --set arguments, a fragment of the message).
PLANNED_BAD = [
    ("smoke", ["--set", "distill.steps=0"], "job 'kd-student-seed0' (03_distill.ipynb): steps must be >= 1"),
    ("smoke", ["--set", "distill.spatial_mode=fast"], "unknown spatial_mode 'fast'"),
    ("smoke", ["--set", "distill.lr_decay=\"20,x\""], "lr_decay='20,x': give comma-separated optimiser steps"),
    ("smoke", ["--set", "teacher.mode=trian"], "job 'teacher' (02_teacher.ipynb): mode='trian'; valid modes: train"),
    ("smoke", ["--set", "data.preset=tiny"], "unknown preset 'tiny'"),
    ("smoke", ["--set", "distill.width=0.25"], "distill.width = 0.25 but teacher.width has width 0.125"),
    ("default", ["--set", "distill.width=0.5"],
     "distill.width = 0.5 but the shipped teacher (teacher-default.json) has width 0.25"),
    ("paper", [], "source='adobe' needs adobe_root"),
]


@pytest.mark.parametrize("profile, args, message", PLANNED_BAD)
def test_planned_jobs_are_checked_before_anything_runs(tmp_path, capsys, profile, args, message):
    code = cli.main(["--profile", profile, "--runs-dir", str(tmp_path / "runs"), "--list", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "runs").exists()  # nothing planned was executed or written


def test_one_run_name_for_the_student_folder_and_its_job(tmp_path):
    from matting_lib.distillation import distill
    from matting_lib.paths import student_run_name

    for cfg in distill.PAPER_CONFIGS:
        assert student_run_name(cfg, 3) == distill.run_name(distill.PAPER_CONFIGS[cfg], 3) \
            == distill.run_name(cfg, 3) == f"kd-{cfg}-seed3"
    jobs = plan.plan_jobs("smoke", profiles.load_profile("smoke"), runs_root=tmp_path)
    students = [j for j in jobs if j.stage == "distill"]
    assert students and all(j.key == Path(j.outputs[0][1]).parent.name for j in students)  # key = run folder
    assert students[0].key == "kd-student-seed0"


def test_overrides_and_errors():
    prof = profiles.apply_overrides({"distill": {"steps": 5}}, ["distill.steps=7", "teacher.mode=load",
                                                               "distill.lr=0.5"])
    assert prof["distill"]["steps"] == 7 and prof["teacher"]["mode"] == "load" and prof["distill"]["lr"] == 0.5
    assert profiles.apply_overrides({}, ["distill.configs=spatial"])["distill"]["configs"] == "spatial"  # not split
    with pytest.raises(common.ProfileError, match="STAGE.KEY=VALUE"):
        profiles.apply_overrides({}, ["steps=3"])
    with pytest.raises(common.ProfileError, match="valid profiles: .*smoke"):
        profiles.load_profile("smok")
    job = common.Job("teacher", "teacher", {"no_such_parameter": 1})
    with pytest.raises(common.ProfileError, match="does not declare parameter"):
        validate.check_jobs([job])


# Each bad --set: (arguments, a fragment of the message). Every one exits 2 before anything runs.
BAD_INPUTS = [
    (["--set", "distill.stepz=5"], "distill.stepz: unknown key (did you mean 'steps'?)"),
    (["--set", "distill.configs=spatial"], "distill.configs = 'spatial': expected a non-empty list"),
    (["--set", "distill.configs=[]"], "expected a non-empty list of configuration names"),
    (["--set", 'distill.configs=["spatail"]'], "unknown configuration 'spatail' (did you mean 'spatial'?)"),
    (["--set", 'distill.configs=["spatial","spatial"]'], "listed twice"),
    (["--set", "distill.seeds=abc"], "distill.seeds = 'abc': expected an integer >= 1"),
    (["--set", "distill.jobs=abc"], "distill.jobs = 'abc': expected an integer >= 1"),
    (["--set", "distill.jobs=0"], "distill.jobs = 0: expected an integer >= 1"),
    (["--set", "distill.lr=abc"], "distill.lr = 'abc' (str): 03_distill.ipynb declares lr: float"),
    (["--set", "explorer.size=1.5"], "explorer.size = 1.5 (float): 05_similarity_explorer.ipynb declares size: int"),
    (["--set", "teacher.lr_decay=2000"], "quote it: --set 'teacher.lr_decay=\"2000\"'"),
    (["--set", "data.overwrite=1"], "data.overwrite = 1 (int): 01_compositing.ipynb declares overwrite: bool"),
    (["--set", "distill.seed=3"], "distill.seed = 3: set by the pipeline for every job; use --seeds N"),
    (["--set", "results.figures_dir=x"], "use --figures-dir instead"),
    (["--set", "distill.layers=conv3-5"], "run notebook 03 directly for a layers override"),
    (["--set", "teacher.cell_timeout_s=0"], "teacher.cell_timeout_s = 0: expected a positive number of seconds"),
    (["--set", "distill.job_timeout_s=soon"], "distill.job_timeout_s = 'soon': expected a positive number"),
    (["--set", "stepz=5"], "expected STAGE.KEY=VALUE"),
    (["--set", "distil.steps=5"], "expected STAGE.KEY=VALUE with STAGE one of data, calibrate, teacher"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[a[-1] for a, _ in BAD_INPUTS])
def test_bad_set_fails_before_anything_runs(tmp_path, capsys, args, message):
    rc = cli.main(["--profile", "smoke", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "run_all.sh: error:" in err
    assert not any(tmp_path.iterdir()), "nothing may be created or executed"


@pytest.mark.parametrize("text, message", [
    (b"[distill]\nsteps = \n", "is not valid TOML: Invalid value (at line 2, column 9)"),
    (b"[distill]\nnote = \"caf\xe9\"\n", "is not UTF-8 text (byte b'\\xe9' on line 2)"),
])
def test_a_profile_that_is_not_toml_is_named_with_its_line(tmp_path, monkeypatch, capsys, text, message):
    """A hand-edited profile with a syntax error: its file and line, exit 2, no TOMLDecodeError traceback."""
    (tmp_path / "mine.toml").write_bytes(text)
    monkeypatch.setattr(profiles, "profiles_dir", lambda: tmp_path)
    rc = cli.main(["--check-args", "--profile", "mine"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"run_all.sh: error: {tmp_path / 'mine.toml'} {message}"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--set", "distill.configs=spatial"], "distill.configs = 'spatial'"),
    (["--executor", "slurm", "--slurm-time", "x"], "--slurm-time 'x'"),
    (["--set", "distill.stepz=5"], "distill.stepz: unknown key (did you mean 'steps'?)"),
    (["--set", "distill.lr=abc"], "distill.lr = 'abc' (str): 03_distill.ipynb declares lr: float"),
    (["--set", "teacher.lr_decay=2000"], "quote it: --set 'teacher.lr_decay=\"2000\"'"),
])
def test_check_args_is_standard_library_only(args, message):
    """run_all.sh's --check-args runs under the base interpreter before the environment exists: it must report a
    bad pipeline key, a notebook parameter's unknown key or wrong type, or an executor option there, in about a
    second, importing nothing outside the standard library."""
    code = ("import sys; from matting_lib.pipeline import cli; "
            f"rc = cli.main(['--check-args', '--profile', 'smoke', *{args!r}]); "
            "heavy = sorted(m for m in ('numpy', 'torch', 'papermill', 'nbformat', 'submitit', 'zmq') "
            "if m in sys.modules); print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    assert message in out.stderr


def test_the_parameters_cell_is_read_as_papermill_reads_it(tmp_path):
    """--check-args reads the notebooks' parameters cells with the standard library: the same names, types, defaults
    and help as papermill.inspect_notebook, which the notebooks' executions use."""
    import nbformat
    import papermill as pm
    from nbformat.v4 import new_code_cell, new_notebook

    plain = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1\ny: str = 'a'  # a letter\nz = [1,\n     2]",
                                                     metadata={"tags": ["parameters"]})],
                                 metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}}), str(plain))
    for nb in [*sorted((REPO / "notebooks").glob("*.ipynb")), plain]:
        validate.declared_parameters.cache_clear()
        assert validate.declared_parameters(nb) == pm.inspect_notebook(str(nb)), nb.name


def test_figures_go_with_the_runs_folder(tmp_path):
    """Two runs folders never share tables; the default runs folder keeps the repository's figures/<profile>."""
    prof = profiles.load_profile("smoke")

    def figs(runs_root, figures_dir=None):
        jobs = plan.plan_jobs("smoke", prof, runs_root=runs_root, figures_dir=figures_dir)
        assert len({j.params["figures_dir"] for j in jobs if j.stage != "explorer"}) == 1
        assert "figures_dir" not in jobs[-1].params  # the explorer writes no figures
        return jobs[-2].params["figures_dir"]

    assert figs(REPO / "runs") == str(REPO / "figures" / "smoke")
    a, b = figs(tmp_path / "A"), figs(tmp_path / "B")
    assert a == str(tmp_path / "A" / "smoke" / "figures") and b == str(tmp_path / "B" / "smoke" / "figures")
    assert figs(tmp_path / "A", str(tmp_path / "F")) == str(tmp_path / "F")


def test_relative_adobe_root_and_public_teacher_are_resolved_against_the_current_folder(tmp_path, monkeypatch):
    """The notebooks run in the repository; a relative path the user typed means the folder they typed it in."""
    seen = {}
    real = plan.plan_jobs
    monkeypatch.setattr(cli, "plan_jobs", lambda name, prof, **k: seen.update(prof) or real(name, prof, **k))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--profile", "paper", "--adobe-root", "data/adobe", "--public-teacher",
                          "~/BEST_checkpoint.tar", "--runs-dir", str(tmp_path / "runs"), "--list"]) == 0
    assert seen["data"]["adobe_root"] == str(tmp_path / "data" / "adobe")
    assert seen["teacher"]["public_checkpoint"] == str(Path.home().resolve() / "BEST_checkpoint.tar")


def test_fingerprint_tracks_params_and_upstream(tmp_path):
    a = common.Job("results", "results", {"seeds": 1}, needs=["teacher"])
    f1 = state.job_fingerprint(a, tmp_path, "p")
    assert f1 == state.job_fingerprint(common.Job("results", "results", {"seeds": 1}, needs=["teacher"]), tmp_path, "p")
    assert f1 != state.job_fingerprint(common.Job("results", "results", {"seeds": 2}, needs=["teacher"]), tmp_path, "p")
    marker = state.marker_path(tmp_path, "p", "teacher")
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": "abc", "finished": "t1"}))
    f2 = state.job_fingerprint(a, tmp_path, "p")
    assert f2 != f1  # an upstream result changed -> rerun
    marker.write_text(json.dumps({"fingerprint": "abc", "finished": "t2"}))
    assert state.job_fingerprint(a, tmp_path, "p") != f2  # the upstream job ran again -> rerun
    assert not state.job_state(a, tmp_path, "p")[0]


def test_load_mode_fingerprint_follows_the_shipped_checkpoint(tmp_path):
    shipped = tmp_path / "teacher-x.pt"
    prof = {"teacher": {"mode": "load", "shipped_checkpoint": str(shipped)}}
    job = plan.plan_jobs("x", prof, runs_root=tmp_path)[1]
    assert job.stage == "teacher" and job.inputs == [str(shipped)]
    missing = state.job_fingerprint(job, tmp_path, "x")
    shipped.write_bytes(b"weights v1")
    v1 = state.job_fingerprint(job, tmp_path, "x")
    shipped.write_bytes(b"weights v2")
    assert len({missing, v1, state.job_fingerprint(job, tmp_path, "x")}) == 3  # replaced file -> rerun
    trained = plan.plan_jobs("x", prof, runs_root=tmp_path, retrain_teacher=True)[1]
    assert trained.inputs == []  # training does not read the shipped file


def _student_outputs(run):
    import torch

    from matting_lib.networks.checkpoints import save_checkpoint
    from matting_lib.networks.models import build_student

    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", model=build_student(0.0625), config={}, epoch=0, step=1, metrics={})
    (run / "metrics.json").write_text(json.dumps({"config": "student", "seed": 0, "metrics": {}}))


def _mark_finished(job, runs_root):
    """The executed notebook and the marker a finished run of ``job`` leaves (profile "p"); returns the notebook."""
    nb = state.executed_path(runs_root, "p", job)
    nb.parent.mkdir(parents=True)
    nb.write_text(json.dumps({"cells": [], "metadata": {"papermill": {"exception": False}}}))
    marker = state.marker_path(runs_root, "p", job.key)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": state.job_fingerprint(job, runs_root, "p"), "finished": "x"}))
    return nb


def test_up_to_date_needs_outputs_that_verify(tmp_path):
    """A matching marker is not enough: a deleted metrics.json or a truncated best.pt makes the job run again."""
    job = plan.plan_jobs("p", {"distill": {"configs": ["student"]}}, runs_root=tmp_path)[2]
    run = tmp_path / "p" / "students" / "kd-student-seed0"
    run.mkdir(parents=True)
    _student_outputs(run)
    nb = _mark_finished(job, tmp_path)
    assert state.job_state(job, tmp_path, "p") == (True, "")

    (run / "metrics.json").unlink()
    done, why = state.job_state(job, tmp_path, "p")
    assert not done and "metrics.json is missing" in why
    _student_outputs(run)
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    done, why = state.job_state(job, tmp_path, "p")
    assert not done and "best.pt does not load" in why
    _student_outputs(run)
    nb.unlink()
    assert "executed notebook" in state.job_state(job, tmp_path, "p")[1]


def test_a_record_notebook_04_refuses_is_one_its_rerun_replaces(tmp_path):
    """A metrics.json of another run (a copied folder) fails notebook 04 with "rerun that run (… --only distill)";
    that command must then run the job again instead of answering "up to date, skipped": one check
    (paths.metrics_problem) decides both."""
    from matting_lib.reporting.results import collect

    job = plan.plan_jobs("p", {"distill": {"configs": ["at"]}}, runs_root=tmp_path)[2]
    run = tmp_path / "p" / "students" / "kd-at-seed0"
    run.mkdir(parents=True)
    _student_outputs(run)  # the record of the no-KD student, seed 0, copied into the AT run's folder
    (tmp_path / "p" / "teacher").mkdir()
    (tmp_path / "p" / "teacher" / "metrics.json").write_text(json.dumps({"config": "teacher", "metrics": {}}))
    _mark_finished(job, tmp_path)

    problem = (f"{run / 'metrics.json'} holds config 'student' seed 0, not 'at' seed 0: a run folder was copied or "
               f"renamed")
    with pytest.raises(ValueError) as refused:
        collect(tmp_path / "p", configs=["at"], seeds=1, command="./run_all.sh --profile p")
    assert str(refused.value).startswith(f"{problem}; rerun that run (./run_all.sh --profile p --only distill")
    assert state.job_state(job, tmp_path, "p") == (False, problem)  # so that command runs the job again
    (run / "metrics.json").write_text(json.dumps({"config": "at", "seed": 0, "metrics": {}}))  # what the rerun writes
    assert state.job_state(job, tmp_path, "p") == (True, "")
    assert collect(tmp_path / "p", configs=["at"], seeds=1)[1]["config"] == "at"


def test_tables_must_hold_every_configuration(tmp_path):
    job = common.Job("results", "results", {"configs": ["student", "spatial"]})
    for name in state.TABLE_FILES:
        (tmp_path / name).write_text("x\n")
    (tmp_path / "table1_official.csv").write_text("config,name\nteacher,DIM-teacher\nstudent,DIM-student\n")
    assert state.verify_outputs([("tables", str(tmp_path))], job) == [
        f"{tmp_path / 'table1_official.csv'} has no row for spatial"]
    (tmp_path / "costs.md").unlink()
    assert "lacks costs.md" in state.verify_outputs([("tables", str(tmp_path))], job)[0]


@pytest.mark.slow
def test_failing_notebook_names_notebook_cell_and_error(tmp_path):
    # a value only the executing notebook can find wrong (a bad mode is refused when the jobs are planned)
    missing = tmp_path / "no-such-teacher.pt"
    out = subprocess.run([sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "--only", "teacher",
                          "--set", "teacher.mode=load", "--set", f"teacher.shipped_checkpoint={missing}",
                          "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 1, out.stderr
    assert "02_teacher.ipynb failed" in out.stderr and "at cell" in out.stderr
    assert "FileNotFoundError" in out.stderr and "no shipped teacher at" in out.stderr
    assert not state.marker_path(tmp_path, "smoke", "teacher").exists()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_and_resume(smoke_run):
    """./run_all.sh --profile smoke: every notebook runs, Table 1 and figures are written under the runs folder
    (the repository's figures/ untouched); a second run skips all."""
    tmp_path, output, before = smoke_run
    repo_figs = REPO / "figures" / "smoke"
    cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "-j", "2", "--runs-dir", str(tmp_path)]
    figs = tmp_path / "smoke" / "figures"
    table = (figs / "table1_official.md").read_text()
    for name in ("DIM-teacher", "DIM-student (no KD)", "DIM-spatial+channel", "DIM-batch+spatial+channel"):
        assert name in table
    for stem in ("04_relative_sad", "04_forest_sad", "04_learning_curves", "04_qualitative", "04_similarity_matrices"):
        assert (figs / f"{stem}.png").stat().st_size > 1000
    assert (figs / "table1_spkd.tex").is_file() and (figs / "summary.md").read_text().strip()
    after = {str(p): p.stat().st_mtime_ns for p in repo_figs.rglob("*")} if repo_figs.is_dir() else {}
    assert after == before, "a run with its own --runs-dir wrote into the repository's figures/"
    notebooks = sorted((tmp_path / "smoke" / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 2 + 10 + 2
    t0 = time.time()
    # as run_all.sh sets it: the wall time reported counts from there (its environment checks included)
    env = {**os.environ, "MATTING_START_TIME": str(t0 - 30)}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("up to date, skipped") == 14
    assert time.time() - t0 < 60
    wall = int(re.search(r"pipeline finished in (\d+) s wall time \(0 notebook run\(s\)", again.stdout).group(1))
    assert 30 <= wall <= time.time() - t0 + 31
    assert "KeyboardInterrupt" not in output  # no kernel shutdown interrupted a message handler (pipeline_exec)


def _run(args, runs):
    cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "--runs-dir", str(runs),
           "--set", 'distill.configs=["student","spatial"]', *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_smoke_reruns_damaged_outputs_and_retrains_students_after_a_teacher_change(tmp_path):
    runs = tmp_path / "R"
    students = runs / "smoke" / "students"
    _run([], runs)
    # a deleted metrics.json and a truncated best.pt: exactly those jobs (and the ones reading them) run again
    (students / "kd-spatial-seed0" / "metrics.json").unlink()
    best = students / "kd-student-seed0" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    listing = _run(["--list"], runs)
    assert "todo  kd-spatial-seed0" in listing and "metrics.json is missing" in listing
    assert "todo  kd-student-seed0" in listing and "best.pt does not load" in listing
    assert "done  teacher" in listing and "done  data" in listing
    second = _run([], runs)
    assert "kd-spatial-seed0: running" in second and "kd-student-seed0: running" in second
    assert "teacher: up to date, skipped" in second
    assert json.loads((students / "kd-spatial-seed0" / "metrics.json").read_text())["config"] == "spatial"
    from matting_lib.networks.checkpoints import load_model

    load_model(best)  # retrained: the damaged run was moved aside, not resumed
    assert len(list(students.glob("kd-student-seed0.stale-*"))) == 1
    assert not list(students.glob("kd-spatial-seed0.stale-*"))  # only its metrics were missing: resumed

    # a teacher change: the teacher retrains from scratch, the distilled student retrains, the no-KD one resumes.
    # (Another seed, not one more step: the best checkpoint of a longer run can be the same weights, and then the
    # students rightly resume.)
    third = _run(["--set", "teacher.seed=1"], runs)
    assert "teacher: running" in third
    assert len(list((runs / "smoke" / "teacher").glob("train.stale-*"))) == 1
    assert len(list(students.glob("kd-spatial-seed0.stale-*"))) == 1
    assert len(list(students.glob("kd-student-seed0.stale-*"))) == 1
    executed = (runs / "smoke" / "notebooks" / "03_distill-kd-spatial-seed0.ipynb").read_text()
    assert "not the same training (teacher:" in executed and "starting afresh" in executed
    assert json.loads((students / "kd-spatial-seed0" / "metrics.json").read_text())["steps"] == 6


def test_a_code_change_reruns_the_runs_that_execute_it_and_a_docstring_edit_does_not(tmp_path, monkeypatch):
    """A training job's fingerprint and its run's identity carry the digests of the code it executes
    (provenance.training_groups): an edit of the spatial term reruns the runs that distil with it (and the explorer,
    which shows every loss) and no other, the no-KD student and the teacher included; an edit of the loop reruns every
    training; a docstring or comment changes nothing. The rerun says which part changed."""
    import shutil

    from matting_lib import provenance
    from matting_lib.training import run_identity

    pkg = tmp_path / "matting_lib"
    shutil.copytree(REPO / "matting_lib", pkg, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    monkeypatch.setattr(provenance, "PACKAGE", pkg)
    runs = tmp_path / "runs"
    jobs = plan.plan_jobs("smoke", profiles.load_profile("smoke"), runs_root=runs)

    def fingerprints():
        return {j.key: state.job_fingerprint(j, runs, "smoke") for j in jobs}

    def identity_code(config):
        return run_identity.code_groups({"distill": DistillRunParams(config=config).distill_config.to_dict()})

    before = fingerprints()
    no_kd = provenance.group_digests(*identity_code("student"))
    losses = pkg / "distillation" / "kd_losses.py"
    text = losses.read_text()
    losses.write_text(text.replace('"""', '"""Edited. ', 1) + "\n# a comment\n")
    assert fingerprints() == before
    term = "    return sum((similarity_loss(\"spatial\", s, t, spatial_mode=ctx.spatial_mode) for s, t in zip(fs, ft)),"
    assert term in text
    losses.write_text(text.replace(term, term.replace("return sum(", "return 1.0 * sum(")))
    after = fingerprints()
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == ["explorer", "kd-batch+spatial+channel-seed0", "kd-spatial+channel-seed0", "kd-spatial-seed0"]
    assert provenance.group_digests(*identity_code("student")) == no_kd  # the no-KD run folder is resumed as it is
    marker = state.marker_path(runs, "smoke", "kd-spatial-seed0")
    marker.parent.mkdir(parents=True)
    job = next(j for j in jobs if j.key == "kd-spatial-seed0")
    losses.write_text(text)
    marker.write_text(json.dumps({"fingerprint": before[job.key], "params": job.params,
                                  "parts": state.fingerprint_parts(job, runs, "smoke")}))
    losses.write_text(text.replace(term, term.replace("return sum(", "return 1.0 * sum(")))
    assert state.job_state(job, runs, "smoke") == (False, "library code changed: kd:spatial (the units of each "
                                                          "group: matting_lib.provenance)")
    losses.write_text(text)
    marker.unlink()
    assert fingerprints() == before
    loop = pkg / "training" / "loop.py"
    loop.write_text(loop.read_text() + "\n\ndef _changed():\n    return 2\n")
    after = fingerprints()
    assert sorted(k for k in before if before[k] != after[k]) == sorted(
        j.key for j in jobs if j.stage in ("teacher", "distill"))


def test_the_rerun_reason_names_the_part_that_changed(tmp_path):
    """The marker records the parts of the fingerprint: a rerun names the parameters, the upstream job or the
    input file that changed, not all of them at once."""
    shipped = tmp_path / "teacher-x.pt"
    shipped.write_bytes(b"weights v1")
    job = plan.plan_jobs("x", {"teacher": {"mode": "load", "shipped_checkpoint": str(shipped)}},
                         runs_root=tmp_path)[1]
    marker = state.marker_path(tmp_path, "x", job.key)
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": state.job_fingerprint(job, tmp_path, "x"), "params": job.params,
                                  "parts": state.fingerprint_parts(job, tmp_path, "x")}))
    shipped.write_bytes(b"weights v2")
    assert state.job_state(job, tmp_path, "x")[1] == f"input file(s) changed: {shipped}"
    job.params["steps"] = 7
    state.marker_path(tmp_path, "x", "data").write_text(json.dumps({"fingerprint": "f", "finished": "t"}))
    assert state.job_state(job, tmp_path, "x")[1] == (f"parameters changed: steps None -> 7; upstream results "
                                                      f"changed (data ran again); input file(s) changed: {shipped}")
    marker.write_text(json.dumps({"fingerprint": "old"}))
    assert "its marker does not record which" in state.job_state(job, tmp_path, "x")[1]


def test_force_moves_a_training_aside_so_that_it_retrains(tmp_path):
    """--force: the notebook would otherwise find the same training in run.json and only re-score the old weights."""
    run = tmp_path / "students" / "kd-student-seed0"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"weights")
    job = common.Job("distill", "kd-student-seed0", {}, train_dir=str(run))
    log = []
    aside = cli.retrain_afresh(job, "smoke", log=log.append)
    assert not run.exists() and (aside / "last.pt").read_bytes() == b"weights"  # kept, never deleted
    assert aside.name.startswith("kd-student-seed0.stale-") and "--force" in log[0]
    assert cli.retrain_afresh(job, "smoke", log=log.append) is None  # nothing there: nothing to move
    assert cli.retrain_afresh(common.Job("results", "results", {}), "smoke") is None  # trains nothing


def test_ablation_profile_plans_table3s_layer_sets_with_the_papers_numbers(tmp_path):
    """profiles/ablation.toml: spatial+channel on the paper's four layer sets, each a named configuration whose
    run, row and paper numbers (Table 3) follow from its name."""
    from matting_lib.distillation import distill
    from matting_lib.reporting import results

    prof = profiles.load_profile("ablation")
    validate.validate_profile(prof, full=True)
    jobs = plan.plan_jobs("ablation", prof, runs_root=tmp_path)
    validate.check_jobs(jobs)
    names = [c for c in prof["distill"]["configs"] if c in distill.ABLATION_CONFIGS]
    assert len(names) == 3 and {distill.ABLATION_CONFIGS[n].layers for n in names} | {distill.DEFAULT_LAYERS} == \
        set(distill.LAYER_ABLATION.values())
    for n in names:  # the run a job plans is the run notebook 03 names
        assert DistillRunParams(config=n).run_name == f"kd-{n}-seed0" in {j.key for j in jobs}
    summary = {c: {m: results.Stat(1.0, 0.0, 1) for m in results.METRIC_KEYS} for c in ["student", *names]}
    rows = {r["config"]: r for r in results.table_rows(summary)}
    assert rows[names[0]]["paper_sad"] == 98.25 and rows[names[0]]["name"].endswith("conv3-5 + dconv5")
