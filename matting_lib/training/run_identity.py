"""What a training run *is*, so that a run folder is resumed only by the same training.

:func:`matting_lib.training.loop.train` resumes any run folder that holds a ``last.pt``. That is right after an
interruption and wrong after the teacher, the data or a training setting changed: a finished run would be
"resumed" (nothing trained) and its ``metrics.json`` would then claim settings its weights were not trained with.
So notebooks 02 (teacher training) and 03 (students) and the calibration runs call :func:`prepare_run_dir` before
training. It compares the run's *identity* (:func:`training_identity`) — the settings marked as identity in
:mod:`matting_lib.settings`, the teacher's weights fingerprint, the dataset's identity and the digests of the code
it executes (:func:`code_groups`) — with the ``run.json`` stored in the folder:

* no folder, or an empty one: create it, store the identity;
* the same identity and readable checkpoints: keep it (the training resumes or is already complete); a larger
  target number of steps continues it (``"target"`` settings, when the learning-rate schedule does not depend on
  the total);
* anything else (another identity, no ``run.json`` beside training files, a checkpoint that does not load): move
  the whole folder aside to ``<run>.stale-<UTC time>`` (never deleted), print why, and start afresh.

Identities are plain JSON dicts (``kind``, ``params``, ``target``, ``teacher``, ``dataset``, ``code``). The teacher is
identified by :func:`weights_fingerprint` (the SHA-256 of its architecture and tensors), not by the checkpoint file's
SHA-256: ``torch.save`` names the archive's inner folder after the temporary file it writes, so the same teacher saved
twice gives two file hashes. The dataset is identified by :func:`dataset_key` (one place to change it).

**Code.** :mod:`matting_lib.provenance` digests the code a training executes, by group: ``training`` (data,
networks, the alpha loss, the loop, the settings and the seeding helpers) for every training, ``distillation`` (the
student's objective) and one group per distillation type it uses (``kd:spatial``: that entry of the ``KD_LOSSES``
registry and the loss code it reaches) for a student (:func:`code_groups`). Syntax trees without docstrings are
hashed, so comments, docstrings and formatting do not count and a documentation edit never retrains; an edit of the
spatial term retrains the runs that distil with it and no other. The same groups key the pipeline's up-to-date check
(each job's, :class:`matting_lib.pipeline.common.Job`); the batch cache is keyed by ``data``, the teacher cache by
``networks``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matting_lib.data.layout import DatasetLayout, dataset_identity
from matting_lib.files import atomic_write_text
from matting_lib.networks.checkpoints import load_checkpoint, weights_fingerprint
from matting_lib.provenance import group_digests, training_groups
from matting_lib.settings import IDENTITY

RUN_FILE = "run.json"
FORMAT = "matting_lib.run/2"
TRAINING_FILES = ("last.pt", "best.pt", "log.csv")
CHECKPOINTS = ("last.pt", "best.pt")  # must load for a folder to be resumed


def identity_values(params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(identity fields, target fields)`` of a settings dataclass, by the fields' ``identity`` marking; fields
    without a marking (a notebook's paths and outputs) are not part of the identity."""
    same, target = {}, {}
    for f in dataclasses.fields(params):
        mark = f.metadata.get(IDENTITY, False)
        if mark == "target":
            target[f.name] = getattr(params, f.name)
        elif mark is True:
            same[f.name] = getattr(params, f.name)
    return same, target


def record(params: Any) -> dict[str, Any]:
    """Every field of a parameters dataclass as plain data (stored in checkpoints, ``metrics.json`` and manifests)."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def dataset_key(data_dir: str | os.PathLike) -> str:
    """What identifies the training data: :func:`matting_lib.data.layout.dataset_identity` (the files' contents for a
    generated dataset, the name lists and file sizes for other data) as ``"<kind>:<sha256>"``."""
    d = dataset_identity(DatasetLayout.for_root(data_dir))
    return f"{d['kind']}:{d['sha256']}"


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))  # tuples -> lists, as they come back from run.json


def training_identity(kind: str, params: Any, *, teacher_checkpoint=None, data_dir=None,
                      **extra: Any) -> dict[str, Any]:
    """The identity of a training: the fields of the settings dataclass ``params`` marked as identity
    (:func:`identity_values`) and its target fields, the teacher's weights fingerprint (None:
    the training uses no teacher), the dataset identity, the digests of the code it executes (:func:`code_groups`)
    and ``extra`` (plain data). The one identity of every training: teacher, students and calibration runs."""
    same, target = identity_values(params)
    return {"format": FORMAT, "kind": kind, "params": _plain(same), "target": _plain(target), **_plain(extra),
            "extendable": bool(getattr(params, "extendable", True)),
            "teacher": weights_fingerprint(teacher_checkpoint) if teacher_checkpoint is not None else None,
            "dataset": dataset_key(data_dir) if data_dir is not None else None,
            "code": group_digests(*code_groups(extra))}


def code_groups(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The :mod:`matting_lib.provenance` groups of the code a training executes: a student's (``extra`` holds its
    ``distill`` configuration) depend on its distillation types, any other on the shared training code only."""
    distill = extra.get("distill")
    return training_groups(None if distill is None else tuple(distill.get("types", ())))


def identity_of(kind: str, settings: Any, *, data_dir, distill: Any = None, teacher_checkpoint=None) -> dict[str, Any]:
    """The identity of a training of ``settings`` (:func:`training_identity`): a student's ``distill`` configuration
    as resolved (a :class:`~matting_lib.distillation.distill.DistillConfig`, name and overrides alike) and its
    teacher only when the configuration uses one (retraining the teacher does not invalidate the no-KD students)."""
    uses_teacher = distill is not None and distill.uses_teacher
    extra = {} if distill is None else {"distill": distill.to_dict()}
    return training_identity(kind, settings, data_dir=data_dir,
                             teacher_checkpoint=teacher_checkpoint if uses_teacher else None, **extra)


def _extended(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``current`` only raises the target of ``stored`` (more steps) of a run that may be continued."""
    a, b = stored.get("target"), current.get("target")
    return (isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b) and a != b
            and all(isinstance(a[k], int) and isinstance(b[k], int) and a[k] <= b[k] for k in a)
            and bool(stored.get("extendable")) and bool(current.get("extendable")))


def _differences(stored: Any, current: Mapping[str, Any]) -> list[str]:
    if not isinstance(stored, dict):
        return ["run.json is unreadable"]
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if key in ("params", "target") and isinstance(a, dict) and isinstance(b, dict):
            if key == "target" and _extended(stored, current):
                continue
            out += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key == "code" and a != b:
            groups = sorted(g for g in set(a) | set(b) if a.get(g) != b.get(g)) \
                if isinstance(a, dict) and isinstance(b, dict) else []
            out.append(f"the code it runs changed ({', '.join(groups) or 'recorded as one digest'}; "
                       f"matting_lib.provenance lists the code of each group)")
        elif a != b:
            out.append(f"{key}: {str(a)[:24]} -> {str(b)[:24]}")
    return out


def _damaged(run_dir: Path) -> list[str]:

    bad = []
    for name in CHECKPOINTS:
        if (run_dir / name).exists():
            try:
                load_checkpoint(run_dir / name)
            except Exception as err:  # truncated, zero bytes, not ours: the folder cannot be resumed
                bad.append(f"{name} does not load ({type(err).__name__})")
    return bad


def move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to ``<run_dir>.stale-<UTC time>`` (a suffix if that exists); returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = run_dir.with_name(f"{run_dir.name}.stale-{stamp}"), 1
    while target.exists():
        target, n = run_dir.with_name(f"{run_dir.name}.stale-{stamp}-{n}"), n + 1
    run_dir.rename(target)
    return target


def prepare_run_dir(run_dir: str | os.PathLike, identity: Mapping[str, Any], *, settings: Any = None,
                    log=print) -> str:
    """Make ``run_dir`` ready for the training ``identity`` (see the module docstring). Returns ``"new"``,
    ``"resume"`` (same identity; the training continues or is complete) or ``"stale"`` (old folder moved aside).
    ``settings`` (a dataclass or dict), when given, is stored beside the identity in ``run.json`` (every field,
    identity or not: what :func:`read_settings` returns)."""
    run_dir = Path(run_dir)
    identity = json.loads(json.dumps(identity))
    record = run_dir / RUN_FILE
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if record.is_file():
            try:
                stored = json.loads(record.read_text(encoding="utf-8")).get("identity")
            except (OSError, ValueError, AttributeError):
                stored = None
            why = _differences(stored, identity) or _damaged(run_dir)
        elif any((run_dir / f).exists() for f in TRAINING_FILES):
            why = [f"no {RUN_FILE}: trained before run identities were recorded, or by something else"]
        else:
            why = []  # only other outputs (figures, predictions): nothing to resume, nothing to keep apart
        if not why:
            if record.is_file():
                if _extended(stored, identity):
                    log(f"{run_dir}: same training as recorded in {RUN_FILE} with a larger target "
                        f"({stored['target']} -> {identity['target']}); continuing it")
                    _write_record(record, identity, settings)
                else:
                    log(f"{run_dir}: same training as recorded in {RUN_FILE}; resuming (or already complete)")
                return "resume"
        else:
            aside = move_aside(run_dir)
            log(f"{run_dir}: not the same training ({'; '.join(why)}); moved the old run to {aside.name} and "
                f"starting afresh")
            run_dir.mkdir(parents=True)
            _write_record(record, identity, settings)
            return "stale"
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_record(record, identity, settings)
    return "new"


def _write_record(path: Path, identity: Mapping[str, Any], settings: Any) -> None:

    data = {"identity": identity, "created": _utc()}
    if settings is not None:
        data["settings"] = _plain(record(settings) if dataclasses.is_dataclass(settings) else dict(settings))
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_settings(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The settings a training stored in ``run_dir/run.json`` (:func:`prepare_run_dir`'s ``settings``)."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["settings"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a started training run; train it first") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: no readable settings ({type(err).__name__}: {err}); the folder was not written "
                         f"by this version's training, or is damaged") from None


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
