"""Files written safely: atomic writes (a crash leaves the previous file intact), a full disk named, outputs checked
writable before any work, content hashes. Standard library only, so the pipeline can use it before the heavy
dependencies are installed."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's live process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DiskFullError(OSError):
    """Writing a file failed because its disk is full; the message names the file. The previous file is intact."""


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full_error(path: str | os.PathLike, cause: BaseException) -> DiskFullError:
    """The :class:`DiskFullError` for ``path`` when ``cause`` (ENOSPC, torch's "unexpected pos") ended its write."""
    path = Path(path)
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on {path.parent}"
    except OSError:
        free = f"free space on {path.parent} unknown"
    detail = (str(cause).strip().splitlines() or [""])[0][:160]
    return DiskFullError(errno.ENOSPC, f"the disk is full: could not write {path} ({free}; {type(cause).__name__}: "
                                       f"{detail}). Free some space and run again; the previous {path.name}, if "
                                       f"any, is intact")


# Temporary files are named ``.{name}.{pid}-{8 hex}.tmp{suffix}`` so that a later write of the same target can
# tell the leftovers of a killed process (kill -9, power loss) from a write in progress in a live one. Older
# versions used ``tempfile.mkstemp`` names, ``.{name}.{8 of [a-z0-9_]}.tmp{suffix}``, without a PID.
_OLD_TMP_AGE_S = 3600.0  # an mkstemp-named temporary this old is no write in progress


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls of ``path`` left beside it.

    A temporary file is stale when the process that made it is gone (its PID is in the name); those of live
    processes, this one included (another thread may be writing), are kept, and so are the temporaries of
    other targets. Temporaries of older versions (``tempfile.mkstemp`` names, no PID) are stale after an
    hour. Returns the deleted paths.
    """
    path = Path(path)
    ext = re.escape(path.suffix)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        rest = tmp.name[len(path.name) + 2:]  # after ".{name}."
        new = re.fullmatch(rf"(\d+)-[0-9a-f]{{8}}\.tmp{ext}", rest)
        if new:
            if int(new[1]) == os.getpid() or pid_alive(int(new[1])):
                continue
        elif re.fullmatch(rf"[a-z0-9_]{{8}}\.tmp{ext}", rest):
            try:
                if time.time() - tmp.stat().st_mtime < _OLD_TMP_AGE_S:
                    continue
            except FileNotFoundError:
                continue
        else:  # another target's temporary (e.g. "a.csv.mean.json" for "a.csv") or not ours at all
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:  # removed meanwhile by its writer or another cleaner
            pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename over ``path``.

    A crash mid-write leaves the previous file (if any) intact and no half-written file under
    ``path``. The temporary file lives in the same folder so the rename is atomic on POSIX; it is created
    with mode ``0o666`` less the umask, as ``open()`` would (``tempfile.mkstemp`` would give 0600), and is
    removed on any exception, KeyboardInterrupt included. Temporaries a killed process left for the same
    ``path`` are removed first (:func:`remove_stale_temporaries`). A full disk raises :class:`DiskFullError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_path = None
    try:
        while tmp_path is None:
            candidate = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}"
            try:  # O_EXCL: never reuse another writer's file; mode 0o666 & ~umask, like open()
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            tmp_path = candidate
            os.close(fd)
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in _DISK_FULL and not isinstance(err, DiskFullError):
            raise disk_full_error(path, err) from err
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
    return path


def read_only_reason(folder: str | os.PathLike) -> str:
    """Why ``folder`` cannot be written, for messages: a read-only file system, or this user's permissions."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except OSError:
        pass
    return "is read-only for this user"


def check_writable(path: str | os.PathLike, *, what: str = "output", example: str = "out.png") -> Path:
    """Refuse, before any work is done, an output file that could not be written; returns ``Path(path)``.

    Raises ``IsADirectoryError`` when ``path`` is a folder (``example`` shows a file name to give instead),
    ``NotADirectoryError`` when a component of its folder is a file, and ``PermissionError`` when the folder
    that would receive it (or its nearest existing ancestor, :func:`atomic_write` creates the rest) is not
    writable. Messages name the path.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name, e.g. {path / example}")
    writable_ancestor(path.parent, f"{what} {path} cannot be written", choose="path")
    return path


def writable_ancestor(path: str | os.PathLike, failure: str, *, choose: str = "folder") -> Path:
    """The nearest existing folder at or above ``path`` (where a write would create what is missing), checked to
    be a folder this process may write; otherwise ``NotADirectoryError`` / ``PermissionError`` starting with
    ``failure`` (e.g. ``"output x.csv cannot be written"``) and ending with what to do."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{failure}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{failure}: the folder {folder} {read_only_reason(folder)}; choose another {choose} "
                              f"or fix its permissions")
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_write`)."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path`` (see :func:`atomic_write`)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (dataset manifests, checkpoint provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
