"""One training loop for the teacher and every student (docs/paper_notes.md §4), resumable and DDP-ready.

Loss: :func:`matting_lib.losses.alpha_loss` (DIM-PyTorch ``utils.alpha_prediction_loss``; Xu et al., CVPR 2017,
eq. 1), Σ sqrt(((α̂ − α)·m)² + 1e-12) / (Σ m + 1e-6), m = unknown region of the trimap.

An *objective* is an ``nn.Module`` with ``forward(model, batch) -> (loss, logs: dict[str, float])``; its own
parameters (e.g. distillation adapters) are optimised with the model and checkpointed under ``"objective"``.
:class:`AlphaObjective` is the plain one. ``batch`` is the dataset's dict (keys of :mod:`matting_lib.datasets`)
with every tensor already on the training device; the objective is moved with ``objective.to(device)``.

:func:`train`: Adam (lr 0.01 by default, constant as in the paper or step-decayed with ``lr_decay_steps``),
gradients clamped element-wise to ±``grad_clamp`` (as the original ``clip_gradient``), a number of steps,
validation by alpha loss against the ground truth, ``best.pt`` (weights of the lowest validation loss),
``last.pt`` (everything needed to resume: optimizer, objective, RNG states, step),
``log.csv`` (one row per step) and a tqdm progress bar. A run directory that
holds ``last.pt`` is resumed; on CPU an interrupted-then-resumed run equals an uninterrupted one bit for bit:
the data order is a function of (seed, epoch) only (``DistributedSampler`` seeded per epoch, mid-epoch resume
skips indices, not samples), ``train_set.set_epoch(epoch)`` is called when the dataset has it (datasets should
draw their augmentation from (seed, epoch, index)), and DataLoader worker seeds derive from (seed, epoch).

Under ``torchrun --nproc_per_node N`` (environment variables ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_*``)
the same function runs DistributedDataParallel: NCCL on GPUs, gloo on CPU, each rank a 1/N shard of every
epoch (``batch_size`` is per rank), objective gradients all-reduced by hand, validation and all writing on rank
0. BatchNorm statistics stay per rank; DDP broadcasts rank 0's buffers at every forward.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, save_checkpoint, unwrap
from .losses import alpha_loss, unknown_mask
from .utils import atomic_write_text, seed_everything, worker_init_fn


# ------------------------------------------------------------------------------------------ objective
class AlphaObjective(nn.Module):
    """The alpha loss against the ground truth (:func:`matting_lib.losses.alpha_loss`), as DIM-PyTorch and the
    paper's code train (neither uses DIM's compositional loss)."""

    def forward(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        pred = model(batch["input"])  # (N, 1, H, W)
        loss = alpha_loss(pred, batch["alpha"], unknown_mask(batch["trimap"]))
        return loss, {"alpha": loss.item()}


# ------------------------------------------------------------------------------------------ configuration
LR_SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training parameters (plain data; stored in every checkpoint). Every profile counts optimiser steps (the
    paper's 30 epochs are ``steps = 80813`` in ``profiles/paper.toml``), so ``steps`` is required."""

    steps: int  # total optimiser steps (an epoch = len(train_set) // (batch_size · world size) steps)
    lr: float = 0.01  # Adam learning rate (the paper's, constant)
    lr_decay_steps: tuple[int, ...] = ()  # global steps after which the lr is multiplied by lr_gamma; () = constant
    lr_gamma: float = 0.1
    lr_schedule: str = "step"  # "step": lr_decay_steps (none = constant); "cosine": from lr to 0 over ``steps``
    ema_decay: float = 0.0  # > 0: validate and keep (best.pt) an exponential moving average of the weights
    batch_size: int = 16  # per process
    grad_clamp: float | None = 5.0  # element-wise gradient clamp; None = off
    val_every: int = 0  # validate every N steps; 0 = at the end of every epoch. Always at the last step.
    checkpoint_every: int = 0  # last.pt every N steps; 0 = at every validation. Always at the end.
    snapshot_every: int = 0  # keep snapshots/step-NNNNNNN.pt (full, resumable) every N steps; 0 = none
    seed: int = 0
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


# Keys that must not change when a run directory is resumed (the others may, e.g. more steps).
_RESUME_KEYS = ("lr", "batch_size", "grad_clamp", "seed", "lr_gamma", "lr_schedule", "ema_decay")


@dataclass
class TrainResult:
    """What :func:`train` did; the files are in ``run_dir``."""

    run_dir: Path
    step: int
    total_steps: int
    epoch: int
    best_val_loss: float | None
    best_step: int | None
    last_val_loss: float | None
    last_loss: float | None
    wall_s: float
    interrupted: bool

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log.csv"


# ------------------------------------------------------------------------------------------ helpers
def snapshot_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``run_dir/snapshots/step-NNNNNNN.pt``: the full training state after optimiser step ``step``."""
    return Path(run_dir) / "snapshots" / f"step-{step:07d}.pt"


def list_snapshots(run_dir: str | os.PathLike) -> dict[int, Path]:
    """{step: path} of a run's snapshots (see :attr:`TrainConfig.snapshot_every`), in step order."""
    found = {}
    for path in sorted((Path(run_dir) / "snapshots").glob("step-*.pt")):
        stem = path.stem.removeprefix("step-")
        if stem.isdigit():
            found[int(stem)] = path
    return found


class _SkipSampler(Sampler):
    """The indices of ``base`` after the first ``skip`` (resuming mid-epoch without loading skipped samples)."""

    def __init__(self, base: Sampler, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA if available else CPU; anything else → ``torch.device(device)``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


def checked_device(name: str, option: str = "--device") -> torch.device:
    """:func:`resolve_device` for a command-line option: a malformed name, or a GPU that is not there, raises a
    ``ValueError`` naming ``option`` now, not a torch error later."""
    try:
        device = resolve_device(name)
        if device.type != "cpu":
            torch.zeros(1, device=device)  # no driver, no such GPU
        return device
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"{option} {name}: {(str(err).strip().splitlines() or [''])[0]} (use auto, cpu, cuda or "
                         f"cuda:N)") from None


def _setup_distributed(device: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether we created the process group) from torchrun's environment."""
    dev = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not dist.is_initialized():
        return 0, 1, dev, False
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), dev, created


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _batch_loader(dataset: Dataset, batches: list[list[int]], epoch: int, batch_cache, *, num_workers: int,
                  generator: torch.Generator, pin_memory: bool = False) -> DataLoader:
    """The DataLoader of ``batches`` (lists of sample indices), each read from ``batch_cache`` or composed there:
    the same batches a ``DataLoader(dataset, batch_size, sampler)`` makes, one cache entry per batch."""
    return DataLoader(batch_cache.view(dataset, batches, epoch), batch_size=None, shuffle=False,
                      num_workers=num_workers, worker_init_fn=worker_init_fn, generator=generator,
                      pin_memory=pin_memory)


@torch.no_grad()
def validate(model: nn.Module, val_set: Dataset, *, batch_size: int = 1, device: torch.device | str | None = None,
             num_workers: int = 0, batch_cache=None) -> float:
    """Mean over batches of the alpha loss against the ground truth, model in eval mode (restored after).
    ``batch_cache`` (:class:`matting_lib.batch_cache.BatchCache`): read the validation batches from it."""
    model = unwrap(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    if batch_cache is None:
        loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(0))
    else:
        n = len(val_set)
        loader = _batch_loader(val_set, [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)],
                               getattr(val_set, "epoch", 0), batch_cache, num_workers=num_workers,
                               generator=torch.Generator().manual_seed(0))
    losses = []
    for batch in loader:
        batch = _to_device(batch, device)
        losses.append(alpha_loss(model(batch["input"]), batch["alpha"], unknown_mask(batch["trimap"])).item())
    model.train(was_training)
    if not losses:
        raise ValueError("the validation set is empty")
    return float(np.mean(losses))


class _CsvLog:
    """log.csv writer; on resume keeps only the rows up to the resumed step."""

    def __init__(self, path: Path, resume_step: int):
        self.path, self.fields, self.fh = path, None, None
        if path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
                self.fields = list(rows[0]) if rows else None
            if rows:
                lines = [",".join(self.fields)] + [",".join(r[f] or "" for f in self.fields) for r in rows]
                atomic_write_text(path, "\n".join(lines) + "\n")
            else:
                path.unlink()

    def write(self, row: dict) -> None:
        if self.fh is None:
            self.fields = self.fields or list(row)
            new = not self.path.is_file()
            self.fh = self.path.open("a", newline="")
            self.writer = csv.DictWriter(self.fh, self.fields, extrasaction="ignore")
            if new:
                self.writer.writeheader()
        self.writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


# ------------------------------------------------------------------------------------------ the loop
def train(model: nn.Module, objective: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig,
          run_dir: str | os.PathLike, *,
          callbacks: Sequence[Callable[[int, nn.Module, dict], None]] = (), batch_cache=None) -> TrainResult:
    """Train ``model`` with ``objective`` (see module docstring); resumes from ``run_dir/last.pt`` if present.

    ``callbacks`` are called as ``cb(step, model, logs)`` after every optimiser step (``model`` unwrapped).
    Without a validation set, ``best.pt`` holds the final weights. ``batch_cache``
    (:class:`matting_lib.batch_cache.BatchCache`): read the training and validation batches from it where another
    run of the same seed stored them (identical batches; the datasets need ``cache_identity()``).
    """
    t0 = time.time()
    run_dir = Path(run_dir)
    rank, world, device, own_group = _setup_distributed(config.device)
    main = rank == 0
    log = None
    try:
        seed_everything(config.seed)
        model.to(device)
        objective.to(device)
        params = list({id(p): p for p in itertools.chain(model.parameters(), objective.parameters())
                       if p.requires_grad}.values())
        obj_params = [p for p in objective.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=config.lr)
        # the averaged weights (torch.optim.swa_utils, BatchNorm statistics averaged too): validated and kept
        ema = (AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
               if config.ema_decay > 0 else None)

        per_rank = len(train_set) // world
        steps_per_epoch = per_rank // config.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"the training set has {len(train_set)} samples, fewer than batch_size × processes = "
                             f"{config.batch_size} × {world}; lower the batch size or enlarge the set")
        total = config.steps
        step, best, best_step, last_val, last_loss = 0, math.inf, None, None, None
        cfg = dataclasses.asdict(config)
        if (run_dir / "last.pt").is_file():
            ckpt = load_checkpoint(run_dir / "last.pt", map_location=device)
            stored = dataclasses.asdict(TrainConfig.from_stored(ckpt["config"], run_dir / "last.pt"))
            diff = {k: (stored[k], cfg[k]) for k in _RESUME_KEYS if stored[k] != cfg[k]}
            if diff:
                raise ValueError(f"{run_dir / 'last.pt'} was written with other settings {diff} (stored, given); "
                                 f"use the same settings to resume or a new run_dir to start afresh")
            unwrap(model).load_state_dict(ckpt["model"])
            objective.load_state_dict(ckpt["objective"] or {})
            optimizer.load_state_dict(ckpt["optimizer"])
            if ema is not None:
                ema.load_state_dict(ckpt["averaged"])
            step, extra = ckpt["step"], ckpt["extra"]
            best = extra["best_val_loss"] if extra["best_val_loss"] is not None else math.inf
            best_step, last_val = extra["best_step"], extra["last_val_loss"]
            _set_rng_state(extra["rng"])
        net = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
            for p in obj_params:
                dist.broadcast(p.data, 0)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = _CsvLog(run_dir / "log.csv", step)

        def save(path: Path, *, full: bool) -> None:
            extra = {"best_val_loss": None if best == math.inf else best, "best_step": best_step,
                     "last_val_loss": last_val, "rng": _rng_state(), "world_size": world}
            save_checkpoint(path, model=model, optimizer=optimizer if full else None, objective=objective,
                            config=cfg, epoch=step // steps_per_epoch, step=step,
                            metrics={"val_loss": last_val, "train_loss": last_loss}, extra=extra,
                            averaged=ema if full else None)

        def save_best() -> None:  # the weights that are evaluated: the averaged ones when averaging
            if ema is None:
                return save(run_dir / "best.pt", full=False)
            save_checkpoint(run_dir / "best.pt", model=ema.module, config=cfg, epoch=step // steps_per_epoch,
                            step=step, metrics={"val_loss": last_val, "train_loss": last_loss},
                            extra={"best_val_loss": None if best == math.inf else best, "best_step": best_step,
                                   "averaged": "ema"})

        stop_at = min(total, config.stop_after_steps or total)
        bar = tqdm(total=total, initial=step, desc=f"train {run_dir.name}", disable=not (config.progress and main))
        model.train()
        objective.train()
        while step < stop_at:
            epoch, skip = divmod(step, steps_per_epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed,
                                         drop_last=True)
            sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            if batch_cache is None:
                loader = DataLoader(train_set, batch_size=config.batch_size, drop_last=True,
                                    sampler=_SkipSampler(sampler, skip * config.batch_size),
                                    num_workers=config.num_workers, worker_init_fn=worker_init_fn,
                                    generator=generator, pin_memory=device.type == "cuda")
            else:  # the same batches (drop_last), each read from the cache or composed and stored there
                order, bs = list(_SkipSampler(sampler, skip * config.batch_size)), config.batch_size
                loader = _batch_loader(train_set, [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)],
                                       epoch, batch_cache, num_workers=config.num_workers, generator=generator,
                                       pin_memory=device.type == "cuda")
            for batch in loader:
                loss, logs = objective(net, _to_device(batch, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:  # DDP syncs the model's gradients; the objective's (adapters) are averaged here
                    for p in obj_params:
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                            p.grad /= world
                if config.grad_clamp is not None:
                    for p in params:
                        if p.grad is not None:
                            p.grad.clamp_(-config.grad_clamp, config.grad_clamp)
                lr = config.lr_at(step + 1)  # stateless schedule: a resumed run continues it exactly
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(unwrap(model))
                step += 1
                last_loss = loss.item()
                bar.update(1)
                val_due = val_set is not None and (step == total or (step % config.val_every == 0 if config.val_every
                                                                     else step % steps_per_epoch == 0))
                val_loss = None
                if val_due and main:
                    val_loss = last_val = validate(model if ema is None else ema.module, val_set,
                                                   batch_size=config.batch_size, device=device,
                                                   num_workers=config.num_workers, batch_cache=batch_cache)
                    if val_loss < best:
                        best, best_step = val_loss, step
                        save_best()
                if main:
                    row = {"step": step, "epoch": epoch, "time_s": round(time.time() - t0, 3), "lr": lr,
                           "loss": last_loss}  # loss: this rank's total; then the objective's terms
                    log.write({**row, **{k: v for k, v in logs.items() if k not in row}, "val_loss": val_loss})
                    bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
                for cb in callbacks:
                    cb(step, unwrap(model), logs)
                every = config.checkpoint_every
                ckpt_due = step == stop_at or (step % every == 0 if every else val_due)
                if main and ckpt_due:
                    if val_set is None and step == total:
                        save_best()
                    save(run_dir / "last.pt", full=True)
                if main and config.snapshot_every and step % config.snapshot_every == 0:
                    save(snapshot_path(run_dir, step), full=True)  # a curve point; also resumable (branch_run)
                if step >= stop_at:
                    break
        bar.close()
        if world > 1:  # ranks leave together: a rank tearing gloo down while rank 0 still saves can abort the peer
            dist.barrier()
        return TrainResult(run_dir, step, total, step // steps_per_epoch, None if best == math.inf else best,
                           best_step, last_val, last_loss, time.time() - t0, interrupted=step < total)
    finally:
        if log is not None:
            log.close()
        if own_group:
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ alpha-only training
def train_alpha(model: nn.Module, layout, run_dir: str | os.PathLike, config: TrainConfig, *, crop_size: int,
                seed: int, split_seed: int, val_fraction: float, val_samples: int,
                epoch_length: int = 0) -> TrainResult:
    """Train ``model`` with the alpha loss alone (:class:`AlphaObjective`) on a dataset folder: the teacher of
    notebook 02 and the calibration runs. The sets are :func:`matting_lib.datasets.train_val_sets` of ``layout``
    (a :class:`~matting_lib.layout.DatasetLayout`) with these arguments; then :func:`train` into ``run_dir``."""
    from .datasets import train_val_sets

    train_set, val_set = train_val_sets(layout, crop_size=crop_size, seed=seed, split_seed=split_seed,
                                        val_fraction=val_fraction, val_samples=val_samples, epoch_length=epoch_length)
    return train(model, AlphaObjective(), train_set, val_set, config, run_dir)
