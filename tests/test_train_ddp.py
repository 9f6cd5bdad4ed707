"""One teacher training on two processes: ``torchrun --standalone --nproc_per_node 2`` on CPU with gloo, through
:mod:`matting_lib.training.train_ddp` (the entry point notebook 02 runs with ``ddp_processes`` > 1).

What must equal a one-process run, and is checked: each step's samples (the two ranks' batches of B together
are the one-process batch of 2B), and the first step's gradient, which is the mean of the two ranks' gradients,
each on its own B samples, i.e. the one-process gradient accumulated over the two shards (to float rounding;
measured here: equal to the last bit). What need not, and is shown to differ: the one-process gradient of the
2B batch at once, because BatchNorm normalises each rank's samples by their own statistics and the alpha loss
is normalised by each rank's own unknown-pixel count."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from torch.utils.data import DistributedSampler, default_collate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from matting_lib.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("ddp") / "data", seed=0, preset="smoke", progress=False)


def _torchrun(*args, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return out


def _gradients(model, batch):
    from matting_lib.networks.losses import alpha_loss, unknown_mask

    model.zero_grad(set_to_none=True)
    alpha_loss(model(batch["input"]), batch["alpha"], unknown_mask(batch["trimap"])).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_two_gloo_ranks_apply_the_gradient_accumulated_over_their_shards(data, tmp_path):
    from matting_lib.data.datasets import train_val_sets
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.networks.models import build_teacher
    from matting_lib.training.seeding import seed_everything

    _torchrun(str(REPO / "tests" / "ddp_teacher_worker.py"), str(data), str(tmp_path / "t"), str(tmp_path))
    assert [json.loads((tmp_path / f"rank{r}.json").read_text())["step"] for r in (0, 1)] == [3, 3]
    ddp = torch.load(tmp_path / "grads0.pt", weights_only=True)
    assert all(torch.equal(ddp[n], g) for n, g in torch.load(tmp_path / "grads1.pt", weights_only=True).items())

    # the same initial weights and samples in this one process (as train_ddp.train_teacher makes them)
    seed_everything(0)
    model = build_teacher(0.0625).train()
    train_set, _ = train_val_sets(DatasetLayout.for_root(data), crop_size=64, seed=0, split_seed=0, val_fraction=0.1,
                                  val_samples=2)
    train_set.set_epoch(0)
    shard = [list(DistributedSampler(train_set, num_replicas=2, rank=r, shuffle=True, seed=0, drop_last=True))[:2]
             for r in (0, 1)]
    single = list(DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True))[:4]
    assert sorted(shard[0] + shard[1]) == sorted(single)  # the ranks' first batches are the one-process batch of 4

    def batch(indices):
        return default_collate([train_set[i] for i in indices])

    g0, g1 = (_gradients(model, batch(s)) for s in shard)
    accumulated = {n: ((g0[n] + g1[n]) / 2).clamp(-5, 5) for n in g0}
    whole = {n: g.clamp(-5, 5) for n, g in _gradients(model, batch(single)).items()}
    scale = max(float(g.abs().max()) for g in accumulated.values())
    diff = max(float((ddp[n] - accumulated[n]).abs().max()) for n in ddp)
    # equal up to float rounding: 0 when this test runs alone; 1.2e-4 relative (the same value every time) when it
    # runs late in a full pytest session, whose long-lived process computes the reference (cause not found)
    assert diff <= 1e-3 * scale, f"DDP gradient differs from the accumulated one by {diff} (scale {scale})"
    apart = max(float((whole[n] - accumulated[n]).abs().max()) for n in whole)
    assert apart > 0.1 * scale  # per-rank BatchNorm and loss normalisation: the 4-sample gradient is another


def test_launch_trains_under_torchrun_and_keeps_the_folder_apart_from_one_process(data, tmp_path):
    """Notebook 02's path: teacher.launch_ddp (torchrun, 2 processes) writes the training notebook 02 reads; the
    same call again finds it complete; a one-process training of the same settings does not resume it."""
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.training import teacher

    layout = DatasetLayout.for_root(data)
    p = teacher.TeacherParams(profile="smoke", mode="train", data_dir=str(data), run_dir=str(tmp_path / "t"),
                              width=0.0625,
                              crop_size=64, batch_size=2, steps=3, val_every=3, val_samples=2, threads=1,
                              num_workers=0, ddp_processes=2)
    lines = []
    result = teacher.launch_ddp(p, log=lines.append)
    assert lines[0].startswith("DDP: 2 processes × batch 2 = 4 samples per step")
    assert result.step == result.total_steps == 3 and not result.interrupted and result.best_path.is_file()
    run = tmp_path / "t" / "train"
    assert json.loads((run / "run.json").read_text())["identity"]["params"]["ddp_processes"] == 2
    assert [ln.split(",")[0] for ln in (run / "log.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    again = teacher.launch_ddp(p, log=lines.append)
    assert again.step == 3 and any("same training as recorded in run.json; resuming" in ln for ln in lines)

    model, single, _ = teacher.get_teacher(teacher.TeacherParams(**{**p.__dict__, "ddp_processes": 1}), layout)
    assert single.step == 3 and list(tmp_path.glob("t/train.stale-*")), "a 2-process folder was resumed by one"
    assert json.loads((run / "run.json").read_text())["identity"]["params"]["ddp_processes"] == 1
