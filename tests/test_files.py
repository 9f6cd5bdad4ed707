"""Atomic writes: the final file's mode, leftovers of killed writers, interrupted writes, a full disk."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from matting_lib import files
from matting_lib.inference.evaluation import write_gray
from matting_lib.networks.checkpoints import save_checkpoint
from matting_lib.networks.models import build_student


@pytest.fixture
def umask():
    """Set the process umask for one test; restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_outputs_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as fh:  # the reference: what open() makes
        fh.write("x")
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~mask
    outputs = [
        files.atomic_write_text(tmp_path / "table.csv", "a,b\n"),
        files.atomic_write_bytes(tmp_path / "blob.bin", b"\0"),
        save_checkpoint(tmp_path / "last.pt", model=build_student(0.125), config={}, epoch=0, step=0, metrics={}),
        write_gray(tmp_path / "alpha.png", np.zeros((4, 4), np.uint8)),
    ]
    for path in outputs:
        assert stat.S_IMODE(path.stat().st_mode) == want, path.name


def test_a_killed_writer_s_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    code = ("import os, sys; from matting_lib.files import atomic_write\n"
            "def half(tmp):\n    tmp.write_bytes(b'half a checkpoint'); os.kill(os.getpid(), 9)\n"
            "atomic_write(sys.argv[1], half)")
    killed = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60, env={**os.environ,
                            "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 1 and left[0].startswith(".last.pt.") and left[0].endswith(".tmp.pt"), left
    files.atomic_write_bytes(target, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"] and target.read_bytes() == b"whole"


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID now names no process (PIDs are not reused this fast)
    names = {
        f".m.csv.{dead.pid}-0123abcd.tmp.csv": False,           # killed writer of m.csv: removed
        f".m.csv.{os.getpid()}-0123abcd.tmp.csv": True,         # this process (another thread may be writing)
        ".m.csv.k2x_9abc.tmp.csv": False,                       # an old mkstemp name, hours old: removed
        ".m.csv.q7y_1def.tmp.csv": True,                        # an old mkstemp name, recent: maybe in progress
        f".m.csv.mean.json.{dead.pid}-0123abcd.tmp.json": True,  # another target's temporary
        "m.csv.bak": True,
    }
    for name in names:
        (tmp_path / name).write_text("x")
    old = time.time() - 3 * 3600
    os.utime(tmp_path / ".m.csv.k2x_9abc.tmp.csv", (old, old))
    files.atomic_write_text(tmp_path / "m.csv", "a\n")
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {n for n, keep in names.items() if keep} | {"m.csv"}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, ValueError])
def test_an_interrupted_write_leaves_no_temporary_and_the_old_file(tmp_path, interrupt):
    target = files.atomic_write_text(tmp_path / "table.md", "old\n")

    def stop(tmp):
        tmp.write_text("half")
        raise interrupt

    with pytest.raises(interrupt):
        files.atomic_write(target, stop)
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"] and target.read_text() == "old\n"


def test_no_space_left_is_reported_as_a_full_disk_naming_the_file(tmp_path):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.DiskFullError, match=r"the disk is full: could not write .*summary.md"):
        files.atomic_write(tmp_path / "summary.md", full)
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path, monkeypatch, read_only_dir):
    assert files.check_writable(tmp_path / "new" / "deeper" / "x.csv") == tmp_path / "new" / "deeper" / "x.csv"
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        files.check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        files.check_writable(tmp_path / "file" / "x.csv")
    ro = read_only_dir
    with pytest.raises(PermissionError, match="ro is read-only"):
        files.check_writable(ro / "x.csv")
