"""One way to train a network of this project, from its settings: the teacher (notebook 02, DDP included), every
student (notebook 03, the protocol study) and the calibration runs all call :func:`train_network` (or
:func:`build_training` and then :meth:`Training.run`, to look at the pieces first, as notebook 03 does).

In order: torch threads (``settings.threads``; 0 = torch's default),
:func:`~matting_lib.training.seeding.seed_everything`, the training and validation sets
(:func:`matting_lib.data.datasets.train_val_sets`), the frozen teacher when the distillation uses one, the network
(initialised from the seed), the objective (:class:`AlphaObjective`, or
:class:`~matting_lib.distillation.distill.DistillObjective` with its adapters and the shared teacher cache), the run
folder made ready for this training (:func:`matting_lib.training.run_identity.prepare_run_dir`: resumed when it holds
the same training, moved aside otherwise), the shared batch cache, then the loop
(:func:`matting_lib.training.loop.train`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from matting_lib.data.batch_cache import BatchCache
from matting_lib.data.datasets import train_val_sets
from matting_lib.data.layout import DatasetLayout
from matting_lib.distillation.distill import DistillConfig, DistillObjective, config_label, teacher_cache_for
from matting_lib.networks import checkpoints
from matting_lib.networks.models import build_model
from matting_lib.paths import repo_path
from matting_lib.settings import TrainConfig, TrainSettings
from matting_lib.training import run_identity
from matting_lib.training.loop import AlphaObjective, TrainResult, setup_distributed, train
from matting_lib.training.seeding import seed_everything


@dataclass
class Training:
    """One training, built and ready to run: the network, its objective, the data, the loop's settings and the run
    folder (already prepared for this training)."""

    model: nn.Module
    objective: nn.Module
    train_set: Dataset
    val_set: Dataset
    config: TrainConfig
    run_dir: Path
    teacher: nn.Module | None = None  # the frozen teacher: distilled from, or shown beside a no-KD student
    batch_cache: BatchCache | None = None
    folder: str = "new"  # what prepare_run_dir found: "new", "resume" or "stale" (moved aside)
    own_process_group: bool = field(default=False, repr=False)

    def run(self, callbacks: Sequence[Callable[[int, nn.Module, dict], None]] = ()) -> TrainResult:
        """Train (or resume, or find complete) into :attr:`run_dir`; see :func:`matting_lib.training.loop.train`."""
        try:
            return train(self.model, self.objective, self.train_set, self.val_set, self.config, self.run_dir,
                         callbacks=callbacks, batch_cache=self.batch_cache)
        finally:
            if self.own_process_group:
                dist.destroy_process_group()


def load_teacher(teacher_checkpoint: str | os.PathLike | None, distill: DistillConfig) -> nn.Module:
    """The frozen teacher a distillation configuration needs, or ``FileNotFoundError`` saying how to make it."""
    path = repo_path(teacher_checkpoint) if teacher_checkpoint else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"configuration {config_label(distill)!r} needs the teacher {path}; run notebook 02 "
                                f"first (./run_all.sh --only teacher) or set teacher_checkpoint")
    return checkpoints.load_model(path, kind="teacher")


def build_training(settings: TrainSettings, run_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                   network: str = "student", distill: DistillConfig | None = None,
                   teacher_checkpoint: str | os.PathLike | None = None, teacher_cache_dir: str | os.PathLike = "",
                   batch_cache_dir: str | os.PathLike = "", identity: str = "", log: Callable[[str], Any] = print,
                   **loop: Any) -> Training:
    """Everything one training needs, from its settings (see the module docstring for the order).

    settings: the shared training settings (:class:`matting_lib.settings.TrainSettings` or a subclass: a notebook's
    parameters, a calibration run); network: ``teacher`` or ``student``; distill: the student's distillation
    configuration (None: the alpha loss alone, :class:`AlphaObjective`); teacher_checkpoint: the teacher it distils
    from; teacher_cache_dir / batch_cache_dir: the caches shared by the runs of a seed ("" = off); identity: the
    ``kind`` of the run's identity (default: the network); log: where the run folder's fate is said; loop: further
    :class:`~matting_lib.settings.TrainConfig` fields (``snapshot_every``, ``stop_after_steps``, ``progress``).
    """
    own_group = setup_distributed("auto")[3]  # joined before the run folder is read: rank 0 alone prepares it
    if settings.threads:
        torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    layout = DatasetLayout.for_root(data_dir)
    train_set, val_set = train_val_sets(layout, **settings.dataset_args())
    teacher_path = repo_path(teacher_checkpoint) if teacher_checkpoint else None
    uses_teacher = distill is not None and distill.uses_teacher
    # the teacher also for a student that does not distil from it: it is then only shown beside it
    teacher = load_teacher(teacher_path, distill) if uses_teacher else (
        checkpoints.load_model(teacher_path, kind="teacher") if teacher_path and teacher_path.is_file() else None)
    seed_everything(settings.seed)  # the initial weights are a function of the seed alone, with or without a teacher
    model = build_model(network, settings.width)
    if distill is None:
        objective = AlphaObjective()
    else:
        cache = teacher_cache_for(repo_path(teacher_cache_dir), teacher_path) \
            if teacher_cache_dir and uses_teacher else None
        objective = DistillObjective(teacher if uses_teacher else None, model, distill, teacher_cache=cache)
    ident = run_identity.identity_of(identity or network, settings, data_dir=layout.root, distill=distill,
                                     teacher_checkpoint=teacher_path)
    run_dir = repo_path(run_dir)
    folder = "shared"
    if not dist.is_initialized() or dist.get_rank() == 0:
        folder = run_identity.prepare_run_dir(run_dir, ident, settings=settings, log=log)
    if dist.is_initialized():
        dist.barrier()
    batches = BatchCache(repo_path(batch_cache_dir)) if batch_cache_dir else None
    return Training(model, objective, train_set, val_set, settings.to_train_config(**loop), run_dir, teacher,
                    batches, folder, own_group)


def train_network(settings: TrainSettings, run_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
                  callbacks: Sequence[Callable[[int, nn.Module, dict], None]] = (), **options: Any) -> TrainResult:
    """Build the training of ``settings`` (:func:`build_training`, same ``options``) and run it."""
    return build_training(settings, run_dir, data_dir, **options).run(callbacks)
