"""Small shared helpers: seeding, atomic file writes, frozen parameter sets.

Everything here is used by several modules; nothing here knows about matting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp_path)`` then rename over ``path``.

    A crash mid-write leaves the previous file (if any) intact and no half-written file under
    ``path``. The temporary file lives in the same folder so the rename is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


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
