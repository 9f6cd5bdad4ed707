"""One rank of the teacher's DDP training for tests/test_train_ddp.py, run by torchrun: the training of
``python -m matting_lib.training.train_ddp`` (:func:`matting_lib.training.train_ddp.train_teacher`), recording the
gradients of the first optimiser step. Usage: ``torchrun --standalone --nproc_per_node 2 ddp_teacher_worker.py DATA RUN
OUT``."""

import json
import os
import sys

import torch

from matting_lib.data.layout import DatasetLayout
from matting_lib.training import train_ddp
from matting_lib.training.teacher import TeacherParams

data, run, out = sys.argv[1:4]
rank = int(os.environ["RANK"])
p = TeacherParams(
    profile="smoke",
    data_dir=data,
    run_dir=run,
    width=0.0625,
    crop_size=64,
    batch_size=2,
    steps=3,
    val_every=3,
    val_samples=2,
    seed=0,
    threads=1,
    num_workers=0,
    ddp_processes=int(os.environ["WORLD_SIZE"]),
)


def first_step(step, model, logs):
    if step == 1:  # after the step, p.grad still holds the averaged, clamped gradient it applied
        torch.save({n: q.grad.clone() for n, q in model.named_parameters()}, os.path.join(out, f"grads{rank}.pt"))


result = train_ddp.train_teacher(p, DatasetLayout.for_root(data), progress=False, callbacks=[first_step])
with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
    json.dump({"step": result.step}, fh)
# gloo's threads can abort the interpreter's finalisation after everything above succeeded (pytorch/pytorch#179291)
os._exit(0)
