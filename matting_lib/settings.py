"""The settings of one training, in one place: :class:`TrainSettings`, shared by the teacher (notebook 02,
:class:`matting_lib.training.teacher.TeacherParams`), the students (notebook 03,
:class:`matting_lib.training.student.DistillRunParams`) and the calibration study
(:class:`matting_lib.studies.calibration.RunSettings`), which extend it with their own fields.

Adding a training hyperparameter is one field here (plus the notebooks' ``parameters`` cells, which a test keeps
equal to their dataclasses, and a profile line if a profile sets it). Whether a field belongs to a run's identity
(:mod:`matting_lib.training.run_identity`: a changed value moves the old run aside and trains afresh) is marked on the
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

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from matting_lib.params import HELP, check_counts, parse_decay_steps

#: The metadata key of a settings field that says whether it belongs to a run's identity: True, False or "target".
IDENTITY = "identity"


def setting(default: Any, help: str = "", *, identity: bool | str = True) -> Any:
    """A settings field with its help text (:data:`matting_lib.params.HELP`) and identity marking (see the module
    docstring)."""
    return field(default=default, metadata={IDENTITY: identity, HELP: help})


def override(cls: type, name: str, default: Any, help: str = "") -> Any:
    """Field ``name`` of the settings dataclass ``cls`` with another default (and help text, if given) and the same
    identity marking: how a subclass (the teacher's parameters, a calibration run) sets its own defaults."""
    metadata = dict(cls.__dataclass_fields__[name].metadata)
    return field(default=default, metadata={**metadata, HELP: help} if help else metadata)


@dataclass(frozen=True)
class TrainSettings:
    """What is trained and how: network width, data, optimiser, schedule, validation, seeds (primitives only)."""

    width: float = setting(0.25, "channel width (1.0: the paper's networks; a student takes its teacher's width)")
    crop_size: int = setting(96, "training crop side in pixels (paper: 320)")
    batch_size: int = setting(16, "training batch size (paper: 16)")
    lr: float = setting(0.01, "Adam learning rate (paper: 0.01)")
    lr_decay: str = setting("", "optimiser steps after which the lr drops tenfold, e.g. 1500,1800 (paper: none)")
    lr_schedule: str = setting("step", '"step" (lr_decay; none: constant, the paper) | "cosine" (to 0 at the last '
                                       'step)')
    ema_decay: float = setting(0.0, "> 0: evaluate an exponential moving average of the weights (0: off, the paper)")
    steps: int = setting(500, "optimiser steps", identity="target")
    epoch_length: int = setting(0, "training samples per epoch (0: every foreground/background pair once)")
    val_fraction: float = setting(0.1, "share of training foregrounds held out for validation")
    split_seed: int = setting(0, "train/validation split and validation crops (shared by all runs of a profile)")
    val_samples: int = setting(64, "validation crops (fixed) used to pick the best checkpoint")
    val_every: int = setting(100, "validate every N steps")
    seed: int = setting(0, "initialisation and data order")
    num_workers: int = setting(0, "DataLoader worker processes", identity=False)
    threads: int = setting(0, "torch threads (0: the torch default)", identity=False)

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
        """The :class:`matting_lib.settings.TrainConfig` of these settings; ``extra`` sets the loop's other fields
        (``snapshot_every``, ``stop_after_steps``, ``progress``)."""
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
        """The keyword arguments of :func:`matting_lib.data.datasets.train_val_sets` (and ``training.train_alpha``)."""
        return {"crop_size": self.crop_size, "seed": self.seed, "split_seed": self.split_seed,
                "val_fraction": self.val_fraction, "val_samples": self.val_samples, "epoch_length": self.epoch_length}


# ------------------------------------------------------------------------------------------ the loop's settings
LR_SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training parameters (plain data; stored in every checkpoint). Every profile counts optimiser steps (the
    paper's 30 epochs are ``steps = 80813`` in ``profiles/paper.toml``), so ``steps`` is required."""

    steps: int = field(
        metadata={IDENTITY: "target"}
    )  # total optimiser steps (an epoch = len(train_set) // (batch_size · world size) steps)
    lr: float = setting(0.01)  # Adam learning rate (the paper's, constant)
    lr_decay_steps: tuple[int, ...] = setting(
        ()
    )  # global steps after which the lr is multiplied by lr_gamma; () = constant
    lr_gamma: float = setting(0.1)
    lr_schedule: str = setting(
        "step"
    )  # "step": lr_decay_steps (none = constant); "cosine": from lr to 0 over ``steps``
    ema_decay: float = setting(0.0)  # > 0: validate and keep (best.pt) an exponential moving average of the weights
    batch_size: int = setting(16)  # per process
    grad_clamp: float | None = setting(5.0)  # element-wise gradient clamp; None = off
    val_every: int = setting(0)  # validate every N steps; 0 = at the end of every epoch. Always at the last step.
    checkpoint_every: int = 0  # last.pt every N steps; 0 = at every validation. Always at the end.
    snapshot_every: int = 0  # keep snapshots/step-NNNNNNN.pt (full, resumable) every N steps; 0 = none
    seed: int = setting(0)
    num_workers: int = 0  # DataLoader workers
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    progress: bool = True  # tqdm progress bar
    stop_after_steps: int | None = None  # stop after this global step as if interrupted (resume later)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"TrainConfig.steps must be an integer ≥ 1, got {self.steps!r}")
        for name in ("batch_size", "stop_after_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"TrainConfig.{name} must be ≥ 1 or None, got {v}")
        for name in ("val_every", "checkpoint_every", "snapshot_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        decay = tuple(self.lr_decay_steps)
        if any(not isinstance(d, int) or d < 1 for d in decay) or list(decay) != sorted(set(decay)):
            raise ValueError(f"TrainConfig.lr_decay_steps must be increasing steps ≥ 1, got {self.lr_decay_steps!r}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"TrainConfig.lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule={self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if self.lr_schedule == "cosine" and decay:
            raise ValueError(f"TrainConfig: lr_schedule='cosine' with lr_decay_steps {decay}; give one or the other")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        object.__setattr__(self, "lr_decay_steps", decay)  # lists from notebooks/TOML become tuples

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (1-based): ``lr`` times ``lr_gamma`` per decay step passed, or
        for ``cosine`` the closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` (T_max = ``steps``,
        eta_min = 0) at ``step - 1``. Stateless, so a resumed run continues the schedule exactly."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / self.steps))
        return self.lr * self.lr_gamma ** sum(step > d for d in self.lr_decay_steps)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any], source: str | os.PathLike = "checkpoint") -> TrainConfig:
        """The TrainConfig of a checkpoint's ``config`` dict, also one written before fields were removed.

        A removed field (:data:`REMOVED_FIELDS`) is dropped when it holds the value under which the old loop did
        what this one does; any other value is refused, naming ``source`` and the field, since this loop cannot
        honour it. Missing fields take their defaults (configs older than a field)."""
        stored = dict(stored)
        for name, same in REMOVED_FIELDS.items():
            if name in stored:
                value = stored.pop(name)
                # val_batch_size = batch_size validated exactly as the default (None → batch_size) does
                if value != same and not (name == "val_batch_size" and value == stored.get("batch_size")):
                    raise ValueError(f"{source}: its training config has {name} = {value!r}, which this version of "
                                     f"matting_lib cannot honour (TrainConfig.{name} was removed; only {same!r} "
                                     f"is the behaviour kept). Resume it with the matting_lib version that wrote "
                                     f"it, or start afresh in a new run directory")
        unknown = sorted(set(stored) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{source}: unknown training config field(s) {unknown}; valid: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        if stored.get("steps") is None:
            raise ValueError(f"{source}: its training config has steps = None (the old default of 30 epochs); "
                             f"TrainConfig counts optimiser steps only, so this run cannot be resumed here")
        try:
            return cls(**stored)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


# Fields of older TrainConfig versions (nothing set them), with the value under which that loop behaved as this
# one: checkpoints written by those versions still carry them (e.g. a long run being resumed), see
# TrainConfig.from_stored.
REMOVED_FIELDS: dict[str, Any] = {
    "epochs": None,  # steps counted instead (every profile gives steps)
    "weight_decay": 0.0,  # Adam without weight decay
    "val_batch_size": None,  # validation batches of batch_size
    "max_val_batches": None,  # the whole validation set
    "log_every": 1,  # a log.csv row per step
}
