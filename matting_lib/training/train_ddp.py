"""One teacher training on several GPUs: notebook 02's train mode under ``torchrun``, through the training loop's
DistributedDataParallel path (:func:`matting_lib.training.loop.train`: NCCL on GPUs, gloo on CPU).

    torchrun --standalone --nproc_per_node 4 -m matting_lib.training.train_ddp --profile paper --data-dir data/adobe \\
        --run-dir runs/paper/teacher --width 1.0 --crop-size 320 --batch-size 4 --steps 80813 --val-every 2694 \\
        --val-samples 1000 --num-workers 8

Every option is a field of :class:`matting_lib.training.teacher.TeacherParams` (``--help`` lists them); the training
goes to ``<run-dir>/train``, the folder notebook 02 trains in, and resumes its ``last.pt`` when interrupted (run the
same command again). ``batch_size`` is per process: 4 processes × 4 is the paper's batch of 16. Notebook 02
runs the same command itself (:func:`matting_lib.training.teacher.launch_ddp`) when its ``ddp_processes`` parameter is
above 1 (``--set teacher.ddp_processes=4``), then evaluates and saves the teacher as usual.

A folder trained by N processes records N in its ``run.json`` identity, so it is never resumed by another
number of processes (the data order and the per-rank batch would change) nor taken for a one-process training.

What N processes with batch B compute, against one process with batch N·B: every optimiser step uses the same
N·B training samples (``DistributedSampler`` gives rank r the indices r, r + N, ... of the one-process order),
and the weights are identical on every rank. The gradients are those of the mean of the N per-rank losses, each
computed on its own B samples, i.e. one process accumulating the gradients of the N shards; they differ from the
one-process N·B gradient because BatchNorm normalises each rank's B samples by their own statistics and the
alpha loss is normalised by each rank's own unknown-pixel count (``tests/test_train_ddp.py`` checks both).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

from matting_lib.data.layout import DatasetLayout
from matting_lib.params import help_of
from matting_lib.paths import repo_path
from matting_lib.training.loop import TrainResult
from matting_lib.training.run import train_network
from matting_lib.training.teacher import TeacherParams


def train_teacher(p: TeacherParams, layout: DatasetLayout, *, progress: bool = True,
                  callbacks: Sequence[Callable] = ()) -> TrainResult:
    """Notebook 02's teacher training in this process (:func:`matting_lib.training.run.train_network`); under
    ``torchrun`` (``WORLD_SIZE`` > 1) one rank of the DDP training, rank 0 preparing ``run_dir/train``. The number of
    processes is one of the settings (``ddp_processes``), so a one-process training never resumes a DDP one or the
    reverse. ``callbacks`` as :func:`matting_lib.training.loop.train`'s."""
    return train_network(p, p.train_dir, layout.root, network="teacher", progress=progress, callbacks=callbacks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matting_lib.training.train_ddp",
                                     description="Train notebook 02's teacher; under torchrun, one DDP rank.")
    types = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(TeacherParams):
        if f.name not in ("mode", "ddp_processes"):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=types[f.type], default=f.default,
                                help=f"{help_of(TeacherParams, f.name)} (default: {f.default!r})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log.csv has every step)")
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    p = TeacherParams(**args, mode="train", ddp_processes=int(os.environ.get("WORLD_SIZE", "1")))
    result = train_teacher(p, DatasetLayout.for_root(repo_path(p.data_dir)), progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"step {result.step} of {result.total_steps}; best validation loss {result.best_val_loss} at step "
              f"{result.best_step}; {result.run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
