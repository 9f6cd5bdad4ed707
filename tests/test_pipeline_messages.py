"""What the pipeline tells its user: ``--help`` states each default once, a passing run shows no
kernel ``KeyboardInterrupt``, and the wall time reported counts from ``run_all.sh``'s start (test_pipeline.py)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

from conftest import REPO

from matting_lib.pipeline import cli


def test_help_states_each_default_once_and_never_none():
    text = cli.build_parser().format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    options = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    assert options and all(opt.count("default:") <= 1 for opt in options), [o for o in options
                                                                            if o.count("default:") > 1]
    assert "the profile's)" in " ".join(text.split())  # the defaults that are said in words are still there
    shell = subprocess.run([str(REPO / "run_all.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0 and "(default: None)" not in shell.stdout and "--profile" in shell.stdout


# A process in the kernel's process group that records a SIGINT: jupyter_client's shutdown_kernel interrupts the
# whole group before asking the kernel to stop, and a kernel busy with a message then logs
# "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." into a passing run.
_CHILD = """
import os, pathlib, signal, sys, time
flag, ready = sys.argv[1:3]
signal.signal(signal.SIGINT, lambda *a: pathlib.Path(flag).write_text("SIGINT"))
pathlib.Path(ready).write_text(str(os.getpid()))
time.sleep(60)
"""


def test_pipeline_kernels_are_shut_down_without_sigint(tmp_path):
    from matting_lib.pipeline.execute import kernel_manager_for

    flag, ready = tmp_path / "sigint", tmp_path / "ready"

    async def run() -> None:
        km = kernel_manager_for(None)(kernel_name="python3")
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive(f"import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', "
                                     f"{_CHILD!r}, {str(flag)!r}, {str(ready)!r}])", timeout=60)
        for _ in range(600):
            if ready.exists() and ready.read_text():
                break
            await asyncio.sleep(0.05)
        kc.stop_channels()
        await km.shutdown_kernel()

    asyncio.run(run())
    pid = int(ready.read_text())
    try:
        time.sleep(0.5)
        assert not flag.exists(), "the kernel's process group got a SIGINT at shutdown"
    finally:
        os.kill(pid, signal.SIGKILL)  # the child this test started


def test_progress_counts_runs_and_estimates_the_time_left_by_stage():
    from matting_lib.pipeline.common import Job
    from matting_lib.pipeline.progress import Progress

    now = [1000.0]
    jobs = [Job("teacher", "teacher", {})] + [Job("distill", f"kd-s{i}", {}) for i in range(4)] + \
           [Job("results", "results", {})]
    lines = []
    prog = Progress(jobs, parallel=2, profile="p", start=1000.0, log=lines.append, clock=lambda: now[0])
    assert prog.estimate_left() is None  # nothing finished: no estimate yet
    now[0] = 1030.0
    prog.finished(jobs[0], 30.0)
    # 4 students and the results at the teacher's 30 s each (no stage mean yet), students 2 at a time
    assert lines[-1] == "[p] [1/6] teacher finished in 30 s; 30 s elapsed, about 90 s left"
    now[0] = 1150.0
    tracked = prog.wrap(lambda job, *a, **k: 120.0)
    assert tracked(jobs[1], "runs", "p") == 120.0
    assert (
        lines[-1] == "[p] [2/6] kd-s0 finished in 2 min; 2 min elapsed, about 4 min left"
    )  # 3×120/2 s + the results at the 75 s mean
    for j in jobs[2:]:
        prog.finished(j, 60.0)
    assert lines[-1].startswith("[p] [6/6] results finished in 60 s;") and "left" not in lines[-1]


def test_progress_estimates_each_configuration_by_its_own_runs():
    """The no-KD student of a seed composes the batches its seed's distilled runs read: its duration must not be
    taken for theirs once a distilled run has finished."""
    from matting_lib.pipeline.common import Job
    from matting_lib.pipeline.progress import Progress

    jobs = [Job("distill", f"kd-{c}-seed{s}", {"config": c}) for s in range(2) for c in ("student", "at", "ofd")]
    prog = Progress(jobs, parallel=1, log=lambda _: None, clock=lambda: 0.0, start=0.0)
    prog.finished(jobs[0], 300.0)  # student seed 0: every other run estimated at 300 s
    assert prog.estimate_left() == 5 * 300.0
    prog.finished(jobs[1], 100.0)  # at seed 0: ofd (unseen) takes the median of the stage's means (200 s)
    assert prog.estimate_left() == 300.0 + 100.0 + 2 * 200.0
    prog.finished(jobs[2], 50.0)
    assert prog.estimate_left() == 300.0 + 100.0 + 50.0
