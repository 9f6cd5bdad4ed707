"""Speed and memory of the distillation terms, measured side by side.

1. Spatial similarity loss, explicit (B·HW×HW matrices) vs the exact low-memory form (C×C products only),
   forward + backward, on random features of the shapes the paper's networks produce on each layer
   (teacher/student channels from matting_lib.networks.models at ``--width``; H×W = size / 2^stage).
2. One training step (forward, backward, Adam step) of the student with each distillation configuration,
   relative to the plain student step (no teacher).

Each measurement runs in its own subprocess so peak memory is clean: on CUDA the allocator's peak
(``torch.cuda.max_memory_allocated``) above what the inputs/models already hold; on CPU (Linux) the peak
resident set size (VmHWM, reset through /proc/self/clear_refs) above the resident size at the same point.

    .venv/bin/python benchmarks/bench_distill.py                         # the paper's setting: 320 px, batch 16
    .venv/bin/python benchmarks/bench_distill.py --size 128 --batch 4 --width 0.5 --configs student,spatial
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key}; peak CPU memory needs Linux")


def _peak_tracker(device: torch.device):
    """Returns (start, stop): start() records the baseline; stop() -> peak bytes above it."""
    if device.type == "cuda":
        def start():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()

        def stop(base):
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
    else:  # Linux: reset the peak RSS (VmHWM) to the current RSS, then read the new peak
        def start():
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return _proc_status_bytes("VmRSS")

        def stop(base):
            return _proc_status_bytes("VmHWM") - base
    return start, stop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, int]:
    start, stop = _peak_tracker(device)
    fn()  # warm-up: lazy initialisation (code pages, BLAS buffers, Adam state) is not counted
    _sync(device)
    base = start()
    fn()
    peak = stop(base)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats, peak


def worker_spatial(job: dict, device: torch.device) -> dict:
    from matting_lib.distillation.kd_losses import similarity_loss

    g = torch.Generator(device=device).manual_seed(0)
    feats = [(torch.randn(job["batch"], cs, h, h, generator=g, device=device).relu().requires_grad_(True),
              torch.randn(job["batch"], ct, h, h, generator=g, device=device).relu())
             for cs, ct, h in job["shapes"]]

    def step():
        loss = sum(similarity_loss("spatial", s, t, spatial_mode=job["mode"]) for s, t in feats)
        loss.backward()
        for s, _ in feats:
            s.grad = None

    sec, peak = _timed(step, device, job["repeats"])
    return {"time_s": sec, "peak_bytes": peak}


def worker_step(job: dict, device: torch.device) -> dict:
    from matting_lib.distillation.distill import DistillObjective, make_config
    from matting_lib.networks.models import build_student, build_teacher

    torch.manual_seed(0)
    cfg = make_config(job["config"], spatial_mode=job.get("mode", ""))
    teacher = build_teacher(job["width"]).to(device) if cfg.uses_teacher else None
    student = build_student(job["width"]).to(device).train()
    objective = DistillObjective(teacher, student, cfg).to(device).train()
    opt = torch.optim.Adam(list(student.parameters()) + list(objective.parameters()), lr=1e-4)
    b, n = job["batch"], job["size"]
    g = torch.Generator(device=device).manual_seed(0)
    trimap = torch.randint(0, 3, (b, 1, n, n), generator=g, device=device).float() * (128 / 255)
    trimap = trimap.clamp(max=1.0)
    batch = {"input": torch.cat([torch.randn(b, 3, n, n, generator=g, device=device), trimap], 1),
             "alpha": torch.rand(b, 1, n, n, generator=g, device=device), "trimap": trimap}

    def step():
        loss, _ = objective(student, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sec, peak = _timed(step, device, job["repeats"])
    return {"time_s": sec, "peak_bytes": peak}


def run_worker(job: dict) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON result (or an error).

    On CPU, glibc's malloc is told to mmap every block over 64 KiB (a fixed threshold also stops it from
    raising the threshold dynamically), so freed tensors leave the resident set and the peak RSS growth
    tracks the peak of live tensor memory instead of hiding it in reused heap.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(res: dict) -> str:
    if "error" in res:
        return f"failed: {res['error'][:70]}"
    return f"{res['time_s'] * 1000:8.1f} ms {res['peak_bytes'] / 2**20:7.1f} MiB"


def _ratio(a: dict, b: dict, key: str) -> str:
    if "error" in a or "error" in b or b[key] <= 0:
        return "   n/a"
    return f"{a[key] / b[key]:6.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", type=int, default=320, help="input side in pixels (crop size)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=float, default=1.0, help="network width (1.0 = the paper's networks)")
    p.add_argument(
        "--layers", default="conv2-5", help="distilled layers (matting_lib.distillation.distill.parse_layers)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0 = torch's default)")
    p.add_argument("--part", choices=["spatial", "step", "all"], default="all")
    p.add_argument("--configs", default="student,hinton,at,fsp,ofd,batch,spatial,channel,spatial+channel,"
                   "batch+spatial+channel", help="configurations for the training-step part")
    p.add_argument("--skip-explicit", action="store_true", help="skip the explicit spatial form (memory hungry)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.worker:
        job = json.loads(args.worker)
        device = torch.device(job["device"])
        if job.get("threads"):
            torch.set_num_threads(job["threads"])
        out = (worker_spatial if job["kind"] == "spatial" else worker_step)(job, device)
        print(json.dumps(out))
        return 0

    from matting_lib.distillation.distill import parse_layers
    from matting_lib.networks.models import build_student, build_teacher

    layers = parse_layers(args.layers)
    t_ch, s_ch = build_teacher(args.width).feature_channels, build_student(args.width).feature_channels
    stage = {name: int(name[-1]) - (1 if name.startswith("dconv") else 0) for name in layers}  # pooling steps
    shapes = {name: (s_ch[name], t_ch[name], args.size // 2 ** stage[name]) for name in layers}
    common = {"batch": args.batch, "repeats": args.repeats, "device": str(device), "threads": args.threads}
    print(f"device {device}; input {args.size}x{args.size}, batch {args.batch}, width {args.width}, layers "
          f"{','.join(layers)}; torch {torch.__version__}, {args.threads or torch.get_num_threads()} thread(s)")

    if args.part in ("spatial", "all"):
        print("\n1) spatial similarity loss, forward+backward: explicit vs efficient (and auto, the default)")
        print(f"{'layer':6s} {'Cs/Ct@HxW':>13s} {'explicit':>21s} {'efficient':>21s} {'auto':>21s} "
              f"{'t ex/ef':>7s} {'m ex/ef':>7s} {'m ex/au':>7s}")
        rows = [(name, [shapes[name]]) for name in layers] + (
            [("all", list(shapes.values()))] if len(layers) > 1 else []
        )
        for name, shp in rows:
            res = {}
            for mode in ("explicit", "efficient", "auto"):
                if mode == "explicit" and args.skip_explicit:
                    res[mode] = {"error": "skipped"}
                    continue
                res[mode] = run_worker({**common, "kind": "spatial", "mode": mode, "shapes": shp})
            desc = f"{shp[0][0]}/{shp[0][1]}@{shp[0][2]}²" if len(shp) == 1 else "sum"
            ex, ef, au = res["explicit"], res["efficient"], res["auto"]
            print(
                f"{name:6s} {desc:>13s} {_fmt(ex):>21s} {_fmt(ef):>21s} {_fmt(au):>21s} "
                f"{_ratio(ex, ef, 'time_s'):>7s} {_ratio(ex, ef, 'peak_bytes'):>7s} {_ratio(ex, au, 'peak_bytes'):>7s}"
            )
        print("   (t = time, m = peak memory; ex/ef = explicit / efficient, ex/au = explicit / auto)")

    if args.part in ("step", "all"):
        print("\n2) one student training step (forward, backward, Adam) per configuration vs the plain student")
        print(f"{'configuration':34s} {'step':>21s} {'time x':>7s} {'mem x':>7s}")
        step_common = {**common, "kind": "step", "size": args.size, "width": args.width}
        configs = [c for c in args.configs.split(",") if c]
        base = run_worker({**step_common, "config": "student"})
        for cfg in configs:
            modes = ["auto", "explicit"] if "spatial" in cfg.split("+") and not args.skip_explicit else [""]
            for mode in modes:
                res = base if cfg == "student" else run_worker({**step_common, "config": cfg, "mode": mode})
                label = cfg + (f" ({mode})" if mode else "")
                ratios = f"{_ratio(res, base, 'time_s'):>7s} {_ratio(res, base, 'peak_bytes'):>7s}"
                print(f"{label:34s} {_fmt(res):>21s} {ratios}")
        print("   (time x, mem x = configuration / plain student step; the plain step runs no teacher)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
