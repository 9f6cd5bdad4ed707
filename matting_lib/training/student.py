"""Notebook 03's student: its parameters (:class:`DistillRunParams`: the shared training settings, the distillation
configuration, its inputs and outputs) and the ``metrics.json`` record notebook 04 collects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from matting_lib.distillation.distill import DistillConfig, config_label, make_config, run_name
from matting_lib.networks.models import count_parameters
from matting_lib.params import check_counts, param
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

    # the default profile's values: one thread per run (numbers independent of -j), averaged weights
    threads: int = override(TrainSettings, "threads", 1, "torch threads (0: the torch default; the default profile's "
                                                          "students use 1)")
    ema_decay: float = override(TrainSettings, "ema_decay", 0.98)
    profile: str = param("default", "pipeline profile (recorded in metrics.json)")
    config: str = param("spatial+channel", "a configuration of distill.CONFIGS, e.g. student (no KD), ofd, "
                                           "spatial+channel")
    types: str = param("", "override the distillation types, e.g. spatial,channel (empty: those of config)")
    layers: str = param("", "override the distilled layers, e.g. conv3-5,dconv5 (empty: conv2-5, encoder stages "
                            "2-5)")
    weights: str = param("", "override the weights, one per type, e.g. 1,1 (empty: those of config)")
    teacher_alpha_weight: float = param(-1.0, "w1 of the teacher-alpha term (paper: 0.5); negative: that of config")
    spatial_mode: str = param("auto", "spatial loss: auto | explicit (HW x HW matrices) | efficient (C x C only)")
    max_test_images: int = param(0, "evaluate only the first N test composites (0: all)")
    n_qualitative: int = param(3, "test images in the qualitative comparison")
    teacher_checkpoint: str = param("runs/default/teacher/teacher.pt", "the teacher written by notebook 02")
    teacher_cache_dir: str = param("", "share the teacher forward between the runs of a seed here (empty: off)")
    batch_cache_dir: str = param("", "share the composed training batches between the runs of a seed here (empty: "
                                     "off)")
    data_dir: str = param("data/synthetic-comp1k", "dataset root in the shared Adobe layout")
    runs_dir: str = param("runs/default/students", "the run folder runs_dir/<run name> is created here")
    figures_dir: str = param("figures/default", "this notebook's figures go here")

    def __post_init__(self) -> None:
        super().__post_init__()
        _ = self.distill_config  # validates the configuration and its overrides (raises naming the bad value)
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
