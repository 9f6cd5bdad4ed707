"""The submitit executors on one machine, through submitit's LocalExecutor: the smoke profile gives the same
runs.csv as a local run; a job preempted mid-training is requeued and finishes with the weights of an
uninterrupted one; a detached pipeline reports its jobs and picks them up again."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
import torch
from conftest import REPO
from nbformat.v4 import new_code_cell, new_notebook

from matting_lib.pipeline import cli, common, state
from matting_lib.pipeline.slurm import NotebookJob, SubmititRunner

pytestmark = pytest.mark.slow

TRAINING = """\
import sys
import torch
sys.path.insert(0, {tests!r})
from test_training import TinyMatting
from matting_lib.networks.models import build_student
from matting_lib.settings import TrainConfig
from matting_lib.training.loop import AlphaObjective, train

torch.set_num_threads(1)
torch.manual_seed(0)
cfg = TrainConfig(lr=0.01, batch_size=2, steps=steps, val_every=20, seed=0, device="cpu", progress=False)
result = train(build_student(0.125), AlphaObjective(), TinyMatting(8, seed=1),
                        TinyMatting(2, seed=2), cfg, run_dir)
print("trained to step", result.step)
"""


def _training_job(tmp_path, run_dir, steps=400):
    nb = tmp_path / "train.ipynb"
    if not nb.exists():
        nbformat.write(new_notebook(cells=[
            new_code_cell(f"run_dir = ''\nsteps = {steps}", metadata={"tags": ["parameters"]}),
            new_code_cell(TRAINING.format(tests=str(REPO / "tests")))],
            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
                      "language_info": {"name": "python"}}), str(nb))
    return common.Job("teacher", "teacher", {"run_dir": str(run_dir), "steps": steps}, notebook=nb,
                      outputs=[("checkpoint", str(run_dir / "best.pt"))],
                      limits={"cell_timeout_s": 300, "job_timeout_s": 600})


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _log_rows(run_dir):
    return list(csv.DictReader(io.StringIO((run_dir / "log.csv").read_text())))


def _children(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def test_preempted_job_is_requeued_and_finishes_with_the_uninterrupted_weights(tmp_path):
    """The submitted callable (NotebookJob around cli.run_job) run to the end, against the same job submitted with
    submitit's LocalExecutor (detached), preempted with SLURM's signal (USR2) after its first checkpoints, requeued
    by submitit from NotebookJob.checkpoint, and waited for by a second call: the same best.pt and last.pt, and the
    log rows up to the resumed step are the first execution's (the training resumed, it did not restart)."""
    ref_dir, run_dir = tmp_path / "ref" / "run", tmp_path / "pre" / "run"
    NotebookJob(cli.run_job, _training_job(tmp_path, ref_dir), tmp_path / "ref", "p")()

    job = _training_job(tmp_path, run_dir)
    log = []
    runner = SubmititRunner("local-submitit", cli.run_job, tmp_path / "pre", "p", {}, detach=True, log=log.append)
    assert runner.run("teacher", [job]) is False  # submitted, still running: detached
    record = json.loads((tmp_path / "pre" / "p" / "slurm" / "teacher.json").read_text())
    assert any(f"teacher: submitted as job {record['job_id']}; log {record['stdout']}" in ln for ln in log)
    deadline = time.time() + 240
    while time.time() < deadline and not ((run_dir / "log.csv").is_file() and len(_log_rows(run_dir)) >= 50):
        time.sleep(0.05)
    tasks = _children(int(record["job_id"]))  # the controller's task: python -m submitit.core._submit
    assert len(tasks) == 1, "the job's task process was not found"
    os.kill(tasks[0], signal.SIGUSR2)  # what SLURM sends before a preemption or the time limit (--signal=USR2@90)
    deadline = time.time() + 60
    while time.time() < deadline and _children(int(record["job_id"])) == tasks:  # until the task has exited
        time.sleep(0.05)
    resumed_from = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["step"]
    rows_before = [r for r in _log_rows(run_dir) if int(r["step"]) <= resumed_from]
    assert 20 <= resumed_from < 400, "the job was not stopped mid-training"

    attach = SubmititRunner("local-submitit", cli.run_job, tmp_path / "pre", "p", {}, log=log.append)
    assert attach.run("teacher", [job]) is True  # re-attached to the requeued job, waited for it
    assert any(f"teacher: job {record['job_id']} running" in ln for ln in log)  # the second call's report
    assert any(f"teacher: job {record['job_id']} finished" in ln for ln in log)
    logs = open(record["stdout"]).read() + open(record["stderr"]).read()
    assert "this job is preempted" in logs and "Requeued job" in logs, logs[-3000:]
    assert logs.count("teacher: running train.ipynb") == 2 and logs.count("teacher: done in") == 1
    assert torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["step"] == 400
    for name in ("best.pt", "last.pt"):
        ref, got = _weights(ref_dir / name), _weights(run_dir / name)
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), name
    rows = _log_rows(run_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, 401))
    assert rows[:len(rows_before)] == rows_before  # time_s included: rows written before the preemption
    assert state.job_state(job, tmp_path / "pre", "p")[0]  # the job wrote its marker, as a local run does


def test_failed_job_is_reported_with_its_log_and_submitted_again(tmp_path):
    nb = tmp_path / "fail.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                       new_code_cell("raise ValueError('broken on purpose')")]), str(nb))
    job = common.Job("explorer", "explorer", {}, notebook=nb, limits={"cell_timeout_s": 120, "job_timeout_s": 300})
    runner = SubmititRunner("local-submitit", cli.run_job, tmp_path, "p", {}, log=lambda *_: None)
    with pytest.raises(common.PipelineError) as err:
        runner.run("explorer", [job])
    msg = str(err.value)
    assert "explorer (job " in msg and "ValueError: broken on purpose" in msg and "log: " in msg and "errors: " in msg
    assert not (tmp_path / "p" / "slurm" / "explorer.json").exists()  # retired: the next call submits it again
    assert len(list((tmp_path / "p" / "slurm" / "history").glob("explorer-*.json"))) == 1


def test_smoke_profile_through_submitit_gives_the_local_runs_csv(smoke_run, tmp_path):
    """``--executor local-submitit`` (every notebook run a submitit job) against the local smoke run of the test
    run (``-j 2`` both): the rows of the configurations both ran are equal, every metric value exactly."""
    local_runs, _, _ = smoke_run
    cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "-j", "2", "--runs-dir",
           str(tmp_path), "--executor", "local-submitit", "--set", 'distill.configs=["student","spatial"]']
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert "submitted as job" in out.stdout and "pipeline finished" in out.stdout
    records = sorted(p.stem for p in (tmp_path / "smoke" / "slurm").glob("*.json"))
    assert records == sorted(["data", "teacher", "kd-student-seed0", "kd-spatial-seed0", "results", "explorer"])

    def rows(path):
        return {(r["config"], r["seed"]): r for r in csv.DictReader(io.StringIO(path.read_text()))}

    ours = rows(tmp_path / "smoke" / "figures" / "runs.csv")
    theirs = rows(local_runs / "smoke" / "figures" / "runs.csv")
    assert {c for c, _ in ours} == {"teacher", "student", "spatial"}
    for key, row in ours.items():
        assert row == theirs[key], key
