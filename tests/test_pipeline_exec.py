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
