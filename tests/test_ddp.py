"""The training loop under DistributedDataParallel: two CPU processes with gloo, env-var initialisation."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_training import TinyMatting


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # What torchrun sets; train() initialises the process group from these.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import matting_lib.training.loop as training
    from matting_lib.networks.models import build_student

    saves = []
    real_save = training.save_checkpoint

    def counting_save(path, **kw):
        saves.append(os.path.basename(path))
        return real_save(path, **kw)

    training.save_checkpoint = counting_save
    max_diff = []

    def same_weights_everywhere(step, model, logs):
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        max_diff.append(max(float((g - flat).abs().max()) for g in gathered))

    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = build_student(0.125)
    cfg = training.TrainConfig(lr=0.01, batch_size=2, steps=4, val_every=2, checkpoint_every=4, seed=0, device="cpu",
                               progress=False)
    result = training.train(model, training.AlphaObjective(), TinyMatting(8, seed=1), TinyMatting(2, seed=2), cfg,
                            os.path.join(out_dir, "run"), callbacks=[same_weights_everywhere])
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"max_diff": max_diff, "saves": saves, "step": result.step,
                   "initialized_after": dist.is_initialized()}, fh)
    # What this test checks is written; skip interpreter finalisation, where gloo's C++ threads can abort the
    # process (pytorch/pytorch#179291) after everything above has succeeded.
    os._exit(0)


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert len(r0["max_diff"]) == 4 and r0["max_diff"] == [0.0] * 4 and r1["max_diff"] == [0.0] * 4
    assert r0["step"] == r1["step"] == 4
    assert r1["saves"] == [] and r0["saves"].count("last.pt") == 1  # only rank 0 writes, last.pt once
    assert set(r0["saves"]) <= {"best.pt", "last.pt"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "last.pt", "log.csv", "tb"]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert not r0["initialized_after"] and not r1["initialized_after"]  # train() cleaned up its process group
