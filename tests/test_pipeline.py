"""The pipeline behind run_all.sh: planning, skipping finished work, overrides, failures, and the smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from matting_lib import pipeline


def test_plan_smoke_profile():
    prof = pipeline.load_profile("smoke")
    jobs = pipeline.plan_jobs("smoke", prof, runs_root=REPO / "runs", seeds=2)
    stages = [j.stage for j in jobs]
    assert stages[:2] == ["data", "teacher"] and stages[-2:] == ["results", "explorer"]
    distill = [j for j in jobs if j.stage == "distill"]
    assert len(distill) == 2 * len(prof["distill"]["configs"]) == 20
    assert {j.params["seed"] for j in distill} == {0, 1}
    assert all(j.params["teacher_checkpoint"].endswith("teacher/teacher.pt") for j in distill)
    assert jobs[1].params["mode"] == "train"
    retrain = pipeline.plan_jobs("smoke", {**prof, "teacher": {**prof["teacher"], "mode": "load"}},
                                 runs_root=REPO / "runs", retrain_teacher=True)
    assert retrain[1].params["mode"] == "train"


@pytest.mark.parametrize("name", pipeline.available_profiles())
def test_every_profile_matches_its_notebooks(name):
    """Each profile only sets parameters its notebooks declare (papermill alone would merely warn)."""
    jobs = pipeline.plan_jobs(name, pipeline.load_profile(name), runs_root=REPO / "runs", seeds=1)
    for job in {j.stage: j for j in jobs}.values():
        pipeline.check_parameters(job)


def test_overrides_and_errors():
    prof = pipeline.apply_overrides({"distill": {"steps": 5}}, ["distill.steps=7", "teacher.mode=load",
                                                               "distill.lr=0.5"])
    assert prof["distill"]["steps"] == 7 and prof["teacher"]["mode"] == "load" and prof["distill"]["lr"] == 0.5
    with pytest.raises(pipeline.PipelineError, match="STAGE.KEY=VALUE"):
        pipeline.apply_overrides({}, ["steps=3"])
    with pytest.raises(pipeline.PipelineError, match="valid profiles: .*smoke"):
        pipeline.load_profile("smok")
    job = pipeline.Job("teacher", "teacher", {"no_such_parameter": 1})
    with pytest.raises(pipeline.PipelineError, match="does not declare parameter"):
        pipeline.check_parameters(job)


def test_relative_adobe_root_and_public_teacher_are_resolved_against_the_current_folder(tmp_path, monkeypatch):
    """The notebooks run in the repository; a relative path the user typed means the folder they typed it in."""
    seen = {}
    real = pipeline.plan_jobs
    monkeypatch.setattr(pipeline, "plan_jobs", lambda name, prof, **k: seen.update(prof) or real(name, prof, **k))
    monkeypatch.chdir(tmp_path)
    assert pipeline.main(["--profile", "paper", "--adobe-root", "data/adobe", "--public-teacher",
                          "~/BEST_checkpoint.tar", "--runs-dir", str(tmp_path / "runs"), "--list"]) == 0
    assert seen["data"]["adobe_root"] == str(tmp_path / "data" / "adobe")
    assert seen["teacher"]["public_checkpoint"] == str(Path.home().resolve() / "BEST_checkpoint.tar")


def test_fingerprint_tracks_params_and_upstream(tmp_path):
    a = pipeline.Job("results", "results", {"seeds": 1}, needs=["teacher"])
    f1 = pipeline.job_fingerprint(a, tmp_path, "p")
    assert f1 == pipeline.job_fingerprint(pipeline.Job("results", "results", {"seeds": 1}, needs=["teacher"]), tmp_path, "p")
    assert f1 != pipeline.job_fingerprint(pipeline.Job("results", "results", {"seeds": 2}, needs=["teacher"]), tmp_path, "p")
    marker = pipeline.marker_path(tmp_path, "p", "teacher")
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": "abc"}))
    assert pipeline.job_fingerprint(a, tmp_path, "p") != f1  # an upstream result changed -> rerun
    assert not pipeline.is_done(a, tmp_path, "p")


def test_load_mode_fingerprint_follows_the_shipped_checkpoint(tmp_path):
    shipped = tmp_path / "teacher-x.pt"
    prof = {"teacher": {"mode": "load", "shipped_checkpoint": str(shipped)}}
    job = pipeline.plan_jobs("x", prof, runs_root=tmp_path)[1]
    assert job.stage == "teacher" and job.inputs == [str(shipped)]
    missing = pipeline.job_fingerprint(job, tmp_path, "x")
    shipped.write_bytes(b"weights v1")
    v1 = pipeline.job_fingerprint(job, tmp_path, "x")
    shipped.write_bytes(b"weights v2")
    assert len({missing, v1, pipeline.job_fingerprint(job, tmp_path, "x")}) == 3  # replaced file -> rerun
    trained = pipeline.plan_jobs("x", prof, runs_root=tmp_path, retrain_teacher=True)[1]
    assert trained.inputs == []  # training does not read the shipped file


def test_failing_notebook_names_notebook_cell_and_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "--only", "teacher",
                          "--set", "teacher.mode=bogus", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 1
    assert "02_teacher.ipynb failed" in out.stderr and "at cell" in out.stderr
    assert "ValueError" in out.stderr and "bogus" in out.stderr
    assert not pipeline.marker_path(tmp_path, "smoke", "teacher").exists()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_and_resume(tmp_path):
    """./run_all.sh --profile smoke: every notebook runs, Table 1 and figures are written; a second run skips all."""
    cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "-j", "2", "--runs-dir", str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    figs = REPO / "figures" / "smoke"
    table = (figs / "table1_official.md").read_text()
    for name in ("DIM-teacher", "DIM-student (no KD)", "DIM-spatial+channel", "DIM-batch+spatial+channel"):
        assert name in table
    for stem in ("04_relative_sad", "04_learning_curves", "04_qualitative", "04_similarity_matrices"):
        assert (figs / f"{stem}.png").stat().st_size > 1000
    assert (figs / "table1_spkd.tex").is_file() and (figs / "summary.md").read_text().strip()
    notebooks = sorted((tmp_path / "smoke" / "notebooks").glob("*.ipynb"))
    assert len(notebooks) == 2 + 10 + 2
    t0 = time.time()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("up to date, skipped") == 14
    assert time.time() - t0 < 60
