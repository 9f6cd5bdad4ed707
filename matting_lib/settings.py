"""The settings of one training, in one place: :class:`TrainSettings`, shared by the teacher (notebook 02,
:class:`matting_lib.teacher.TeacherParams`), the students (notebook 03, :class:`matting_lib.distill.DistillRunParams`)
and the calibration study (:class:`matting_lib.calibration.RunSettings`), which extend it with their own fields.

Adding a training hyperparameter is one field here (plus the notebooks' ``parameters`` cells, which a test keeps
equal to their dataclasses, and a profile line if a profile sets it). Whether a field belongs to a run's identity
(:mod:`matting_lib.run_identity`: a changed value moves the old run aside and trains afresh) is marked on the
field, ``metadata={"identity": ...}``:

* ``True`` — part of the identity (everything that changes the weights a training produces);
* ``False`` — not (threads, DataLoader workers, output paths: they do not change what is trained);
* ``"target"`` — the training's length (``steps``): a finished or interrupted run is *continued* to a larger
  target, since the loop resumes exactly and a constant or step-wise learning rate does not depend on the total;
  a smaller target trains afresh.

Defaults are the default profile's (``profiles/default.toml``, ``[distill]``), so a notebook opened by hand
trains what ``./run_all.sh`` trains (tested); the teacher's and calibration's own defaults are set with
:func:`override`, which keeps the field's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .run_identity import IDENTITY  # the key the identity reads the marking under
from .utils import check_counts, parse_decay_steps


def setting(default: Any, *, identity: bool | str = True) -> Any:
    """A settings field with its identity marking (see the module docstring)."""
    return field(default=default, metadata={IDENTITY: identity})


def override(cls: type, name: str, default: Any) -> Any:
    """Field ``name`` of the settings dataclass ``cls`` with another default and the same identity marking: how a
    subclass (the teacher's parameters, a calibration run) sets its own defaults."""
    return field(default=default, metadata=dict(cls.__dataclass_fields__[name].metadata))


@dataclass(frozen=True)
class TrainSettings:
    """What is trained and how: network width, data, optimiser, schedule, validation, seeds (primitives only)."""

    width: float = setting(0.25)  # channel width (1.0: the paper's networks)
    crop_size: int = setting(96)  # training crop side in pixels (paper: 320)
    batch_size: int = setting(16)  # training batch size (paper: 16)
    lr: float = setting(0.01)  # Adam learning rate (paper: 0.01, constant)
    lr_decay: str = setting("")  # optimiser steps after which the lr drops tenfold, e.g. "1500,1800" (paper: none)
    lr_schedule: str = setting("step")  # "step" (lr_decay; none = constant, the paper's) | "cosine" (to 0 at steps)
    ema_decay: float = setting(0.0)  # > 0: evaluate an exponential moving average of the weights (0: off, the paper)
    steps: int = setting(500, identity="target")  # optimiser steps
    epoch_length: int = setting(0)  # training samples per epoch (0: every foreground/background pair once)
    val_fraction: float = setting(0.1)  # share of training foregrounds held out for validation
    split_seed: int = setting(0)  # train/validation split and validation crops (shared by the runs of a study)
    val_samples: int = setting(64)  # fixed validation crops that pick the best checkpoint
    val_every: int = setting(100)  # validate every N steps
    seed: int = setting(0)  # initialisation and data order
    num_workers: int = setting(0, identity=False)  # DataLoader worker processes
    threads: int = setting(0, identity=False)  # torch threads (0: torch's default)

    def __post_init__(self) -> None:
        check_counts(self, at_least_1=("crop_size", "batch_size", "steps", "val_samples"),
                     at_least_0=("epoch_length", "val_every", "num_workers", "threads", "seed", "split_seed"))
        if not (self.width > 0 and self.lr > 0 and 0 < self.val_fraction < 1):
            raise ValueError(f"width and lr must be > 0 and val_fraction in (0, 1), got width={self.width}, "
                             f"lr={self.lr}, val_fraction={self.val_fraction}")
        self.to_train_config()  # validates the schedule (decay steps, cosine, EMA decay) as the loop will

    @property
    def lr_decay_steps(self) -> tuple[int, ...]:
        return parse_decay_steps(self.lr_decay)

    def to_train_config(self, **extra: Any):
        """The :class:`matting_lib.training.TrainConfig` of these settings; ``extra`` sets the loop's other fields
        (``snapshot_every``, ``stop_after_steps``, ``progress``)."""
        from .training import TrainConfig

        return TrainConfig(steps=self.steps, lr=self.lr, lr_decay_steps=self.lr_decay_steps,
                           lr_schedule=self.lr_schedule, ema_decay=self.ema_decay, batch_size=self.batch_size,
                           val_every=self.val_every, seed=self.seed, num_workers=self.num_workers, **extra)

    @property
    def extendable(self) -> bool:
        """Whether a finished run of these settings continued to more steps equals a fresh longer run: the schedule
        does not depend on the total, and the last step was a regular validation step (the loop also validates
        at the final step, which picks ``best.pt``)."""
        return self.lr_schedule == "step" and self.val_every > 0 and self.steps % self.val_every == 0

    def dataset_args(self) -> dict[str, Any]:
        """The keyword arguments of :func:`matting_lib.datasets.train_val_sets` (and ``training.train_alpha``)."""
        return {"crop_size": self.crop_size, "seed": self.seed, "split_seed": self.split_seed,
                "val_fraction": self.val_fraction, "val_samples": self.val_samples, "epoch_length": self.epoch_length}
