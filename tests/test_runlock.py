"""One pipeline per run folder: a second process is refused naming the first; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from matting_lib.pipeline import cli
from matting_lib.pipeline.runlock import RunLock, RunLockedError

HOLDER = textwrap.dedent("""
    import sys, time
    from matting_lib.pipeline.runlock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def _hold(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = _hold(tmp_path)
    try:
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path).acquire()
        msg = str(err.value)
        assert f"PID {holder.pid}, started " in msg and "is in use by another pipeline" in msg
        assert "another --runs-dir" in msg
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing: the OS drops the flock, the file stays
        holder.wait()
    messages = []
    with RunLock(tmp_path, log=messages.append):
        assert len(messages) == 1 and messages[0].startswith(f"[lock] took over the stale lock of PID {holder.pid} ")
        assert messages[0].endswith(f"no longer running) on {tmp_path}")
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):  # a second lock in this process, too
            RunLock(tmp_path).acquire()
    messages.clear()
    with RunLock(tmp_path, log=messages.append):  # released cleanly before: nothing stale
        pass
    assert messages == []


def test_pipeline_refuses_a_runs_folder_in_use(tmp_path, capsys):
    holder = _hold(tmp_path / "smoke")
    try:
        rc = cli.main(["--profile", "smoke", "--runs-dir", str(tmp_path), "--only", "results"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'smoke'} is in use by another pipeline (PID {holder.pid}" in err
    assert not (tmp_path / "smoke" / "notebooks").exists()
