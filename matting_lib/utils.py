"""Small shared helpers: seeding, atomic file writes, frozen parameter sets.

Everything here is used by several modules; nothing here knows about matting.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import os
import random
import re
import secrets
import shutil
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .pipeline.common import REPO, pid_alive


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and CUDA).

    Library code never draws from these global generators (it takes an explicit
    ``numpy.random.Generator``); seeding them only protects third-party code. DataLoader workers are
    seeded through :func:`worker_init_fn`.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import torch

    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive each worker's Python/NumPy seeds from torch's per-worker seed."""
    import torch

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


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


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        if origin is list and args:
            return all(_type_ok(v, args[0]) for v in value)
        return True
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is type(None):
        return value is None
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def params_from_dict(cls: type, values: Mapping[str, Any], *, where: str = "parameters") -> Any:
    """Build the frozen dataclass ``cls`` from ``values``, refusing unknown names and mistyped values.

    Used to turn a notebook's ``parameters`` cell (or a profile file) into one validated object::

        cfg = params_from_dict(TrainParams, {"lr": 0.01, "steps": 100})

    Raises ``ValueError`` naming the offending key, its value and the accepted names/types. Floats
    given as ints are converted; lists given for tuple fields are converted to tuples.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where}: {', '.join(unknown)}; valid names are: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in values.items():
        ann = hints[name]
        if not _type_ok(value, ann):
            raise ValueError(f"{where}: {name}={value!r} has the wrong type; expected {ann}")
        if ann is float and isinstance(value, int):
            value = float(value)
        if typing.get_origin(ann) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def check_counts(obj: Any, *, at_least_1: tuple[str, ...] = (), at_least_0: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first attribute of ``obj`` in ``at_least_1`` below 1 or in ``at_least_0``
    below 0 (the step, size and count fields of the notebooks' parameter dataclasses)."""
    for names, low in ((at_least_1, 1), (at_least_0, 0)):
        for name in names:
            if getattr(obj, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(obj, name)}")


def params_from_globals(cls: type, namespace: Mapping[str, Any]) -> Any:
    """:func:`params_from_dict` of ``cls`` with the values of its fields found in ``namespace`` (a notebook's
    ``globals()`` after its ``parameters`` cell); a field the notebook does not define is an error, so a
    parameters cell and its dataclass cannot drift apart silently."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ValueError(f"{cls.__name__}: the notebook defines no {', '.join(missing)}; its parameters cell must "
                         f"declare every field of {cls.__name__}")
    params = params_from_dict(cls, {n: namespace[n] for n in names}, where=f"{cls.__name__} parameters")
    _check_profile_given_alone(params)
    return params


def _check_profile_given_alone(params: Any) -> None:
    """A notebook run with ``-p profile smoke`` and nothing else would train and write with the default profile's
    settings into the default profile's folders under another name: refuse it, naming what to do. (The pipeline
    passes every path under ``<runs-dir>/<profile>``, so its runs never meet this.)"""
    profile = getattr(params, "profile", "default")
    if profile == "default":
        return
    stale = [f.name for f in dataclasses.fields(params) if isinstance(f.default, str) and "default" in f.default.split("/")
             and getattr(params, f.name) == f.default and f.name != "profile"]
    if stale:
        raise ValueError(f"profile={profile!r} was given, but {', '.join(stale)} still point(s) to the default "
                         f"profile's folders ({getattr(params, stale[0])!r}) and the other parameters are the default "
                         f"profile's values: a notebook does not load a profile by itself. Run it through the "
                         f"pipeline, which passes the profile's values (./run_all.sh --profile {profile} --only "
                         f"<stage>), or pass the values and folders with -p as well")




def repo_path(path: str | os.PathLike) -> Path:
    """``path`` as the notebooks mean it: absolute as given, else relative to the repository (where papermill
    runs them), whatever the current folder of an interactive kernel."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def parse_decay_steps(text: str) -> tuple[int, ...]:
    """``"1500,1800"`` → ``(1500, 1800)``: notebooks 02/03's ``lr_decay`` parameter as
    :attr:`matting_lib.training.TrainConfig.lr_decay_steps` (a string, since it is part of stored run identities)."""
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise ValueError(f"lr_decay={text!r}: give comma-separated optimiser steps, e.g. 1500,1800") from None


# ------------------------------------------------------------------------------------------ registries
class UnknownNameError(KeyError, ValueError):
    """A registry lookup failed; the message lists the valid names (printed without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or :class:`UnknownNameError` naming ``what`` and listing the valid names."""
    if name not in registry:
        raise UnknownNameError(f"unknown {what} {name!r}; valid names: {', '.join(registry)}")
    return registry[name]
