"""Teacher vs student side by side: parameters, multiply-accumulates, CPU latency, peak memory, training speed.

    .venv/bin/python benchmarks/bench_models.py                  # width 1.0 inference at 320² and 1024²,
                                                                 # training at width 0.5, 160 px, batch 16
    .venv/bin/python benchmarks/bench_models.py --sizes 320 --repeats 3 --train-steps 3 --profile

* MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions; FLOPs / 2). BatchNorm, ReLU,
  pooling, unpooling and the sigmoid are not multiply-accumulates and are not counted — they are memory-bound and
  that is where the student's latency share departs from its compute share (``--profile`` shows the split).
* Latency: median of ``--repeats`` forward passes (batch 1, eval mode, ``torch.inference_mode``) after one warm-up.
* Peak memory: each (model, size) runs in a fresh subprocess; we report its peak resident set size (``VmHWM``
  from /proc, else ``ru_maxrss``, which on Linux inherits the parent's peak across fork + exec) and the increase
  over the same process just before the forward pass (activations and conv workspaces).
* Training: images/s of Adam steps with the alpha loss at the profile's width and crop size.
Numbers depend on the machine and on everything else running on it; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from matting_lib.networks.models import build_model, count_parameters
from matting_lib.networks.profiling import count_macs, latency_ms, train_images_per_s

MEM_SCRIPT = """
import json, resource, sys, torch
from matting_lib.networks.models import build_model

def peak_kb():
    # VmHWM is this process's own high-water mark; ru_maxrss would inherit the parent's across fork + exec.
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

kind, width, size, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads: torch.set_num_threads(threads)
model = build_model(kind, width).eval()
x = torch.randn(1, 4, size, size)
before = peak_kb()
with torch.inference_mode():
    model(x)
peak = peak_kb()
print(json.dumps({"peak_mb": peak / 1024, "forward_mb": (peak - before) / 1024}))
"""


def peak_memory(kind: str, width: float, size: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", MEM_SCRIPT, kind, str(width), str(size), str(threads)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_ops(kind: str, width: float, size: int) -> tuple[str, float, float]:
    from torch.profiler import ProfilerActivity, profile

    model = build_model(kind, width).eval()
    x = torch.randn(1, 4, size, size)
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    ops = prof.key_averages()
    conv_us = sum(e.self_cpu_time_total for e in ops if "conv" in e.key)
    total_us = sum(e.self_cpu_time_total for e in ops)
    return ops.table(sort_by="self_cpu_time_total", row_limit=8), conv_us / 1000, total_us / 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--width", type=float, default=1.0, help="network width for inference numbers")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 1024], help="square input sizes for latency/memory")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--train-width", type=float, default=0.5)
    p.add_argument("--train-size", type=int, default=160)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--profile", action="store_true", help="print the top ops by CPU time at the first size")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = ("teacher", "student")
    res = {k: {} for k in kinds}
    for k in kinds:
        model = build_model(k, args.width).eval()
        res[k]["params"] = count_parameters(model)
        res[k]["gmacs"] = {s: count_macs(model, s) / 1e9 for s in args.sizes}
        res[k]["latency_ms"] = {s: latency_ms(model, s, args.repeats) for s in args.sizes}
        if not args.no_memory:
            res[k]["memory"] = {s: peak_memory(k, args.width, s, args.threads) for s in args.sizes}
        res[k]["train_img_s"] = train_images_per_s(build_model(k, args.train_width), args.train_size, args.train_batch,
                                                   args.train_steps)
    t, s = res["teacher"], res["student"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); inference width {args.width}, batch 1")
    print(f"{'':28s} {'teacher':>12s} {'student':>12s} {'student/teacher':>16s}")

    def row(label, a, b, fmt="{:12.1f}"):
        print(f"{label:28s} {fmt.format(a)} {fmt.format(b)} {b / a if a else float('nan'):16.1%}")

    row("parameters", t["params"], s["params"], "{:12,d}")
    for size in args.sizes:
        row(f"GMACs @ {size}²", t["gmacs"][size], s["gmacs"][size], "{:12.2f}")
        row(f"latency ms @ {size}²", t["latency_ms"][size], s["latency_ms"][size])
        if not args.no_memory:
            row(f"peak RSS MB @ {size}²", t["memory"][size]["peak_mb"], s["memory"][size]["peak_mb"])
            row(f"forward +RSS MB @ {size}²", t["memory"][size]["forward_mb"], s["memory"][size]["forward_mb"])
    row(f"train img/s w{args.train_width} {args.train_size}px b{args.train_batch}", t["train_img_s"],
        s["train_img_s"], "{:12.2f}")
    if args.profile:  # where does the student's latency share depart from its MAC share?
        split = {}
        for k in kinds:
            table, conv_ms, total_ms = profile_ops(k, args.width, args.sizes[0])
            split[k] = (conv_ms, total_ms - conv_ms)
            print(f"\n{k} @ {args.sizes[0]}², top ops by self CPU time:\n{table}")
        (tc, to), (sc, so) = split["teacher"], split["student"]
        mac_share = s['gmacs'][args.sizes[0]] / t['gmacs'][args.sizes[0]]
        print(f"convolutions: student/teacher time {sc / tc:.1%} (MACs {mac_share:.1%}); "
              f"other ops (pooling with indices, unpooling, BN, ReLU; they scale with channels, not MACs): "
              f"{so / to:.1%}, {so / (sc + so):.1%} of the student's time vs {to / (tc + to):.1%} of the teacher's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
