"""One pipeline per run folder: an exclusive ``fcntl.flock`` on ``<run folder>/pipeline.lock``.

The operating system releases a ``flock`` when its holder exits in any way (``kill -9`` included), so a lock
left behind by a dead pipeline is simply taken over; the file also records the holder's PID, start time and
command, so a refused second pipeline can say which one is running, and a takeover can say whose lock it was::

    with RunLock(runs_root / profile):      # raises RunLockedError naming the running pipeline
        ...

The lock file is never deleted (deleting it would let two processes lock two different files). Standard
library only; POSIX (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from matting_lib.files import pid_alive
from matting_lib.pipeline.common import PipelineError


class RunLockedError(PipelineError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Exclusive lock of a run folder for the lifetime of a ``with`` block (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, *, log=print):
        self.folder = Path(folder)
        self.path = self.folder / "pipeline.lock"
        self.log = log
        self._fd: int | None = None

    def holder(self) -> dict:
        """What the lock file says about its last holder ({} if nothing readable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a read-only runs folder (EROFS, EACCES), a file where the folder should be
            raise PipelineError(f"cannot lock {self.folder}: {err.strerror} ({err.filename or self.path}); the "
                                f"runs folder must be a writable folder: give another --runs-dir or fix its "
                                f"permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.holder()
            pid = info.get("pid")
            who = (f"PID {pid}, started {info.get('started', '?')}: {info.get('command', '?')}" if pid
                   else "a process that has not written its PID yet")
            note = (
                ""
                if not pid or pid_alive(int(pid))
                else (" (that PID is gone, but a process that inherited the lock still holds it)")
            )
            raise RunLockedError(f"{self.folder} is in use by another pipeline ({who}){note}. Wait for it to "
                                 f"finish, stop it, or use another --runs-dir.") from None
        previous = self.holder()
        if previous.get("pid") and previous.get("pid") != os.getpid() and not previous.get("released"):
            self.log(f"[lock] took over the stale lock of PID {previous['pid']} (started {previous.get('started')}, "
                     f"no longer running) on {self.folder}")
        record = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        info = self.holder()
        info["released"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")  # a clean exit: the next holder takes no "stale" lock
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
