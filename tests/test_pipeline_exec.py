"""One notebook execution under the pipeline's limits: a stuck cell, a job over its wall-clock limit, and the
Output-widget traffic that used to leave papermill waiting forever for a reply that had already arrived."""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from matting_lib.pipeline import cli, common, execute, state


def _notebook(path, *sources):
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                             *(new_code_cell(s) for s in sources)])
    nbformat.write(nb, str(path))
    return path


def _job(tmp_path, notebook, **limits):
    return common.Job("explorer", "stuck", {}, notebook=notebook,
                        limits={"cell_timeout_s": 600, "job_timeout_s": 600, **limits})


def test_stuck_cell_fails_within_the_cell_timeout(tmp_path):
    nb = _notebook(tmp_path / "stuck.ipynb", "import time\nprint('started')", "time.sleep(600)  # a stuck kernel")
    job = _job(tmp_path, nb, cell_timeout_s=3)
    t0 = time.time()
    with pytest.raises(common.PipelineError) as err:
        cli.run_job(job, tmp_path, "p", log=lambda *_: None)
    assert time.time() - t0 < 60
    msg = str(err.value)
    assert "stuck.ipynb (job 'stuck') stopped at cell" in msg and "`time.sleep(600)  # a stuck kernel`" in msg
    assert "explorer.cell_timeout_s = 3 s" in msg and "--set explorer.cell_timeout_s=" in msg
    out = state.executed_path(tmp_path, "p", job)
    assert f"executed copy: {out}" in msg and "resume" in msg
    assert "started" in out.read_text()  # the executed copy shows how far it got
    assert not state.marker_path(tmp_path, "p", "stuck").exists()  # so a rerun executes it again


@pytest.mark.slow
def test_job_over_its_wall_clock_limit_is_stopped(tmp_path):
    nb = _notebook(tmp_path / "slow.ipynb", "import os, time\nprint(os.getpid(), flush=True)",
                   "time.sleep(600)")
    job = _job(tmp_path, nb, job_timeout_s=8)
    t0 = time.time()
    with pytest.raises(common.PipelineError) as err:
        cli.run_job(job, tmp_path, "p", log=lambda *_: None)
    assert time.time() - t0 < 60
    msg = str(err.value)
    assert "ran longer than explorer.job_timeout_s = 8 s" in msg and "at cell 2 (`time.sleep(600)`)" in msg
    assert "--set explorer.job_timeout_s=" in msg
    out = json.loads(state.executed_path(tmp_path, "p", job).read_text())
    pid = int("".join(out["cells"][1]["outputs"][0]["text"]).split()[0])
    deadline = time.time() + 10
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "the kernel was left running"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_output_widget_traffic_does_not_lose_the_reply(tmp_path):
    """nbclient sends each Output-widget update back to the kernel on the shell socket while it awaits that
    socket for the cell's reply; without re-arming, the reply's wake-up was lost (the cell then 'finished' only at
    its timeout, or never without one): most runs of this test did before the fix."""
    nb = _notebook(tmp_path / "widget.ipynb", "\n".join([
        "import os, ipywidgets as W",
        "from IPython.display import display, Image",
        "out = W.Output()",
        "display(out)",
        "blob = os.urandom(2 * 1024 * 1024)",
        "for i in range(5):",
        "    out.clear_output(wait=True)",
        "    with out:",
        "        display(Image(data=blob, format='png'))"]))
    job = _job(tmp_path, nb, cell_timeout_s=40)
    cli.run_job(job, tmp_path, "p", log=lambda *_: None)
    cells = json.loads(state.executed_path(tmp_path, "p", job).read_text())["cells"]
    assert cells[-1]["metadata"]["papermill"]["duration"] < 15  # not the 40 s timeout


def test_the_kernel_client_rearms_its_sockets():
    client = execute.rearming_client_class()
    manager = execute.kernel_manager_for(None)()
    assert manager.client_factory is client and manager.transport == "ipc"
    traits = client.class_traits()
    assert all(traits[f"{ch}_channel_class"].default_value.__name__ == "RearmingChannel"
               for ch in ("shell", "iopub", "stdin", "control"))
    watch = execute.JobWatch(1.0)
    bound = execute.kernel_manager_for(watch)()
    assert watch.managers == [bound] and isinstance(bound, type(manager))


_INTERRUPTED_RUN = """
import sys
from pathlib import Path
from matting_lib.pipeline import cli, common
nb, runs = Path(sys.argv[1]), Path(sys.argv[2])
job = common.Job("distill", "kd-spatial-seed0", {}, notebook=nb,
                 limits={"cell_timeout_s": 600, "job_timeout_s": 600})
cli.run_pipeline = lambda args: cli.run_job(job, runs, "p", log=lambda *_: None)
sys.exit(cli.main(["--profile", "smoke", "--runs-dir", str(runs)]))
"""


def test_ctrl_c_stops_the_kernel_and_says_how_to_resume(tmp_path):
    """Ctrl-C during a notebook (a training): its kernel, which runs in its own process group, is killed first; the user
    reads one message naming the job and saying that rerunning resumes, exit code 130, no ZMQ or asyncio
    traceback; no marker, so the rerun executes the job again."""
    import signal
    import subprocess
    import sys

    started = tmp_path / "kernel.pid"
    nb = _notebook(tmp_path / "train.ipynb", f"import os, time\nopen({str(started)!r}, 'w').write(str(os.getpid()))",
                   "time.sleep(600)  # a long training")
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_RUN, str(nb), str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not (started.is_file() and started.read_text()):
        time.sleep(0.2)
    time.sleep(0.5)  # the training cell is running
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == ("run_all.sh: interrupted (Ctrl-C) while running kd-spatial-seed0 (train.ipynb); its "
                           "kernel was stopped. Finished notebook runs are kept: rerun the same command to resume "
                           "(finished runs are skipped, an interrupted training continues from its last "
                           "checkpoint)"), err
    pid, deadline = int(started.read_text()), time.time() + 10
    while time.time() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid), "the kernel must not train on"
    assert not state.marker_path(tmp_path / "runs", "p", "kd-spatial-seed0").exists()
