"""What a training run *is*, so that a run folder is resumed only by the same training.

:func:`matting_lib.training.train` resumes any run folder that holds a ``last.pt``. That is right after an
interruption and wrong after the teacher, the data or a training setting changed: a finished run would be
"resumed" (nothing trained) and its ``metrics.json`` would then claim settings its weights were not trained with.
So notebooks 02 (teacher training) and 03 (students) call :func:`prepare_run_dir` before training. It compares the
run's *identity* — every training-relevant parameter, the teacher's weights fingerprint, the dataset's identity —
with the ``run.json`` stored in the folder:

* no folder, or an empty one: create it, store the identity;
* the same identity and readable checkpoints: keep it (the training resumes or is already complete);
* anything else (another identity, no ``run.json`` beside training files, a checkpoint that does not load): move
  the whole folder aside to ``<run>.stale-<UTC time>`` (never deleted), print why, and start afresh.

Identities are plain JSON dicts (``kind``, ``params``, ``teacher``, ``dataset``). The teacher is identified by
:func:`weights_fingerprint` (the SHA-256 of its architecture and tensors), not by the checkpoint file's SHA-256:
``torch.save`` names the archive's inner folder after the temporary file it writes, so the same teacher saved
twice gives two file hashes. The dataset is identified by :func:`dataset_identity` (one place to change it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

RUN_FILE = "run.json"
FORMAT = "matting_lib.run/1"
TRAINING_FILES = ("last.pt", "best.pt", "log.csv")
CHECKPOINTS = ("last.pt", "best.pt")  # must load for a folder to be resumed
#: Notebook 03 parameters that do not change what is trained (outputs, paths, evaluation, threads). The teacher
#: checkpoint path and the data folder are replaced by their fingerprints.
STUDENT_IGNORED = ("profile", "num_workers", "threads", "max_test_images", "n_qualitative", "teacher_checkpoint",
                   "teacher_cache_dir",
                   "batch_cache_dir", "data_dir", "runs_dir", "figures_dir")
#: Likewise for notebook 02's teacher training.
TEACHER_IGNORED = ("profile", "data_dir", "mode", "public_checkpoint", "shipped_checkpoint", "num_workers",
                   "threads", "max_test_images", "run_dir", "figures_dir")


def student_run_name(label: str, seed: int) -> str:
    """The one name of a student run: its folder under ``students/`` and its pipeline job (marker, executed
    notebook), ``kd-<configuration label>-seed<seed>``, e.g. ``kd-spatial+channel-seed0``."""
    return f"kd-{label}-seed{seed}"


def dataset_identity(data_dir: str | os.PathLike) -> str:
    """What identifies the training data: :func:`matting_lib.layout.dataset_identity` (the files' contents for a
    generated dataset, the name lists and file sizes for other data) as ``"<kind>:<sha256>"``."""
    from .layout import DatasetLayout
    from .layout import dataset_identity as identity

    d = identity(DatasetLayout.for_root(data_dir))
    return f"{d['kind']}:{d['sha256']}"


def weights_fingerprint(checkpoint: str | os.PathLike) -> str:
    """SHA-256 over a checkpoint's ``arch`` and its model tensors (names, dtypes, shapes, bytes), independent of how
    and when the file was written."""
    import torch

    from .checkpoints import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    h = hashlib.sha256(json.dumps(ckpt.get("arch"), sort_keys=True).encode())
    for name in sorted(ckpt["model"]):
        t = ckpt["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _plain(params: Any) -> dict[str, Any]:
    d = asdict(params) if is_dataclass(params) else dict(params)
    return json.loads(json.dumps(d, default=str))  # tuples -> lists, as they come back from run.json


def training_identity(kind: str, params: Any, *, ignore: Iterable[str] = (), teacher_checkpoint=None,
                      data_dir=None, **extra: Any) -> dict[str, Any]:
    """The identity of a training: ``params`` (a dict or dataclass) minus ``ignore``, plus the teacher's weights
    fingerprint (None: the training uses no teacher), the dataset identity and ``extra`` (plain data)."""
    kept = {k: v for k, v in _plain(params).items() if k not in set(ignore)}
    return {"format": FORMAT, "kind": kind, "params": kept, **_plain(extra),
            "teacher": weights_fingerprint(teacher_checkpoint) if teacher_checkpoint is not None else None,
            "dataset": dataset_identity(data_dir) if data_dir is not None else None}


def student_identity(p: Any, teacher_checkpoint, data_dir) -> dict[str, Any]:
    """Notebook 03: ``p`` a :class:`matting_lib.distill.DistillRunParams`; the teacher only when the configuration
    uses one (retraining the teacher does not invalidate the no-KD students)."""
    cfg = p.distill_config
    return training_identity("student", p, ignore=STUDENT_IGNORED, distill=cfg.to_dict(), data_dir=data_dir,
                             teacher_checkpoint=teacher_checkpoint if cfg.uses_teacher else None)


def teacher_identity(params: Mapping[str, Any], data_dir) -> dict[str, Any]:
    """Notebook 02 in train mode: its parameter dict."""
    return training_identity("teacher", params, ignore=TEACHER_IGNORED, data_dir=data_dir)


def _differences(stored: Any, current: Mapping[str, Any]) -> list[str]:
    if not isinstance(stored, dict):
        return ["run.json is unreadable"]
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if key == "params" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{key}: {str(a)[:24]} -> {str(b)[:24]}")
    return out


def _damaged(run_dir: Path) -> list[str]:
    from .checkpoints import load_checkpoint

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


def prepare_run_dir(run_dir: str | os.PathLike, identity: Mapping[str, Any], *, log=print) -> str:
    """Make ``run_dir`` ready for the training ``identity`` (see the module docstring). Returns ``"new"``,
    ``"resume"`` (same identity; the training continues or is complete) or ``"stale"`` (old folder moved aside)."""
    from .utils import atomic_write_text

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
                log(f"{run_dir}: same training as recorded in {RUN_FILE}; resuming (or already complete)")
                return "resume"
        else:
            aside = move_aside(run_dir)
            log(f"{run_dir}: not the same training ({'; '.join(why)}); moved the old run to {aside.name} and "
                f"starting afresh")
            run_dir.mkdir(parents=True)
            atomic_write_text(record, json.dumps({"identity": identity, "created": _utc()}, indent=2) + "\n")
            return "stale"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"identity": identity, "created": _utc()}, indent=2) + "\n")
    return "new"


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
