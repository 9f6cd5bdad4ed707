"""Notebook 03's student: its parameters (:class:`DistillRunParams`: the shared training settings, the distillation
configuration, its inputs and outputs) and the ``metrics.json`` record notebook 04 collects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from matting_lib.distillation.distill import DistillConfig, config_label, make_config, run_name
from matting_lib.networks.models import count_parameters
from matting_lib.params import check_counts
from matting_lib.settings import TrainSettings, override
from matting_lib.training.run_identity import record as fields_record


@dataclass(frozen=True)
class DistillRunParams(TrainSettings):
    """Notebook 03's parameters, validated (see the notebook's ``parameters`` cell for their meaning): the shared
    training settings (:class:`matting_lib.settings.TrainSettings`, the default profile's values) plus the
    distillation configuration and the run's inputs and outputs.

    ``config`` names a :data:`PAPER_CONFIGS` entry; ``types``/``layers``/``weights``/``teacher_alpha_weight``
    (< 0: keep) and ``spatial_mode`` override it (:func:`make_config`); the resolved configuration is part of the
    run's identity, not these strings. Paths are relative to the repository.
    """

    threads: int = override(TrainSettings, "threads", 1)  # the default profile's: numbers independent of -j
    ema_decay: float = override(TrainSettings, "ema_decay", 0.98)  # the default profile's (docs/calibration.md)
    profile: str = "default"
    config: str = "spatial+channel"
    types: str = ""
    layers: str = ""
    weights: str = ""
    teacher_alpha_weight: float = -1.0
    spatial_mode: str = "auto"
    max_test_images: int = 0
    n_qualitative: int = 3
    teacher_checkpoint: str = "runs/default/teacher/teacher.pt"
    teacher_cache_dir: str = ""  # matting_lib.distillation.teacher_cache folder shared by the runs of a seed ("" = off)
    batch_cache_dir: str = ""  # matting_lib.data.batch_cache folder shared by the runs of a seed ("" = off)
    data_dir: str = "data/synthetic-comp1k"
    runs_dir: str = "runs/default/students"
    figures_dir: str = "figures/default"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.distill_config  # validates the configuration and its overrides (raises naming the bad value)
        check_counts(self, at_least_0=("max_test_images", "n_qualitative"))

    @property
    def distill_config(self) -> DistillConfig:
        return make_config(self.config, types=self.types, weights=self.weights, layers=self.layers,
                           teacher_alpha_weight=self.teacher_alpha_weight, spatial_mode=self.spatial_mode)

    @property
    def run_name(self) -> str:
        return run_name(self.distill_config, self.seed)


def student_record(p: DistillRunParams, *, student: nn.Module, n_extra: int, scores: Mapping[str, Mapping],
                   n_images: int, result: Any, teacher_checkpoint: Any) -> dict[str, Any]:
    """A student run's ``metrics.json`` record (notebook 04's row): both metric conventions, the configuration and
    every parameter; ``result`` a :class:`matting_lib.training.loop.TrainResult`."""
    cfg = p.distill_config
    return {"config": config_label(cfg), "kind": "student", "seed": p.seed, "profile": p.profile, "run": p.run_name,
            "width": p.width, "params": count_parameters(student), "adapter_params": n_extra,
            "distill": cfg.to_dict(), "test_images": n_images,
            "metrics": {conv: s["mean"] for conv, s in scores.items()}, "steps": result.step,
            "best_step": result.best_step, "best_val_loss": result.best_val_loss, "checkpoint": result.best_path.name,
            "teacher_checkpoint": str(teacher_checkpoint) if cfg.uses_teacher else None,
            "parameters": fields_record(p)}
