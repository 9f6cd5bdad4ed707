"""Notebook 02's teacher: its parameters, getting it (train, load the shipped one, import DIM-PyTorch's) and saving it.

* :class:`TeacherParams` — the notebook's ``parameters`` cell as one validated, frozen object: the shared training
  settings (:mod:`matting_lib.settings`) plus how the teacher is obtained; :meth:`record` is the dict stored in
  ``teacher.pt`` and the manifest.
* :func:`get_teacher` — mode ``train`` (:func:`matting_lib.training.run.train_network`, resumable), ``load`` (the
  shipped checkpoint, its SHA-256 checked against its manifest) or ``import`` (``BEST_checkpoint.tar``, safely).
* :func:`check_against_manifest` — the re-evaluated test metrics against the manifest's (relative 1e-3).
* :func:`save_teacher` — ``teacher.pt``, ``metrics.json`` and, after training, the provenance manifest.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from matting_lib.data.layout import dataset_identity
from matting_lib.files import atomic_write_text, sha256_file
from matting_lib.metrics import METRIC_KEYS
from matting_lib.networks import checkpoints
from matting_lib.networks.models import count_parameters
from matting_lib.params import check_counts, param
from matting_lib.paths import REPO, repo_path
from matting_lib.settings import TrainSettings, override, setting
from matting_lib.training.loop import TrainResult
from matting_lib.training.run import train_network
from matting_lib.training.run_identity import record as fields_record

MODES = ("train", "load", "import")


@dataclass(frozen=True)
class TeacherParams(TrainSettings):
    """Notebook 02's parameters, validated (see the notebook's ``parameters`` cell for their meaning): the training
    settings (:class:`matting_lib.settings.TrainSettings`, with the default profile's teacher values) and how the
    teacher is obtained. Paths are relative to the repository."""

    width: float = override(TrainSettings, "width", 0.25,
                            "teacher channel width, 1.0 is the paper's 25.6 M parameters; train mode")
    crop_size: int = override(TrainSettings, "crop_size", 160)
    steps: int = override(TrainSettings, "steps", 15000, "optimiser steps; train mode")
    val_every: int = override(TrainSettings, "val_every", 500)
    num_workers: int = override(TrainSettings, "num_workers", 1)
    profile: str = param("default", "pipeline profile (names the figures and the shipped teacher)")
    data_dir: str = param("data/synthetic-comp1k",
                          "dataset root in the shared Adobe layout (relative to the repository)")
    mode: str = param("load", '"train" | "load" (shipped teacher) | "import" (DIM-PyTorch BEST_checkpoint.tar)')
    ddp_processes: int = setting(1, "train mode: processes (one per GPU) of one DDP training under torchrun; 1: here")
    public_checkpoint: str = param("", "import mode: path to DIM-PyTorch's BEST_checkpoint.tar")
    shipped_checkpoint: str = param("", "load mode; empty: matting_lib/assets/teacher-<profile>.pt")
    max_test_images: int = param(0, "evaluate only the first N test composites; 0: all")
    run_dir: str = param("runs/default/teacher", "teacher.pt, metrics.json, training run and predictions go here")
    figures_dir: str = param("figures/default", "this notebook's figures go here")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; valid modes: {', '.join(MODES)}")
        check_counts(self, at_least_1=("ddp_processes",), at_least_0=("max_test_images",))
        if self.mode == "import" and not self.public_checkpoint:
            raise ValueError("mode='import' needs public_checkpoint: the path of DIM-PyTorch's BEST_checkpoint.tar "
                             "(run_all.sh --public-teacher PATH)")

    @property
    def shipped_path(self) -> Path:
        """The shipped checkpoint of load mode: ``shipped_checkpoint``, else
        ``matting_lib/assets/teacher-<profile>.pt``."""
        return repo_path(self.shipped_checkpoint or f"matting_lib/assets/teacher-{self.profile}.pt")

    @property
    def train_dir(self) -> Path:
        """The folder the teacher trains in (train mode): ``run_dir/train``."""
        return repo_path(self.run_dir) / "train"

    def record(self) -> dict[str, Any]:
        """Every parameter as stored in ``teacher.pt`` and the manifest (shipped path resolved)."""
        return {**fields_record(self), "shipped_checkpoint": str(self.shipped_path)}


def get_teacher(p: TeacherParams, layout) -> tuple[nn.Module, Any, dict | None]:
    """The teacher of ``p.mode``: (model, :class:`~matting_lib.training.loop.TrainResult` or None, the shipped
    manifest or None). Train mode resumes ``run_dir/train`` when it holds the same training (settings and data,
    :mod:`matting_lib.training.run_identity`); any other folder there is moved aside first. With ``ddp_processes``
    above 1 the training runs as that many torchrun processes (:func:`launch_ddp`)."""
    if p.mode == "train":
        result = (train_network(p, p.train_dir, layout.root, network="teacher") if p.ddp_processes == 1
                  else launch_ddp(p))
        return checkpoints.load_model(result.best_path, kind="teacher"), result, None
    if p.mode == "load":
        shipped = p.shipped_path
        if not shipped.is_file():
            raise FileNotFoundError(f"no shipped teacher at {shipped}; train one with mode='train' "
                                    f"(./run_all.sh --retrain-teacher) or give shipped_checkpoint")
        manifest = checkpoints.check_manifest(shipped) if checkpoints.manifest_path(shipped).is_file() else None
        return checkpoints.load_model(shipped, kind="teacher"), None, manifest
    return checkpoints.import_dim_pytorch_teacher(p.public_checkpoint), None, None


# ------------------------------------------------------------------------------------------ several processes
def ddp_command(p: TeacherParams, processes: int) -> list[str]:
    """The ``torchrun`` command line of :func:`launch` (one node, ``processes`` processes)."""
    options = [f"--{f.name.replace('_', '-')}={getattr(p, f.name)}" for f in dataclasses.fields(p)
               if f.name not in ("mode", "ddp_processes")]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "matting_lib.training.train_ddp", *options, "--no-progress"]


def result_of(run_dir, wall_s: float) -> TrainResult:
    """The :class:`TrainResult` of a training folder, read from its ``last.pt``."""
    run_dir = repo_path(run_dir)
    ckpt = checkpoints.load_checkpoint(run_dir / "last.pt")
    extra, total = ckpt["extra"], int(ckpt["config"]["steps"])
    return TrainResult(run_dir, ckpt["step"], total, ckpt["epoch"], extra["best_val_loss"], extra["best_step"],
                       extra["last_val_loss"], ckpt["metrics"].get("train_loss"), wall_s,
                       interrupted=ckpt["step"] < total)


def launch_ddp(p: TeacherParams, processes: int | None = None, *, log=print) -> TrainResult:
    """Run the training of ``p`` as ``processes`` (default ``p.ddp_processes``) torchrun processes on this node,
    printing their output; returns its result. Raises ``RuntimeError`` when torchrun fails."""
    n = processes or p.ddp_processes
    cmd = ddp_command(p, n)
    log(f"DDP: {n} processes × batch {p.batch_size} = {n * p.batch_size} samples per step: {' '.join(cmd[1:6])} ...")
    t0 = time.time()
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log(line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"the DDP training ({' '.join(cmd)}) exited with code {proc.returncode}; its output is "
                           f"above. Rerun to resume it from {p.train_dir / 'last.pt'}")
    return result_of(p.train_dir, time.time() - t0)


def check_against_manifest(manifest: Mapping[str, Any] | None, mean: Mapping[str, float],
                           n_images: int) -> dict[str, float] | None:
    """Relative differences of the re-evaluated official metrics ``mean`` from the manifest's, or None when there
    is no manifest or it was measured on another number of test images. Raises ``ValueError`` above 1e-3: the
    shipped teacher or the test set is not what the manifest describes."""
    if manifest is None or manifest.get("test_images") != n_images:
        return None
    stored = manifest["metrics"]["official"]
    off = {m: abs(mean[m] - stored[m]) / max(abs(stored[m]), 1e-12) for m in METRIC_KEYS}
    if max(off.values()) >= 1e-3:
        raise ValueError(f"the re-evaluated test metrics differ from the manifest's {manifest.get('file')} by "
                         f"{off} (relative); the test set or the checkpoint is not the one the manifest describes")
    return off


def save_teacher(p: TeacherParams, teacher: nn.Module, scores: Mapping[str, Mapping], n_images: int, result=None,
                 layout=None) -> dict[str, Any]:
    """Write ``run_dir/teacher.pt`` (read by notebook 03), ``run_dir/metrics.json`` and, after a training, the
    provenance manifest beside ``teacher.pt`` (``checkpoints.ship`` copies it with the checkpoint). Returns
    the metrics record."""
    run = repo_path(p.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    params = p.record()
    ckpt = checkpoints.save_checkpoint(run / "teacher.pt", model=teacher, config=params, epoch=0,
                                       step=result.step if result else 0, metrics=scores["official"]["mean"])
    record = {"config": "teacher", "kind": "teacher", "seed": p.seed, "mode": p.mode, "profile": p.profile,
              "width": teacher.arch["width"], "params": count_parameters(teacher), "test_images": n_images,
              "metrics": {conv: s["mean"] for conv, s in scores.items()}, "checkpoint": ckpt.name}
    if p.mode == "train":
        data_manifest = layout.root / "manifest.json"
        record["dataset_manifest_sha256"] = sha256_file(data_manifest) if data_manifest.is_file() else None
        # the data's content identity, as calibration.ship_teacher records it: layout.compare_training_data reads it
        # first (the manifest.json hash above also changes with the environment fields that file lists)
        checkpoints.write_manifest(ckpt, **{k: v for k, v in record.items() if k != "checkpoint"}, parameters=params,
                                   dataset=dataset_identity(layout), steps=result.step, best_step=result.best_step,
                                   best_val_loss=result.best_val_loss)
    atomic_write_text(run / "metrics.json", json.dumps(record, indent=2) + "\n")
    return record
