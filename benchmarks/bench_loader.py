"""Is the training loader the bottleneck? Loader samples/s next to the student's training-step rate.

    .venv/bin/python benchmarks/bench_loader.py                       # synthetic smoke data in a temp folder
    .venv/bin/python benchmarks/bench_loader.py --data data/synthetic-default --crops 160 320 --workers 0 2

* Loader: samples/s of ``MattingTrainDataset`` through a ``DataLoader`` (batch ``--batch``), per crop size
  and worker count, after one warm-up batch (workers started, foregrounds cached).
* Training: images/s of Adam steps with the alpha loss of ``matting_lib.networks.models.build_student(--width)`` at the
  same crop size and batch, on ``--threads`` torch threads (a small stand-in conv net if models is missing).
* Ratio = loader samples/s / training images/s: above 1 the loader keeps up; with workers it runs in
  other processes, so the relevant comparison is the workers > 0 row.
Numbers depend on the machine and on everything else running on it; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from matting_lib.data.datasets import MattingTrainDataset
from matting_lib.data.layout import DatasetLayout
from matting_lib.networks.profiling import train_images_per_s


def stand_in_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(16, 1, 3, padding=1), torch.nn.Sigmoid())


def build_net(width: float) -> tuple[torch.nn.Module, str]:
    try:
        from matting_lib.networks.models import build_student
    except ImportError:
        return stand_in_net(), "stand-in 3-conv net"
    return build_student(width=width), f"student width {width}"


def loader_rate(ds: MattingTrainDataset, batch: int, workers: int, batches: int) -> float:
    loader = DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=False,
    )
    it = iter(loader)
    next(it)  # warm-up: workers started, first files decoded
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            n += len(next(it)["input"])
        except StopIteration:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="", help="dataset root (default: generate the smoke preset in a temp folder)")
    p.add_argument("--crops", type=int, nargs="+", default=[160, 320])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=6, help="timed batches per loader configuration")
    p.add_argument("--width", type=float, default=0.25, help="student channel width for the training rate")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per crop size")
    p.add_argument("--threads", type=int, default=0, help="torch threads for training (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    if args.data:
        root = Path(args.data)
    else:
        from matting_lib.data.synthetic import generate_dataset

        tmp = tempfile.TemporaryDirectory()
        root = generate_dataset(Path(tmp.name) / "smoke", preset="smoke", progress=False)
    layout = DatasetLayout.for_root(root)
    net, label = build_net(args.width)
    print(f"data: {root} ({len(layout.fg_names('train'))} train foregrounds); net: {label}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'crop':>5} {'workers':>7} {'loader samples/s':>17} {'train images/s':>15} {'ratio':>7}")
    for crop in args.crops:
        rate_train = train_images_per_s(net, crop, args.batch, args.steps)
        ds = MattingTrainDataset(layout, layout.fg_names("train"), crop_size=crop, seed=0,
                                 epoch_length=args.batch * (args.batches + 1))
        for workers in args.workers:
            rate_load = loader_rate(ds, args.batch, workers, args.batches)
            print(f"{crop:>5} {workers:>7} {rate_load:>17.1f} {rate_train:>15.1f} {rate_load / rate_train:>7.1f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
