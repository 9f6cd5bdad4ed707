"""The project's own checkpoints, and a safe importer for DIM-PyTorch's public ``BEST_checkpoint.tar``.

Own checkpoints (:func:`save_checkpoint`) are one ``torch.save``-d dict of plain data, loadable with
``torch.load(path, weights_only=True)``::

    format      "matting_lib.checkpoint/1"
    arch        the network's DIMNet.arch dict (kind "teacher"/"student", width, stage widths and convs)
    model       model state_dict (tensors; a DDP/DataParallel wrapper is removed before saving)
    optimizer   optimizer.state_dict() or None        objective   objective.state_dict() or None
    config      dict of primitives (e.g. the TrainConfig)      epoch, step   ints
    metrics     dict of numbers                                extra         plain data (RNG states, ...) or None

They are written atomically (temporary file + rename, :func:`matting_lib.files.atomic_write`), so a crash
mid-write never damages the previous file. A weights-only file (optimizer None) of the width-1 teacher is
~103 MB, of the student ~20 MB.

The public DIM-PyTorch teacher (docs/paper_notes.md §7.1) is a whole pickled ``DataParallel(models.DIMModel)`` plus a
pickled optimizer: ``torch.load`` would need ``weights_only=False`` (arbitrary code execution for an untrusted file) and
the original classes under the module name ``models``. :func:`load_dim_pytorch` instead unpickles it with an
allow-list: tensors/storages, the containers this format uses, and the module/optimizer classes of that file,
which are replaced by inert stand-ins that only record their attributes. Anything else — ``os.system``,
``builtins.eval``, any other class — is refused before it is called, with :class:`UnsafeCheckpointError`.

Every loader here first inspects the file itself (:func:`check_checkpoint_file`) and hands torch only torch's zip
format (a zip whose one folder holds ``data.pkl``) or its legacy pickle format (the magic number first). A
TorchScript archive (a zip with ``constants.pkl`` or ``code/``) is refused before torch sees it: ``torch.load``
would pass it to ``torch.jit.load``, which runs the archive's code and never consults an unpickler. Empty,
truncated and foreign files raise :class:`CheckpointError` naming the file, and so do weights holding NaN or inf.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copyreg
import difflib
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import sys
import tarfile
import types
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from matting_lib.data.output_safety import check_output, one_line_warnings
from matting_lib.files import atomic_write, atomic_write_bytes, atomic_write_text, disk_full_error, sha256_file
from matting_lib.networks.models import DIMNet, build_teacher, count_parameters, model_from_arch
from matting_lib.paths import RunLayout

FORMAT = "matting_lib.checkpoint/1"


class CheckpointError(ValueError):
    """The file is not a usable checkpoint; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file would run code if torch loaded it (a pickle asking for a global outside the allow-list, a
    TorchScript archive); it was refused and nothing in it was executed."""


# ------------------------------------------------------------------------------------------ file format
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, the first pickle of a legacy file


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain values only (the legacy format's leading magic number); any global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name}")


def check_checkpoint_file(path: str | os.PathLike, what: str = "a checkpoint") -> str:
    """Inspect a file before torch reads it: ``"zip"`` (torch's zip format) or ``"legacy"`` (its pickle format).

    Raises :class:`UnsafeCheckpointError` for a TorchScript archive (``torch.load`` would hand it to
    ``torch.jit.load``, which runs its code), and :class:`CheckpointError` naming the file for a missing, empty,
    truncated or foreign file. ``what`` names the expected kind in the messages (e.g. "a matting_lib checkpoint").
    """
    path = _existing_file(path, what)
    with open(path, "rb") as fh:
        return _sniff(fh, path, what)


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not {what}; give the checkpoint file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def _sniff(fh, path: Path, what: str) -> str:
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(4)
    fh.seek(0)
    bad = f"{path} is not {what}: truncated or not a checkpoint"
    if size == 0:
        raise CheckpointError(f"{bad} (the file is empty, 0 bytes); copy it again or use another checkpoint")
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(fh) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            raise CheckpointError(f"{bad} (a zip archive that cannot be read: {err}; {size} bytes)") from None
        finally:
            fh.seek(0)
        folders = {n.split("/", 1)[0] for n in names}
        records = {n.split("/", 1)[1] for n in names if "/" in n}
        if "constants.pkl" in records or any(r.startswith("code/") for r in records) \
                or any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in names):
            raise UnsafeCheckpointError(
                f"{path} is a TorchScript archive (it holds code/ and constants.pkl), not a checkpoint of weights: "
                f"torch.load would run its code through torch.jit.load. Refused without loading it; nothing in it "
                f"ran. Ask whoever made it for the weights alone (torch.save(model.state_dict(), ...))")
        if len(folders) != 1 or len(records) != len(names) or "data.pkl" not in records:
            raise CheckpointError(f"{bad} (a zip archive, but not one torch.save wrote: no single folder with "
                                  f"data.pkl; it holds {sorted(names)[:4]})")
        return "zip"
    try:
        first = _NoGlobals(fh).load() if head[:1] == b"\x80" else None
    except Exception:  # noqa: BLE001 - anything unreadable here is "not a legacy torch file"
        first = None
    finally:
        fh.seek(0)
    if first != _LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{bad} (it starts with {head!r}; torch.save writes a zip archive or, before torch 1.6, "
                              f"a pickle that starts with torch's magic number)")
    is_tar = tarfile.is_tarfile(fh)  # torch's oldest, tar-based format: never written by anything we support
    fh.seek(0)
    if is_tar:
        raise CheckpointError(f"{path} is a tar archive in torch's pre-1.0 format; it is not supported")
    return "legacy"


@contextlib.contextmanager
def _opened(path: str | os.PathLike, what: str) -> Iterator[BinaryIO]:
    """The open file of a checkpoint that :func:`_sniff` accepted; torch then reads this same handle (the file
    cannot be swapped between the check and the load)."""
    path = _existing_file(path, what)
    with open(path, "rb") as fh:
        _sniff(fh, path, what)
        yield fh


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def _weights_only_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to load it unsafely: the global
    its pickle asks for (nothing in it ran), or the first line of any other error."""
    asked = re.search(r"GLOBAL ([\w.]+)", str(err))
    if asked:
        return (f"its pickle asks for {asked[1]}, which a file of weights never needs (torch's weights-only loader "
                f"refused it; nothing in it ran)")
    text = str(err)
    if text.startswith("Weights only load failed"):  # the cause follows torch's paragraph of advice
        text = "\n\n".join(part for part in text.split("\n\n")[1:] if "weights_only" not in part) or "unreadable"
    first = (text.strip().splitlines() or [""])[0][:200]
    return f"truncated or not a checkpoint ({type(err).__name__}: {first})"


def _check_finite(state: dict, path: str | os.PathLike) -> None:
    """Refuse weights holding NaN or inf: such a network outputs garbage (an all-zero matte) without an error."""
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or inf values (e.g. {', '.join(bad[:3])}); "
            f"the training that wrote it diverged or the file is damaged. Use an earlier checkpoint "
            f"(e.g. best.pt) or retrain"
        )


# ------------------------------------------------------------------------------------------ own checkpoints
def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be a str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} = {value!r} ({type(value).__name__}) is not plain data (numbers, strings, "
                    f"tensors, lists, dicts); convert it before saving")


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    objective: nn.Module | None = None, config: dict, epoch: int, step: int, metrics: dict,
                    extra: Any = None, averaged: nn.Module | None = None) -> Path:
    """Write a checkpoint atomically (see module docstring); returns the path. ``averaged``: the training's
    ``torch.optim.swa_utils.AveragedModel`` (its state, for resuming), stored under ``"averaged"``."""
    model = unwrap(model)
    state = {
        "format": FORMAT,
        "arch": dict(getattr(model, "arch", {}) or {}) or None,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "objective": objective.state_dict() if objective is not None else None,
        "config": dict(config), "epoch": int(epoch), "step": int(step), "metrics": dict(metrics), "extra": extra,
    }
    if averaged is not None:
        state["averaged"] = averaged.state_dict()
    for key in ("arch", "config", "metrics", "extra"):
        _check_plain(state[key], f"checkpoint {key}")
    try:
        return atomic_write(path, lambda tmp: torch.save(state, tmp))
    except RuntimeError as err:  # torch's zip writer reports a full disk as "unexpected pos" / "file write failed"
        if any(s in str(err) for s in ("unexpected pos", "file write failed", "failed writing file")):
            raise disk_full_error(path, err) from err
        raise


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``; tensors on ``map_location``)."""
    path = Path(path)
    with _opened(path, "a matting_lib checkpoint") as fh:
        try:
            ckpt = torch.load(fh, map_location=map_location, weights_only=True, mmap=False)
        except Exception as err:  # a truncated zip, a foreign pickle: all mean "not ours"
            raise CheckpointError(
                f"{path} is not a matting_lib checkpoint: {_weights_only_reason(err)}. For DIM-PyTorch's "
                f"BEST_checkpoint.tar use matting_lib.networks.checkpoints.load_dim_pytorch / "
                f"import_dim_pytorch_teacher."
            ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        what = f"a dict with keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a matting_lib checkpoint (found {what}, no format={FORMAT!r}). "
                              f"A plain or DIM-PyTorch state dict loads with load_dim_pytorch().")
    return ckpt


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu", kind: str | None = None) -> DIMNet:
    """Rebuild the network stored in a checkpoint (architecture from its ``arch``), load its weights, eval mode.
    ``kind`` ("teacher" / "student"): refuse a checkpoint that records another kind (:func:`check_kind`)."""
    model = model_from_checkpoint(load_checkpoint(path, map_location=map_location), path, map_location=map_location)
    return model if kind is None else check_kind(model, kind, f"checkpoint {path}")


def load_evaluated_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> DIMNet:
    """The weights a training evaluates, from any of its checkpoints: the averaged ones when the checkpoint holds a
    ``torch.optim.swa_utils.AveragedModel`` state (``last.pt`` and snapshots of a run with ``ema_decay``), else the
    model's (:func:`load_model`). So a snapshot of an averaging run scores as its ``best.pt`` would."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("averaged"):
        prefix = "module."
        ckpt = {**ckpt, "model": {k.removeprefix(prefix): v for k, v in ckpt["averaged"].items()
                                  if k.startswith(prefix)}}
    return model_from_checkpoint(ckpt, path, map_location=map_location)


#: Where each kind of checkpoint is found, for the messages of :func:`check_kind`.
_KIND_EXAMPLES = {"teacher": "runs/<profile>/teacher/teacher.pt or matting_lib/assets/teacher-<profile>.pt",
                  "student": "runs/<profile>/students/<run>/best.pt"}


def check_kind(model: nn.Module, expected: str, source: str) -> nn.Module:
    """``model`` if the kind its ``arch`` records (:attr:`matting_lib.networks.models.DIMNet.arch`, stored in every
    checkpoint) is ``expected`` ("teacher" or "student"); a :class:`CheckpointError` naming ``source`` (e.g.
    ``"checkpoint runs/x/best.pt"``) when it records the other kind. A network that records neither (a custom
    DIMNet) passes: nothing says what it is."""
    if expected not in _KIND_EXAMPLES:
        raise ValueError(f"expected kind {expected!r}; valid: {', '.join(_KIND_EXAMPLES)}")
    arch = getattr(model, "arch", None) or {}
    kind = arch.get("kind")
    if kind in _KIND_EXAMPLES and kind != expected:

        raise CheckpointError(f"{source} holds a {kind} network ({count_parameters(model):,} parameters at width "
                              f"{arch.get('width')}), but a {expected} is expected here; give a {expected}'s "
                              f"checkpoint (e.g. {_KIND_EXAMPLES[expected]})")
    return model


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike, *,
                          map_location: str | torch.device = "cpu") -> DIMNet:
    """The network of a dict from :func:`load_checkpoint` (``path`` only names it in errors), eval mode.
    Weights holding NaN or inf are refused."""
    if not ckpt.get("arch"):
        raise CheckpointError(f"{path} records no architecture ('arch'); it was not saved from a DIMNet")
    _check_finite(ckpt["model"], path)
    model = model_from_arch(ckpt["arch"])
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()


def manifest_path(path: str | os.PathLike) -> Path:
    """The provenance manifest beside a checkpoint: ``teacher-default.pt`` → ``teacher-default.json``."""
    return Path(path).with_suffix(".json")


def write_manifest(path: str | os.PathLike, **info: Any) -> Path:
    """Write ``<checkpoint>.json`` with the checkpoint's SHA-256 and size plus ``info`` (command, parameters,
    dataset manifest hash, steps, metrics, ...; plain data)."""
    _check_plain(info, "manifest")
    record = {"file": Path(path).name, "sha256": sha256_file(path), "bytes": Path(path).stat().st_size, **info}
    return atomic_write_text(manifest_path(path), json.dumps(record, indent=2, sort_keys=True) + "\n")


def check_manifest(path: str | os.PathLike) -> dict:
    """Read ``<checkpoint>.json`` and check the checkpoint's SHA-256 against it; returns the manifest."""
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise CheckpointError(f"{path} has no provenance manifest {mpath.name} beside it")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"manifest {mpath} is not valid JSON ({err}); restore it (git checkout) or write it "
                              f"again (matting_lib.networks.checkpoints.write_manifest)") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"manifest {mpath} holds a {type(manifest).__name__}, not a JSON object; restore it "
                              f"(git checkout) or write it again (matting_lib.networks.checkpoints.write_manifest)")
    digest = sha256_file(path)
    if manifest.get("sha256") != digest:
        raise CheckpointError(f"{path}: SHA-256 {digest[:16]}… differs from its manifest's "
                              f"{str(manifest.get('sha256'))[:16]}…; the file was changed or damaged — restore it "
                              f"(git checkout) or retrain it")
    return manifest


def check_ship_destination(dst: str | os.PathLike, *, force: bool = True, example_name: str = "teacher.pt",
                           inputs: tuple = ()) -> None:
    """Refuse a destination a shipped checkpoint cannot go to: a name not ending in ``.pt`` (its manifest goes
    beside it as ``.json``), and what :func:`matting_lib.data.output_safety.check_output` refuses for it or its
    manifest (a folder, a dataset's inputs, one of ``inputs``, a read-only folder, or, without ``force``, an
    existing file)."""
    dst = Path(dst)
    if dst.is_dir():
        raise CheckpointError(f"destination {dst} is a folder; give the checkpoint's file name, e.g. "
                              f"{dst / example_name}")
    if dst.suffix != ".pt":
        raise CheckpointError(f"destination {dst} must end in .pt (its manifest is written beside it as "
                              f"{manifest_path(dst.with_suffix('.pt')).name}); e.g. {dst.with_suffix('.pt')}")
    check_output(dst, inputs=inputs, force=force, what="destination", example=example_name,
                 companions=[manifest_path(dst)])


def ship_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, force: bool = False, **info: Any) -> Path:
    """Copy a checkpoint and its manifest to ``dst`` (e.g. ``matting_lib/assets/teacher-default.pt``), adding
    ``info`` (plain data, e.g. the command that trained it) to the manifest. The source manifest's SHA-256 is
    checked first; an existing ``dst`` is replaced only with ``force``. ``dst`` must be a ``.pt`` file name (its
    manifest goes beside it as ``.json``); a folder, another suffix or a destination that is the source, or whose
    manifest is the source's, is refused before anything is written."""
    src, dst = Path(src), Path(dst)
    if src.suffix == ".json":
        raise CheckpointError(f"{src} is a manifest; give the checkpoint beside it ({src.with_suffix('.pt')})")
    _existing_file(src, "a checkpoint")  # a missing source or a folder is named as such
    def same(a: Path, b: Path) -> bool:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))

    if same(dst, src) or same(manifest_path(dst), manifest_path(src)):
        raise CheckpointError(f"destination {dst} is the source {src} (or shares its manifest "
                              f"{manifest_path(src).name}); ship to another file")
    check_ship_destination(dst, force=force, example_name=src.with_suffix(".pt").name,
                           inputs=(src, manifest_path(src)))
    manifest = check_manifest(src)
    keep = {k: v for k, v in manifest.items() if k not in ("file", "sha256", "bytes")}
    # streamed, not read into memory; the copy and its manifest are replaced together
    return _write_with_manifest(dst, lambda tmp: shutil.copyfile(src, tmp), {**keep, **info, "shipped_from": str(src)})


def _write_with_manifest(dst: Path, write: Any, info: dict[str, Any]) -> Path:
    """Write the checkpoint ``dst`` (``write(tmp_path)`` fills a temporary file beside it) and its manifest so that
    they always describe each other: the manifest is made from the finished temporary file and put in place just
    before the checkpoint is renamed over ``dst``. Any failure (an exception, a full disk, Ctrl-C) leaves the
    previous ``dst`` and manifest as they were."""
    _check_plain(info, "manifest")
    mpath = manifest_path(dst)
    old = mpath.read_bytes() if mpath.is_file() else None
    replaced = False

    def write_both(tmp: Path) -> None:
        nonlocal replaced
        write(tmp)
        record = {"file": dst.name, "sha256": sha256_file(tmp), "bytes": tmp.stat().st_size, **info}
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_text(mpath, text)
        replaced = True

    try:
        return atomic_write(dst, write_both)
    except BaseException:
        if replaced:  # the checkpoint's rename failed after the new manifest went in: put the old one back
            if old is None:
                mpath.unlink(missing_ok=True)
            else:
                atomic_write_bytes(mpath, old)
        raise


def _read_json(path: Path, what: str, fix: str) -> dict:
    """A JSON object from ``path`` or a :class:`CheckpointError` naming the file, what it is and ``fix``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: {what} is unknown; {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({type(err).__name__}: {_first_line(err)}); {fix}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a JSON object; {fix}")
    return data


def _student_candidate(run: Path, config: str, seed: int, fix: str) -> dict:
    """The ``metrics.json`` record of the finished student run ``run`` (``kd-<config>-seed<seed>``) after checking
    that the run is what its folder name says: its record names ``config`` and ``seed``, its identity
    (``run.json``) the same seed and the same distillation configuration as the record, and its best validation
    loss is a finite number."""
    rec = _read_json(run / "metrics.json", "its result", fix)
    ident = _read_json(run / "run.json", "the run's identity", fix).get("identity")
    if not isinstance(ident, dict) or ident.get("kind") != "student" or not isinstance(ident.get("distill"), dict):
        raise CheckpointError(f"{run / 'run.json'} records no student identity (kind and distillation "
                              f"configuration); {fix}")
    params = ident.get("params") if isinstance(ident.get("params"), dict) else {}
    if (rec.get("config"), rec.get("seed")) != (config, seed):
        raise CheckpointError(f"{run / 'metrics.json'} records configuration {rec.get('config')!r} seed "
                              f"{rec.get('seed')}, but the folder name {run.name} says {config!r} seed {seed}: a run "
                              f"folder was copied or renamed; {fix}")
    if rec.get("distill") != ident["distill"] or params.get("seed") != seed:
        raise CheckpointError(f"{run / 'run.json'} records the training of seed {params.get('seed')} with "
                              f"distillation {_distill_summary(ident['distill'])}, but {run / 'metrics.json'} "
                              f"records seed {seed} with {_distill_summary(rec.get('distill'))}: the files come from "
                              f"different runs; {fix}")
    loss = rec.get("best_val_loss")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        raise CheckpointError(f"{run / 'metrics.json'}: best_val_loss is {loss!r}, not a finite number (a diverged "
                              f"or damaged training), so the seeds cannot be compared; {fix}")
    return rec


def _distill_summary(cfg: Any) -> str:
    """A distillation configuration of a run record in a few words, e.g. ``types ['spatial'], layers [...]``."""
    if not isinstance(cfg, dict):
        return "none recorded"
    return ", ".join(f"{k} {cfg.get(k)}" for k in ("types", "weights", "layers", "teacher_alpha_weight"))


def ship_student(runs_dir: str | os.PathLike, dst: str | os.PathLike, *, config: str = "spatial+channel",
                 profile: str = "default", force: bool = False) -> Path:
    """Ship a student of a finished profile run as ``dst`` (e.g. ``matting_lib/assets/student-default.pt``, what
    ``python -m matting_lib.predict`` uses without ``--checkpoint``): among the seeds of ``config`` under
    ``runs_dir/students/`` (``kd-<config>-seed<n>``, each with ``best.pt`` and ``metrics.json``), the one with the
    lowest validation loss (the fixed validation crops that picked its ``best.pt``) — never by a test score. Writes
    the weights alone and a manifest: the configuration, every candidate's validation loss, the chosen run's
    identity (``run.json``: settings, data, teacher, code) and its test metrics, reported, not used.

    Everything is read and checked before anything is written: ``config`` names configurations that have runs
    there (else the message lists those that have); every finished candidate's ``metrics.json`` names the
    configuration and seed its folder name says and its ``run.json`` the same seed and distillation settings; its
    best validation loss is finite; the chosen ``best.pt`` loads as a student. A run without ``metrics.json`` or
    ``best.pt`` is unfinished and not a candidate. The checkpoint and its manifest are replaced together
    (:func:`_write_with_manifest`); on any failure the previous ``dst`` stays as it was."""
    dst, runs_dir = Path(dst), Path(runs_dir)
    if not runs_dir.is_dir():
        raise CheckpointError(f"runs folder {runs_dir} " + ("is a file" if runs_dir.exists() else "does not exist")
                              + "; give the runs folder of a profile run, e.g. runs/default")
    students = RunLayout(runs_dir).students
    by_config = RunLayout(runs_dir).student_runs()
    if not by_config:
        raise CheckpointError(f"{students} holds no student run (kd-<configuration>-seed<n>); run the profile first "
                              f"(./run_all.sh --profile {profile})")
    if config not in by_config:

        close = difflib.get_close_matches(config, list(by_config), n=1)
        raise CheckpointError(f"--config {config!r}: {students} holds no run of that configuration"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; the configurations there: {', '.join(sorted(by_config))}")
    found = by_config[config]
    check_ship_destination(dst, force=force, example_name="student-default.pt",
                           inputs=tuple(f for run in found for f in (run / "best.pt", run / "metrics.json")))
    records, unfinished = {}, []
    for run in found:
        if not ((run / "metrics.json").is_file() and (run / "best.pt").is_file()):
            unfinished.append(run.name)
            continue
        fix = (f"rerun it (./run_all.sh --profile {profile} --only distill) or move {run} out of {students}; "
               f"nothing was written")
        records[run] = _student_candidate(run, config, int(run.name.rsplit("seed", 1)[1]), fix)
    if not records:
        raise CheckpointError(f"no finished {config} student under {students} ({len(unfinished)} unfinished: "
                              f"{', '.join(unfinished[:3])}; a finished run holds metrics.json and best.pt); finish "
                              f"them first (./run_all.sh --profile {profile} --only distill)")
    chosen = min(records, key=lambda r: (records[r]["best_val_loss"], r.name))
    rec = records[chosen]
    ckpt = load_checkpoint(chosen / "best.pt")
    model = check_kind(model_from_checkpoint(ckpt, chosen / "best.pt"), "student", f"checkpoint {chosen / 'best.pt'}")
    identity = json.loads((chosen / "run.json").read_text(encoding="utf-8"))["identity"]
    info = dict(kind="student", config=config, profile=profile, seed=rec.get("seed"), run=chosen.name,
                width=rec.get("width"), params=rec.get("params"), steps=rec.get("steps"),
                best_step=rec.get("best_step"), best_val_loss=rec["best_val_loss"],
                chosen_by="the lowest validation loss (fixed validation crops of held-out training foregrounds) "
                          "among the configuration's seeds; test metrics are reported, never used to choose",
                candidates={r.name: records[r]["best_val_loss"] for r in sorted(records)},
                identity=identity, test_images=rec.get("test_images"), metrics=rec.get("metrics"),
                note=f"python -m matting_lib.checkpoints ship-student {runs_dir.as_posix()} {dst.as_posix()} "
                     f"--config {config}")
    return _write_with_manifest(dst, lambda tmp: save_checkpoint(
        tmp, model=model, config=ckpt["config"], epoch=ckpt["epoch"], step=ckpt["step"],
        metrics={"best_val_loss": rec["best_val_loss"]}), info)


def main(argv: list[str] | None = None) -> int:
    """``python -m matting_lib.checkpoints ship SRC DST [--force]``: see :func:`ship_checkpoint`;
    ``ship-student RUNS DST [--config C]``: see :func:`ship_student`."""
    p = argparse.ArgumentParser(prog="python -m matting_lib.checkpoints",
                                description="Ship a trained checkpoint with its provenance manifest.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ship = sub.add_parser("ship", help="copy SRC (+ manifest) to DST, checking SRC's SHA-256")
    ship.add_argument("src")
    ship.add_argument("dst")
    ship.add_argument("--force", action="store_true", help="replace an existing DST")
    ship.add_argument("--note", default="", help="free text stored in the manifest (e.g. the training command)")
    student = sub.add_parser("ship-student", help="ship the student of a finished profile run with the lowest "
                             "validation loss among a configuration's seeds (the one predict uses by default)")
    student.add_argument("runs", help="the profile's runs folder, e.g. runs/default")
    student.add_argument("dst", help="e.g. matting_lib/assets/student-default.pt")
    student.add_argument("--config", default="spatial+channel",
                         help="the configuration, e.g. spatial, channel, spatial+channel (default)")
    student.add_argument("--profile", default="default")
    student.add_argument("--force", action="store_true", help="replace an existing DST")
    args = p.parse_args(argv)

    prog = f"{p.prog} {args.cmd}"
    try:
        with one_line_warnings(prog):
            if args.cmd == "ship-student":
                out = ship_student(args.runs, args.dst, config=args.config, profile=args.profile, force=args.force)
            else:
                out = ship_checkpoint(args.src, args.dst, force=args.force,
                                      **({"note": args.note} if args.note else {}))
    except (ValueError, OSError) as err:  # CheckpointError, an output refused, a full disk, a read-only folder ...
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {manifest_path(out).name}")
    return 0


# ------------------------------------------------------------------------------------------ safe import
class _Pickled:
    """Inert stand-in for a module/optimizer object in a foreign pickle: it only keeps its state."""

    dump_patches = False  # read by torch's legacy loader when it compares class sources
    origin = "?"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict, slots)
        self.__dict__["state"] = state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<pickled {self.origin}>"


# The classes a DIM-PyTorch checkpoint pickles (DIMModel's submodules, torch.nn layers, DataParallel, optimizer).
_STAND_INS = {
    "models": ("DIMModel", "segnetDown2", "segnetDown3", "segnetUp1", "conv2DBatchNormRelu"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.activation": ("ReLU", "Sigmoid"),
    "torch.nn.modules.pooling": ("MaxPool2d", "MaxUnpool2d"),
    "torch.nn.modules.container": ("Sequential",),
    "torch.nn.parallel.data_parallel": ("DataParallel",),
    "torch.optim.adam": ("Adam",),
    "torch.optim.sgd": ("SGD",),
}
_STAND_IN_CLASSES = {(mod, name): type(name, (_Pickled,), {"origin": f"{mod}.{name}"})
                     for mod, names in _STAND_INS.items() for name in names}
# Callables and classes with no side effects beyond building tensors and containers.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    **{("builtins", c.__name__): c for c in (object, dict, list, tuple, set, frozenset)},
    **{("__builtin__", c.__name__): c for c in (object, dict, list, tuple, set, frozenset)},
}


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _STAND_IN_CLASSES:
            return _STAND_IN_CLASSES[key]
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"the pickle asks for {module}.{name}, which is not one of the tensor, container or module classes "
            f"a DIM-PyTorch checkpoint needs")


def _safe_load(fh, **kwargs):
    return _AllowListUnpickler(fh, **kwargs).load()


# A stand-in for the ``pickle`` module that torch.load drives (it subclasses ``Unpickler`` for the main pickle and
# calls ``load`` for the small header pickles of the legacy format), so both the zip and the legacy format go
# through the allow-list.
_SAFE_PICKLE = types.ModuleType("matting_lib_safe_pickle")
_SAFE_PICKLE.Unpickler = _AllowListUnpickler
_SAFE_PICKLE.load = _safe_load
_SAFE_PICKLE.UnpicklingError = pickle.UnpicklingError


def _module_state_dict(obj: _Pickled, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    state = obj.state
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in skip:
            out[prefix + name] = b
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _Pickled):
            out.update(_module_state_dict(child, f"{prefix}{name}."))
    return out


def load_dim_pytorch(path: str | os.PathLike) -> collections.OrderedDict:
    """State dict of a DIM-PyTorch checkpoint, read safely on CPU without the original code.

    Accepts the public ``BEST_checkpoint.tar`` (``{'epoch', ..., 'model': DataParallel(DIMModel), 'optimizer'}``,
    zip or legacy torch format), a dict with a ``'state_dict'`` or ``'model'`` state dict, or a plain state dict;
    a ``module.`` prefix (DataParallel/DDP) is removed. Raises :class:`UnsafeCheckpointError` if the pickle asks
    for anything outside the allow-list (nothing it asked for is executed) and :class:`CheckpointError` if no
    weights are found.
    """
    path = Path(path)
    with _opened(path, "a DIM-PyTorch checkpoint") as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's legacy loader warns that our stand-ins' "source" changed
                obj = torch.load(fh, map_location="cpu", weights_only=False, pickle_module=_SAFE_PICKLE, mmap=False)
        except UnsafeCheckpointError as err:
            raise UnsafeCheckpointError(f"{path} is refused: loading it would run code ({err}); nothing in it was "
                                        f"called. Use a matting_lib checkpoint or DIM-PyTorch's BEST_checkpoint.tar "
                                        f"from its authors") from None
        except Exception as err:
            raise CheckpointError(f"{path} could not be read as a torch checkpoint: truncated or not a checkpoint "
                                  f"({type(err).__name__}: {_first_line(err)})") from None
    if isinstance(obj, dict) and "model" in obj and not isinstance(obj["model"], torch.Tensor):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, _Pickled):
        obj = _module_state_dict(obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: found no state dict (got {type(obj).__name__}); expected DIM-PyTorch's "
                              f"BEST_checkpoint.tar or a state dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return collections.OrderedDict((k, v.detach()) for k, v in obj.items())


def import_dim_pytorch_teacher(path: str | os.PathLike) -> DIMNet:
    """The width-1 teacher with the weights of a DIM-PyTorch checkpoint (strict key/shape match), eval mode."""
    state = load_dim_pytorch(path)
    teacher = build_teacher(1.0)
    want = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not hold the DIM teacher: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} with other shapes "
            f"{[(k, got[k], want[k]) for k in wrong[:3]]}")
    _check_finite(state, path)
    teacher.load_state_dict(state)
    return teacher.eval()


def load_any_model(path: str | os.PathLike) -> DIMNet:
    """A DIMNet from a matting_lib checkpoint, or the teacher from a DIM-PyTorch checkpoint."""
    # Empty, truncated, foreign or TorchScript: one message, and torch never sees the file.
    check_checkpoint_file(path, "a matting_lib or DIM-PyTorch checkpoint")
    try:
        ckpt = load_checkpoint(path)
    except UnsafeCheckpointError:
        raise
    except CheckpointError as own_err:  # not ours: perhaps DIM-PyTorch's
        try:
            return import_dim_pytorch_teacher(path)
        except UnsafeCheckpointError:  # it asks to run code: that alone is the answer
            raise
        except CheckpointError as dim_err:
            raise CheckpointError(f"{own_err}\nand as a DIM-PyTorch checkpoint: {dim_err}") from None
    return model_from_checkpoint(ckpt, path)  # ours: its errors (no arch, NaN weights) are the ones to show


def weights_fingerprint(checkpoint: str | os.PathLike) -> str:
    """SHA-256 over a checkpoint's ``arch`` and its model tensors (names, dtypes, shapes, bytes), independent of how
    and when the file was written."""
    ckpt = load_checkpoint(checkpoint)
    h = hashlib.sha256(json.dumps(ckpt.get("arch"), sort_keys=True).encode())
    for name in sorted(ckpt["model"]):
        t = ckpt["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
