"""Amortised cost of a KD run with the shared caches (matting_lib.data.batch_cache,
matting_lib.distillation.teacher_cache), and the training-step layouts (channels_last, torch.compile), measured side by
side.

Two tables:

* **the real training loop** (``--data DIR``): one seed of a profile (default: the default profile's ten
  configurations) trained in the pipeline's order on the real batches: the no-KD student composes and stores the
  batches, the first KD configuration (Hinton) computes and stores the teacher's outputs, the other KD runs read
  both. Amortised KD run = the mean per-step cost of the profile's KD configurations in that sequence, compared with
  the no-KD run as the pipeline runs it (composing) and with a no-KD run that reads the batches too (strict).
  ``--config`` (default spatial+channel) is also timed with neither cache (``shared_caches = false``), and the
  students are checked to be bit-identical with and without them.
* **the compute-only step** on synthetic tensors (no data loading), ``--config`` only: no-KD, KD with the teacher
  computed, cache cold (computes + stores), cache warm (reads); amortised = (cold + 8 warm) / 9 with that one
  configuration in every KD run. spatial+channel is among the dearest terms (~18 ms of the 0.13 s step at width
  0.25, 96 px; Hinton and AT ~0-2 ms), so this is an upper bound on the KD term's share.

Each row trains a width-``--width`` student on ``--crop`` px crops (batch 16) in a fresh subprocess with
``--threads`` torch threads (the pipeline's runs use 1, two at a time) and reports the median seconds per step of
``--repeats`` runs.

    .venv/bin/python benchmarks/bench_kd_cost.py                 # width 0.25, 96 px, 2 threads, spatial+channel
    .venv/bin/python benchmarks/bench_kd_cost.py --threads 1 --config hinton
    .venv/bin/python benchmarks/bench_kd_cost.py --threads 1 --steps 10 --data data/synthetic-comp1k --loop-steps 60
Run it on a quiet machine: nothing else may use the cores while it times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from matting_lib import cpu_env

CHILD = r"""
import json, sys, time, torch
from matting_lib import cpu_env
from matting_lib.distillation.distill import DistillObjective, PAPER_CONFIGS
from matting_lib.networks.models import build_student, build_teacher
from matting_lib.distillation.teacher_cache import TeacherOutputCache
from matting_lib.training.loop import AlphaObjective
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
teacher, student = build_teacher(a["width"]).eval(), build_student(a["width"])
g = torch.Generator().manual_seed(1)
n, s = 16, a["crop"]
batches = []
for i in range(a["warmup"] + a["steps"]):
    trimap = torch.full((n, 1, s, s), 128 / 255); trimap[:, :, : s // 4] = 0; trimap[:, :, -s // 4:] = 1
    batches.append({"input": torch.cat([torch.randn(n, 3, s, s, generator=g), trimap], 1),
                    "alpha": torch.rand(n, 1, s, s, generator=g), "trimap": trimap})
fmt = torch.channels_last if a["layout"] == "channels_last" else torch.contiguous_format
student = student.to(memory_format=fmt); teacher = teacher.to(memory_format=fmt)
if a["mode"] == "student":
    obj = AlphaObjective()
else:
    cache = TeacherOutputCache(a["cache"], "bench") if a["mode"] in ("cold", "warm") else None
    obj = DistillObjective(teacher, student, PAPER_CONFIGS[a["config"]], teacher_cache=cache)
net = torch.compile(student) if a["compile"] else student
opt = torch.optim.Adam(list(student.parameters()) + list(obj.parameters()), lr=0.01)
times = []
for i, b in enumerate(batches):
    b = {k: v.to(memory_format=fmt) if v.dim() == 4 else v for k, v in b.items()}
    t0 = time.perf_counter()
    loss, _ = obj(net, b)
    opt.zero_grad(set_to_none=True); loss.backward()
    for p in student.parameters():
        p.grad.clamp_(-5, 5)
    opt.step()
    if i >= a["warmup"]:
        times.append(time.perf_counter() - t0)
digest = float(sum(p.double().sum() for p in student.parameters()))
print(json.dumps({"s_per_step": sum(times) / len(times), "digest": digest, "cpu": cpu_env.describe()}))
"""


LOOP_CHILD = r"""
import json, sys, time, torch
from matting_lib.data.batch_cache import BatchCache
from matting_lib.data.datasets import train_val_sets
from matting_lib.distillation.distill import DistillObjective, PAPER_CONFIGS
from matting_lib.data.layout import DatasetLayout
from matting_lib.networks.models import build_student, build_teacher
from matting_lib.distillation.teacher_cache import TeacherOutputCache
from matting_lib.settings import TrainConfig
from matting_lib.training.loop import train
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
teacher, student = build_teacher(a["width"]), build_student(a["width"])
layout = DatasetLayout.for_root(a["data"])
train_set, val_set = train_val_sets(layout, crop_size=a["crop"], seed=0, split_seed=0, val_fraction=0.1,
                                    val_samples=64)
cfg = PAPER_CONFIGS[a["config"]]
tcache = TeacherOutputCache(a["cache"] + "/teacher", "bench") if a["teacher_cache"] else None
obj = DistillObjective(teacher if cfg.uses_teacher else None, student, cfg, teacher_cache=tcache)
bcache = BatchCache(a["cache"] + "/batches") if a["batch_cache"] else None
tc = TrainConfig(steps=a["steps"], lr=0.01, batch_size=16, val_every=a["steps"], seed=0, device="cpu",
                 progress=False)
t0 = time.perf_counter()
r = train(student, obj, train_set, None, tc, a["run"], batch_cache=bcache)
wall = time.perf_counter() - t0
digest = float(sum(p.double().sum() for p in student.parameters()))
print(json.dumps({"s_per_step": wall / a["steps"], "digest": digest}))
"""

def _profile_configs(profile: str) -> list[str]:
    from matting_lib.pipeline.profiles import load_profile

    return list(load_profile(profile)["distill"]["configs"])


def loop_table(args) -> None:
    """The real training loop on the real data, in the order the pipeline trains one seed: what each run pays.

    Per repeat, in one fresh cache folder: the no-KD student composes and stores the batches (the seed's first
    run); a no-KD student that reads them (the strict comparison); the first KD configuration of the profile (the
    Hinton run) reads the batches and computes and stores the teacher's outputs; every other KD configuration reads
    both. Then, outside the caches, ``--config`` with neither cache (composing, teacher in the run).
    Amortised KD run = the mean over the profile's KD configurations of their per-step cost in that sequence.
    """
    def child(config, batch, teacher, cache, run):
        spec = {"data": args.data, "width": args.width, "crop": args.crop, "threads": args.threads,
                "steps": args.loop_steps, "config": config, "batch_cache": batch, "teacher_cache": teacher,
                "cache": cache, "run": run}
        env = dict(os.environ)
        cpu_env.pin(env)
        out = subprocess.run([sys.executable, "-c", LOOP_CHILD, json.dumps(spec)], capture_output=True, text=True,
                             env=env)
        if out.returncode:
            raise SystemExit(f"benchmark child failed ({config}):\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    configs = _profile_configs(args.profile)
    kd = [c for c in configs if c != "student"]
    if not kd or "student" not in configs:
        raise SystemExit(f"profile {args.profile!r}: distill.configs {configs} needs 'student' and KD configurations")
    first = kd[0]
    composed, read, before = "no-KD, batches composed and stored", "no-KD, batches read", f"{args.config}, no caches"
    rows: dict[str, list[float]] = {}
    digests: dict[str, set[float]] = {}

    def timed(label, config, batch, teacher, tmp, name):
        r = child(config, batch, teacher, tmp, f"{tmp}/{name}")
        rows.setdefault(label, []).append(r["s_per_step"])
        digests.setdefault(config, set()).add(r["digest"])

    for rep in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            timed(composed, "student", True, False, tmp, "student-store")
            timed(read, "student", True, False, tmp, "student-read")
            for i, config in enumerate(kd):
                timed(f"{config}, {'teacher computed and stored' if i == 0 else 'teacher read'}", config, True, True,
                      tmp, config)
            timed(before, args.config, False, False, tmp, "before")
            if rep == 0:  # identity of the cold run too: the first KD configuration without any cache
                r = child(first, False, False, tmp, f"{tmp}/first-plain")
                digests[first].add(r["digest"])
    times = {label: statistics.median(v) for label, v in rows.items()}
    kd_labels = [label for label in rows if label not in (composed, read, before)]
    amortised = sum(times[label] for label in kd_labels) / len(kd_labels)
    t_comp, t_read = times[composed], times[read]
    print(f"\n# Training loop on {args.data} (real batches), width {args.width}, {args.crop} px, batch 16, "
          f"{args.threads} thread(s), median of {args.repeats} x {args.loop_steps} steps; one seed of profile "
          f"{args.profile!r} in pipeline order ({len(kd)} KD configurations)")
    print(f"{'run':52s} {'s/step':>8s} {'x no-KD composed':>17s} {'x no-KD read':>13s}")
    for name, t in [(x, times[x]) for x in (composed, read, *kd_labels)] + [
            (f"KD amortised: mean of the {len(kd)} KD runs above", amortised), (before, times[before])]:
        print(f"{name:52s} {t:8.3f} {t / t_comp:17.2f} {t / t_read:13.2f}")
    same = {c: len(d) == 1 for c, d in digests.items() if c in (first, args.config)}
    print("students identical with and without the caches: " + ", ".join(f"{c}: {v}" for c, v in same.items()))


def run(args, mode: str, cache: str, *, layout: str = "contiguous", compile_: bool = False) -> dict:
    spec = {"mode": mode, "cache": cache, "width": args.width, "crop": args.crop, "threads": args.threads,
            "steps": args.steps, "warmup": args.warmup, "config": args.config, "layout": layout,
            "compile": compile_}
    env = dict(os.environ)
    cpu_env.pin(env)  # the kernels the pipeline trains with
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"benchmark child failed ({mode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--config", default="spatial+channel")
    p.add_argument("--kd-runs-per-seed", type=int, default=9, help="KD configurations sharing one seed's teacher")
    p.add_argument("--layouts", action="store_true", help="also time channels_last and torch.compile")
    p.add_argument("--data", default="", help="also time the real training loop on this dataset folder (e.g. "
                   "data/synthetic-comp1k) with the batch and teacher caches on and off")
    p.add_argument("--loop-steps", type=int, default=40, help="steps per real-loop run (with --data)")
    p.add_argument("--loop-only", action="store_true", help="with --data: only the real-loop table")
    p.add_argument("--profile", default="default", help="with --data: the profile whose distill.configs make the "
                   "seed's sequence of runs (default: default)")
    args = p.parse_args()
    if args.data and args.loop_only:
        return loop_table(args)

    def median(mode, **kw):
        res = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                if mode == "warm":
                    run(args, "cold", tmp, **kw)  # fill the cache untimed
                res.append(run(args, mode, tmp, **kw))
        return statistics.median(r["s_per_step"] for r in res), res[0]

    student, info = median("student")
    plain, plain_r = median("plain")
    cold, cold_r = median("cold")
    warm, warm_r = median("warm")
    k = args.kd_runs_per_seed
    amortised = (cold + (k - 1) * warm) / k
    print(f"# KD step cost, width {args.width}, {args.crop} px, batch 16, {args.threads} thread(s), "
          f"config {args.config}, median of {args.repeats} × {args.steps} steps")
    print(f"# {info['cpu']}")
    print(f"{'run':40s} {'s/step':>8s} {'× no-KD':>8s}")
    for name, t in (("no-KD student", student), ("KD, teacher computed (no cache)", plain),
                    ("KD, cache cold (computes + stores)", cold), ("KD, cache warm (reads)", warm),
                    (f"KD amortised over {k} runs of a seed", amortised)):
        print(f"{name:40s} {t:8.3f} {t / student:8.2f}")
    same = plain_r["digest"] == cold_r["digest"] == warm_r["digest"]
    print(f"students identical (no cache / cold / warm): {same}")
    if args.layouts:
        for layout, comp in (("channels_last", False), ("contiguous", True)):
            t, r = median("student", layout=layout, compile_=comp)
            name = f"no-KD student, {layout}{' + torch.compile' if comp else ''}"
            print(f"{name:40s} {t:8.3f} {t / student:8.2f}   same result as eager contiguous: "
                  f"{r['digest'] == info['digest']}")
    if args.data:
        loop_table(args)


if __name__ == "__main__":
    main()
