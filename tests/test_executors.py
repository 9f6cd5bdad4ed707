"""Where the pipeline's jobs run: the executor options checked before anything runs, one GPU per parallel student
run on a multi-GPU machine (a fake GPU list stands in for the GPUs, so no GPU is needed), the job's device in its
kernel's environment, and the sbatch script submitit writes for the SLURM executor, made without a cluster."""

from __future__ import annotations

import json
import threading
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from matting_lib.pipeline import cli, common, executors, plan, profiles, state


# ----------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("text,minutes", [("90", 90), ("30:30", 31), ("72:00:00", 4320), ("3-00:00:00", 4320),
                                          ("1-12", 2160), ("0-00:45", 45), ("2:00:01", 121)])
def test_slurm_time_syntax(text, minutes):
    assert executors.slurm_minutes(text) == minutes


BAD_OPTIONS = [
    (["--slurm-partition", "gpu"], "--slurm-partition applies to --executor slurm only"),
    (["--executor", "local-submitit", "--slurm-gpus", "2"], "--slurm-gpus applies to --executor slurm only"),
    (["--detach"], "--detach needs a submitit executor"),
    (["--executor", "slurm", "--slurm-time", "3 days"], "--slurm-time '3 days': expected SLURM's time syntax"),
    (["--executor", "slurm", "--slurm-time", "0"], "the limit must be at least one minute"),
    (["--executor", "slurm", "--slurm-gpus", "-1"], "--slurm-gpus must be 0 or more"),
    (["--executor", "slurm", "--slurm-cpus", "0"], "--slurm-cpus must be at least 1"),
    (["--executor", "slurm", "--slurm-mem", "64 GB"], "--slurm-mem '64 GB': expected sbatch's --mem syntax"),
    (["--executor", "slurm", "--slurm-partition", "gpu;rm"], "--slurm-partition 'gpu;rm': expected a SLURM name"),
    (["--print-sbatch"], "--print-sbatch needs --executor slurm"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_bad_executor_options_stop_before_anything_runs(tmp_path, capsys, args, message):
    rc = cli.main(["--profile", "smoke", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "run_all.sh: error:" in err, err
    assert not any(tmp_path.iterdir())


def test_help_describes_the_executor_options():
    text = cli.build_parser().format_help()
    for option in ("--executor {local,slurm,local-submitit}", "--detach", "--print-sbatch", "--slurm-partition",
                   "--slurm-gpus", "--slurm-time", "--slurm-cpus", "--slurm-mem", "--slurm-account", "--slurm-qos"):
        assert option in text, option
    assert "docs/cluster.md" in text


# ----------------------------------------------------------------------------------------------- local GPUs
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert executors.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors.visible_gpus() == []


def _students(n):
    return [common.Job("distill", f"kd-s{i}-seed0", {}) for i in range(n)]


def test_parallel_student_runs_get_one_gpu_each_round_robin(monkeypatch, tmp_path):
    """A fake 4-GPU machine (``visible_gpus`` replaced: no GPU needed), -j 4, ten student runs of uneven
    length: the first four start on GPUs 0-3, and no two runs that overlap in time share a GPU."""
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1", "2", "3"])
    lock, running, seen, log = threading.Lock(), {}, [], []

    def fake_run_job(job, runs_root, profile, *, env=None):
        device = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert device not in running.values(), f"{job.key} on GPU {device} while {running} run"
            running[job.key] = device
            seen.append((job.key, device))
        time.sleep(0.05 + 0.03 * (int(job.key[4]) % 3))
        with lock:
            del running[job.key]
        return 0.0

    runner = executors.LocalRunner(fake_run_job, tmp_path, "p", parallel=4, log=log.append)
    assert runner.run("distill", _students(10)) is True
    assert [d for _, d in seen[:4]] == ["0", "1", "2", "3"] and len(seen) == 10
    assert "10 student runs, 4 at a time on 4 GPU(s) (0, 1, 2, 3)" in log[0]
    assert sorted(ln for ln in log[1:]) == sorted(f"[p] {k}: on GPU {d} (CUDA_VISIBLE_DEVICES={d})" for k, d in seen)


def test_more_parallel_runs_than_gpus_share_them_evenly(monkeypatch, tmp_path):
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1"])
    seen = []
    runner = executors.LocalRunner(lambda job, *a, env=None: seen.append(env["CUDA_VISIBLE_DEVICES"]) or 0.0,
                                   tmp_path, "p", parallel=4, log=lambda *_: None)
    runner.run("distill", _students(4))
    assert sorted(seen) == ["0", "0", "1", "1"]


def test_without_gpus_or_parallel_runs_no_device_is_set(monkeypatch, tmp_path):
    calls = []
    fake = lambda job, *a, **kw: calls.append(kw) or 0.0  # noqa: E731
    monkeypatch.setattr(executors, "visible_gpus", lambda: [])
    executors.LocalRunner(fake, tmp_path, "p", parallel=2, log=lambda *_: None).run("distill", _students(2))
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1"])
    executors.LocalRunner(fake, tmp_path, "p", parallel=1).run("distill", _students(2))
    executors.LocalRunner(fake, tmp_path, "p", parallel=2).run("teacher", _students(1))
    assert calls == [{}] * 5


def test_the_job_device_reaches_the_notebook_kernel(tmp_path):
    nb = tmp_path / "env.ipynb"
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
             new_code_cell("import os\nprint('device', os.environ['CUDA_VISIBLE_DEVICES'])")]
    nbformat.write(new_notebook(cells=cells), str(nb))
    job = common.Job("explorer", "env", {}, notebook=nb, limits={"cell_timeout_s": 120, "job_timeout_s": 300})
    cli.run_job(job, tmp_path, "p", log=lambda *_: None, env={"CUDA_VISIBLE_DEVICES": "3"})
    out = json.loads(state.executed_path(tmp_path, "p", job).read_text())
    assert "device 3" in "".join(out["cells"][1]["outputs"][0]["text"])


# ----------------------------------------------------------------------------------------------- SLURM script
def test_sbatch_script_carries_the_slurm_options(tmp_path):
    """The paper profile's jobs with the documented command line, through submitit's own parameter validation
    (``SlurmExecutor.update_parameters``) and its sbatch writer; no cluster is needed."""
    from matting_lib.pipeline import slurm

    jobs = plan.plan_jobs("paper", profiles.load_profile("paper"), runs_root=tmp_path)
    opts = {"partition": "gpu", "gpus": 1, "time": "72:00:00", "cpus": 10, "mem": "64G", "account": "proj",
            "qos": "normal"}
    by_key = {j.key: j for j in jobs}
    script = slurm.sbatch_script(tmp_path / "logs" / "%j", slurm.slurm_parameters(opts, by_key["teacher"], "paper"))
    lines = set(script.splitlines())
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=4320",
                 "#SBATCH --cpus-per-task=10", "#SBATCH --mem=64G", "#SBATCH --account=proj", "#SBATCH --qos=normal",
                 "#SBATCH --signal=USR2@90", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "#SBATCH --job-name=paper-teacher", "#SBATCH --ntasks-per-node=1", "#SBATCH --nodes=1"):
        assert line in lines, (line, script)
    assert f"#SBATCH --output={tmp_path}/logs/%j/%j_0_log.out" in lines
    assert any(ln.startswith("srun ") and "-m submitit.core._submit" in ln for ln in lines)
    data = slurm.sbatch_script(tmp_path, slurm.slurm_parameters(opts, by_key["data"], "paper"))
    assert "--gpus-per-node" not in data  # compositing needs no GPU
    ddp = plan.plan_jobs("paper", profiles.apply_overrides(profiles.load_profile("paper"),
                                                           ["teacher.ddp_processes=4"]), runs_root=tmp_path)[1]
    assert slurm.slurm_parameters(opts, ddp, "paper")["gpus_per_node"] == 4
    # requeues at the time limit: enough for the job's own limit (paper teacher: 6 days) in 72 h pieces
    assert slurm.max_requeues(by_key["teacher"], 4320) == 3 and slurm.max_requeues(by_key["teacher"], 600) == 16
    with pytest.raises(ValueError, match="Unavailable parameter"):  # submitit's validation is the one applied
        slurm.sbatch_script(tmp_path, {"partiton": "gpu"})


def test_print_sbatch_shows_every_job_and_submits_nothing(tmp_path, capsys):
    rc = cli.main(["--profile", "smoke", "--runs-dir", str(tmp_path), "--executor", "slurm", "--print-sbatch",
                   "--slurm-partition", "gpu", "--slurm-time", "2:00:00", "--only", "distill"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("#!/bin/bash") == 10 and out.count("#SBATCH --partition=gpu") == 10
    assert "#SBATCH --job-name=smoke-kd-spatial+channel-seed0" in out and "#SBATCH --time=120" in out
    assert not (tmp_path / "smoke" / "slurm").exists()
