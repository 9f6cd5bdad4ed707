"""One training loop for the teacher and every student (docs/paper_notes.md §4), resumable and DDP-ready.

Loss: :func:`matting_lib.networks.losses.alpha_loss` (DIM-PyTorch ``utils.alpha_prediction_loss``; Xu et al., CVPR 2017,
eq. 1), Σ sqrt(((α̂ − α)·m)² + 1e-12) / (Σ m + 1e-6), m = unknown region of the trimap.

An *objective* is an ``nn.Module`` with ``forward(model, batch) -> (loss, logs: dict[str, float])``; its own
parameters (e.g. distillation adapters) are optimised with the model and checkpointed under ``"objective"``.
:class:`AlphaObjective` is the plain one. ``batch`` is the dataset's dict (keys of :mod:`matting_lib.data.datasets`)
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

import dataclasses
import itertools
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from matting_lib.data.datasets import IMAGENET_MEAN, IMAGENET_STD, train_val_sets
from matting_lib.networks.checkpoints import load_checkpoint, save_checkpoint, unwrap
from matting_lib.networks.devices import resolve_device
from matting_lib.networks.losses import alpha_loss, unknown_mask
from matting_lib.settings import IDENTITY, TrainConfig
from matting_lib.training.log import RunLog
from matting_lib.training.seeding import seed_everything, worker_init_fn


# ------------------------------------------------------------------------------------------ objective
class AlphaObjective(nn.Module):
    """The alpha loss against the ground truth (:func:`matting_lib.networks.losses.alpha_loss`), as DIM-PyTorch and the
    paper's code train (neither uses DIM's compositional loss)."""

    def forward(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        pred = model(batch["input"])  # (N, 1, H, W)
        loss = alpha_loss(pred, batch["alpha"], unknown_mask(batch["trimap"]))
        return loss, {"alpha": loss.item()}


#: Settings that must not change when a run directory is resumed: the loop settings marked as identity
#: (:data:`matting_lib.settings.IDENTITY`); the others may change (more steps, another validation interval, ...).
RESUME_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get(IDENTITY) is True)
#: Validation samples shown as images in TensorBoard at every validation.
VAL_MATTES = 4


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


def setup_distributed(device: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call created the process group) from torchrun's environment: under
    ``torchrun`` (``WORLD_SIZE`` > 1) the process group is joined (NCCL on GPUs, gloo on CPU), each rank on its
    ``LOCAL_RANK`` GPU."""
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


def _validation_loader(val_set: Dataset, batch_size: int, num_workers: int, batch_cache) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    if batch_cache is None:
        return DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          worker_init_fn=worker_init_fn, generator=generator)
    n = len(val_set)
    return _batch_loader(val_set, [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)],
                         getattr(val_set, "epoch", 0), batch_cache, num_workers=num_workers, generator=generator)


def validation_mattes(batch: dict, pred: torch.Tensor, n: int = 4) -> torch.Tensor:
    """The first ``n`` samples of a validation ``batch`` as images (n, 3, H, 4W) in [0, 1]: the RGB input (ImageNet
    normalisation undone), the trimap, the ground-truth alpha and the prediction ``pred`` side by side."""
    x = batch["input"][:n].detach().float().cpu()
    mean = torch.as_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    grey = [t[:n].detach().float().cpu().clamp(0, 1).expand(-1, 3, -1, -1)
            for t in (batch["trimap"], batch["alpha"], pred)]
    return torch.cat([(x[:, :3] * std + mean).clamp(0, 1), *grey], dim=3)


@torch.no_grad()
def _validate(model: nn.Module, val_set: Dataset, *, batch_size: int, device: torch.device | str | None,
              num_workers: int, batch_cache, mattes: int) -> tuple[float, torch.Tensor | None]:
    model = unwrap(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses, images = [], None
    for batch in _validation_loader(val_set, batch_size, num_workers, batch_cache):
        batch = _to_device(batch, device)
        pred = model(batch["input"])  # (N, 1, H, W)
        losses.append(alpha_loss(pred, batch["alpha"], unknown_mask(batch["trimap"])).item())
        if mattes and images is None:
            images = validation_mattes(batch, pred, mattes)
    model.train(was_training)
    if not losses:
        raise ValueError("the validation set is empty")
    return float(np.mean(losses)), images


def validate(model: nn.Module, val_set: Dataset, *, batch_size: int = 1, device: torch.device | str | None = None,
             num_workers: int = 0, batch_cache=None) -> float:
    """Mean over batches of the alpha loss against the ground truth, model in eval mode (restored after).
    ``batch_cache`` (:class:`matting_lib.data.batch_cache.BatchCache`): read the validation batches from it."""
    return _validate(model, val_set, batch_size=batch_size, device=device, num_workers=num_workers,
                     batch_cache=batch_cache, mattes=0)[0]


# ------------------------------------------------------------------------------------------ the loop's parts
@dataclass
class Trainer:
    """What the loop works with: the model (DDP-wrapped as ``net`` when several processes train), the objective,
    the optimiser, the averaged weights, and where this process stands (rank, world size, device)."""

    model: nn.Module
    net: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None
    params: list[torch.Tensor]  # every trained tensor: the model's and the objective's (adapters, connectors)
    config: TrainConfig
    rank: int
    world: int
    device: torch.device
    steps_per_epoch: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and kept in ``best.pt``: the averaged ones when averaging."""
        return self.model if self.ema is None else self.ema.module


@dataclass
class Progress:
    """Where the training stands; stored in every checkpoint's ``extra`` and restored on resume."""

    step: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    last_val_loss: float | None = None
    last_loss: float | None = None

    def record(self, world: int) -> dict:
        return {"best_val_loss": None if self.best_val_loss == math.inf else self.best_val_loss,
                "best_step": self.best_step, "last_val_loss": self.last_val_loss, "rng": _rng_state(),
                "world_size": world}


def start_trainer(model: nn.Module, objective: nn.Module, train_set: Dataset, config: TrainConfig, rank: int,
                  world: int, device: torch.device) -> Trainer:
    """Seeded, on ``device``: Adam over the model's and the objective's trainable tensors and, with ``ema_decay``,
    the weights' exponential moving average (``torch.optim.swa_utils``, BatchNorm statistics averaged too)."""
    seed_everything(config.seed)
    model.to(device, memory_format=torch.channels_last)  # NHWC convolutions: ~0.7x the step time on a CPU
    objective.to(device)
    params = list({id(p): p for p in itertools.chain(model.parameters(), objective.parameters())
                   if p.requires_grad}.values())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    ema = (AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
           if config.ema_decay > 0 else None)
    steps_per_epoch = len(train_set) // world // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set has {len(train_set)} samples, fewer than batch_size × processes = "
                         f"{config.batch_size} × {world}; lower the batch size or enlarge the set")
    return Trainer(model, model, objective, optimizer, ema, params, config, rank, world, device, steps_per_epoch)


def resume(trainer: Trainer, last: Path) -> Progress:
    """The :class:`Progress` of ``last`` (``last.pt``) with the model, objective, optimiser, averaged weights and RNG
    states restored; a fresh one when there is no ``last.pt``. Refuses a checkpoint written with other settings
    (the :data:`RESUME_KEYS`)."""
    if not last.is_file():
        return Progress()
    ckpt = load_checkpoint(last, map_location=trainer.device)
    stored = dataclasses.asdict(TrainConfig.from_stored(ckpt["config"], last))
    given = dataclasses.asdict(trainer.config)
    diff = {k: (stored[k], given[k]) for k in RESUME_KEYS if stored[k] != given[k]}
    if diff:
        raise ValueError(f"{last} was written with other settings {diff} (stored, given); "
                         f"use the same settings to resume or a new run_dir to start afresh")
    unwrap(trainer.model).load_state_dict(ckpt["model"])
    trainer.objective.load_state_dict(ckpt["objective"] or {})
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(ckpt["averaged"])
    extra = ckpt["extra"]
    _set_rng_state(extra["rng"])
    return Progress(ckpt["step"], extra["best_val_loss"] if extra["best_val_loss"] is not None else math.inf,
                    extra["best_step"], extra["last_val_loss"])


def distribute(trainer: Trainer) -> None:
    """Several processes: wrap the model in DistributedDataParallel and start every rank from rank 0's objective."""
    if trainer.world > 1:
        ids = [trainer.device.index] if trainer.device.type == "cuda" else None
        trainer.net = nn.parallel.DistributedDataParallel(trainer.model, device_ids=ids)
        for p in trainer.objective.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, 0)


def epoch_loader(train_set: Dataset, trainer: Trainer, epoch: int, skip: int, batch_cache) -> DataLoader:
    """The batches of ``epoch`` after its first ``skip`` (a resumed epoch): a function of (seed, epoch) only, each
    batch composed here or read from ``batch_cache`` (the same batches either way)."""
    config = trainer.config
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    sampler = DistributedSampler(train_set, num_replicas=trainer.world, rank=trainer.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    pin = trainer.device.type == "cuda"
    if batch_cache is None:
        return DataLoader(train_set, batch_size=config.batch_size, drop_last=True,
                          sampler=_SkipSampler(sampler, skip * config.batch_size), num_workers=config.num_workers,
                          worker_init_fn=worker_init_fn, generator=generator, pin_memory=pin)
    order, bs = list(_SkipSampler(sampler, skip * config.batch_size)), config.batch_size
    return _batch_loader(train_set, [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)], epoch, batch_cache,
                         num_workers=config.num_workers, generator=generator, pin_memory=pin)


def train_step(trainer: Trainer, batch: dict, step: int) -> tuple[float, dict[str, float], float]:
    """Optimiser step ``step`` (1-based) on ``batch``: loss, backward, the objective's gradients averaged over the
    processes (DDP averages the model's), element-wise clamp, the schedule's lr, Adam, the averaged weights.
    Returns (loss, the objective's terms, lr)."""
    config = trainer.config
    loss, logs = trainer.objective(trainer.net, _to_device(batch, trainer.device))
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if trainer.world > 1:
        for p in trainer.objective.parameters():
            if p.requires_grad and p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= trainer.world
    if config.grad_clamp is not None:
        for p in trainer.params:
            if p.grad is not None:
                p.grad.clamp_(-config.grad_clamp, config.grad_clamp)
    lr = config.lr_at(step)  # stateless schedule: a resumed run continues it exactly
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    trainer.optimizer.step()
    if trainer.ema is not None:
        trainer.ema.update_parameters(unwrap(trainer.model))
    return loss.item(), logs, lr


def save_state(trainer: Trainer, progress: Progress, path: Path, *, full: bool) -> None:
    """``path``: the model, objective and progress; ``full`` adds the optimiser and the averaged weights (``last.pt``
    and snapshots: everything a resume needs)."""
    save_checkpoint(path, model=trainer.model, optimizer=trainer.optimizer if full else None,
                    objective=trainer.objective, config=dataclasses.asdict(trainer.config),
                    epoch=progress.step // trainer.steps_per_epoch, step=progress.step,
                    metrics={"val_loss": progress.last_val_loss, "train_loss": progress.last_loss},
                    extra=progress.record(trainer.world), averaged=trainer.ema if full else None)


def save_best(trainer: Trainer, progress: Progress, run_dir: Path) -> None:
    """``best.pt``: the evaluated weights (:attr:`Trainer.evaluated`) of the lowest validation loss so far."""
    if trainer.ema is None:
        return save_state(trainer, progress, run_dir / "best.pt", full=False)
    extra = {k: v for k, v in progress.record(trainer.world).items() if k in ("best_val_loss", "best_step")}
    save_checkpoint(run_dir / "best.pt", model=trainer.ema.module, config=dataclasses.asdict(trainer.config),
                    epoch=progress.step // trainer.steps_per_epoch, step=progress.step,
                    metrics={"val_loss": progress.last_val_loss, "train_loss": progress.last_loss},
                    extra={**extra, "averaged": "ema"})


def after_step(trainer: Trainer, progress: Progress, logs: dict, lr: float, epoch: int, *, val_set, batch_cache,
               run_dir: Path, log: RunLog | None, stop_at: int, started: float) -> None:
    """What follows optimiser step ``progress.step``: on rank 0, validation when due (``best.pt`` when it improves),
    the log row, ``last.pt`` when due (and ``best.pt`` at the end without a validation set), snapshots."""
    config, step = trainer.config, progress.step
    val_due = val_set is not None and (step == config.steps or (step % config.val_every == 0 if config.val_every
                                                                  else step % trainer.steps_per_epoch == 0))
    if not trainer.main:
        return
    val_loss, images = None, None
    if val_due:
        val_loss, images = _validate(trainer.evaluated, val_set, batch_size=config.batch_size, device=trainer.device,
                                     num_workers=config.num_workers, batch_cache=batch_cache, mattes=VAL_MATTES)
        progress.last_val_loss = val_loss
        if val_loss < progress.best_val_loss:
            progress.best_val_loss, progress.best_step = val_loss, step
            save_best(trainer, progress, run_dir)
    row = {"step": step, "epoch": epoch, "time_s": round(time.time() - started, 3), "lr": lr,
           "loss": progress.last_loss}  # loss: this rank's total; then the objective's terms
    log.step({**row, **{k: v for k, v in logs.items() if k not in row}, "val_loss": val_loss})
    log.mattes(step, images)
    if step == stop_at or (step % config.checkpoint_every == 0 if config.checkpoint_every else val_due):
        if val_set is None and step == config.steps:
            save_best(trainer, progress, run_dir)
        save_state(trainer, progress, run_dir / "last.pt", full=True)
    if config.snapshot_every and step % config.snapshot_every == 0:
        save_state(trainer, progress, snapshot_path(run_dir, step), full=True)  # a curve point; also resumable


# ------------------------------------------------------------------------------------------ the loop
def train(model: nn.Module, objective: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig,
          run_dir: str | os.PathLike, *,
          callbacks: Sequence[Callable[[int, nn.Module, dict], None]] = (), batch_cache=None) -> TrainResult:
    """Train ``model`` with ``objective`` (see module docstring); resumes from ``run_dir/last.pt`` if present.

    ``callbacks`` are called as ``cb(step, model, logs)`` after every optimiser step (``model`` unwrapped).
    Without a validation set, ``best.pt`` holds the final weights. ``batch_cache``
    (:class:`matting_lib.data.batch_cache.BatchCache`): read the training and validation batches from it where
    another run of the same seed stored them (identical batches; the datasets need ``cache_identity()``).
    """
    started, run_dir = time.time(), Path(run_dir)
    rank, world, device, own_group = setup_distributed(config.device)
    log = None
    try:
        trainer = start_trainer(model, objective, train_set, config, rank, world, device)
        progress = resume(trainer, run_dir / "last.pt")
        distribute(trainer)
        if trainer.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = RunLog(run_dir, progress.step)
        stop_at = min(config.steps, config.stop_after_steps or config.steps)
        bar = tqdm(total=config.steps, initial=progress.step, desc=f"train {run_dir.name}",
                   disable=not (config.progress and trainer.main))
        model.train()
        objective.train()
        while progress.step < stop_at:
            epoch, skip = divmod(progress.step, trainer.steps_per_epoch)
            for batch in epoch_loader(train_set, trainer, epoch, skip, batch_cache):
                progress.last_loss, logs, lr = train_step(trainer, batch, progress.step + 1)
                progress.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{progress.last_loss:.4f}", refresh=False)
                after_step(trainer, progress, logs, lr, epoch, val_set=val_set, batch_cache=batch_cache,
                           run_dir=run_dir, log=log, stop_at=stop_at, started=started)
                for cb in callbacks:
                    cb(progress.step, unwrap(model), logs)
                if progress.step >= stop_at:
                    break
        bar.close()
        if world > 1:  # ranks leave together: a rank tearing gloo down while rank 0 still saves can abort the peer
            dist.barrier()
        return TrainResult(run_dir, progress.step, config.steps, progress.step // trainer.steps_per_epoch,
                           None if progress.best_val_loss == math.inf else progress.best_val_loss, progress.best_step,
                           progress.last_val_loss, progress.last_loss, time.time() - started,
                           interrupted=progress.step < config.steps)
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
    notebook 02 and the calibration runs. The sets are :func:`matting_lib.data.datasets.train_val_sets` of ``layout``
    (a :class:`~matting_lib.data.layout.DatasetLayout`) with these arguments; then :func:`train` into ``run_dir``."""
    train_set, val_set = train_val_sets(layout, crop_size=crop_size, seed=seed, split_seed=split_seed,
                                        val_fraction=val_fraction, val_samples=val_samples, epoch_length=epoch_length)
    return train(model, AlphaObjective(), train_set, val_set, config, run_dir)
