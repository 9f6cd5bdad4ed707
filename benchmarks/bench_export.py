"""PyTorch eager vs onnxruntime on the CPU: latency side by side, and test-set parity of an exported checkpoint.

    .venv/bin/python benchmarks/bench_export.py --out docs/latency.md          # the latency table of docs/deployment.md
    .venv/bin/python benchmarks/bench_export.py --parity matting_lib/assets/teacher-default.pt \\
        runs/default/students/<run>/best.pt --data data/synthetic-comp1k        # SAD through both paths
    .venv/bin/python benchmarks/bench_export.py --quick --out /tmp/latency.md   # seconds: checks the wiring only

* Latency: teacher and student at each ``--widths`` × ``--sizes`` (square, batch 1, random weights: the cost does
  not depend on their values), median of ``--repeats`` forward passes after one warm-up. PyTorch eager runs under
  ``torch.inference_mode`` with ``torch.set_num_threads(--threads)``; onnxruntime (CPUExecutionProvider, default
  graph optimisations) with ``intra_op_num_threads = --threads`` and one inter-op thread. Each network is exported
  once (dynamic H×W) with :func:`matting_lib.inference.export.export_onnx` and runs every size from that one file.
* Parity: each checkpoint is exported, then :func:`matting_lib.inference.evaluation.evaluate_model` predicts and scores
  the Composition-1k-layout test set of ``--data`` once with the PyTorch network and once with the ``.onnx``
  (:class:`matting_lib.inference.export.OnnxMatting`); the official-convention means are printed to 4 decimals with the
  number of PNG pixels that differ.
Numbers depend on the machine and on everything else running on it; compare ratios measured in one run, on a quiet
machine. The Markdown table (``--out``) is refused if the file exists, unless ``--force``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from matting_lib.files import atomic_write_text
from matting_lib.inference.export import OnnxMatting, export_checkpoint, export_onnx, onnx_session
from matting_lib.networks.models import build_model, count_parameters
from matting_lib.networks.profiling import latency_ms

KINDS = ("teacher", "student")


def ort_latency_ms(session, size: int, repeats: int) -> float:
    """Median wall time (ms) of one onnxruntime run on a (1, 4, size, size) input, after one warm-up run
    (the same protocol as :func:`matting_lib.networks.profiling.latency_ms`)."""
    x = torch.randn(1, 4, size, size).numpy()
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def latency_rows(widths: list[float], sizes: list[int], repeats: int, threads: int, workdir: Path) -> list[dict]:
    """One row per (width, size, network) with both latencies, plus a student/teacher ratio row."""
    torch.set_num_threads(threads)
    nets = {}
    for width in widths:
        for kind in KINDS:
            model = build_model(kind, width).eval()
            path = export_onnx(model, workdir / f"{kind}-{width}.onnx")
            nets[kind, width] = (model, onnx_session(path, threads=threads))
    rows = []
    for width in widths:
        for size in sizes:
            group = []
            for kind in KINDS:
                model, session = nets[kind, width]
                group.append({"network": kind, "width": width, "size": size, "params": count_parameters(model),
                              "torch_ms": latency_ms(model, size, repeats),
                              "ort_ms": ort_latency_ms(session, size, repeats)})
            t, s = group
            group.append({"network": "student / teacher", "width": width, "size": size,
                          "params": s["params"] / t["params"], "torch_ms": s["torch_ms"] / t["torch_ms"],
                          "ort_ms": s["ort_ms"] / t["ort_ms"]})
            rows += group
    return rows


def latency_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| network | width | size | params | PyTorch eager (ms) | onnxruntime (ms) | "
                         "onnxruntime / PyTorch |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["network"] == "student / teacher":
            lines.append(f"| {r['network']} | {r['width']} | {r['size']}² | {r['params']:.1%} | {r['torch_ms']:.1%} "
                         f"| {r['ort_ms']:.1%} | |")
        else:
            lines.append(f"| {r['network']} | {r['width']} | {r['size']}² | {r['params']:,} | {r['torch_ms']:.1f} "
                         f"| {r['ort_ms']:.1f} | {r['ort_ms'] / r['torch_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def parity(checkpoints: list[Path], data: Path, limit: int, threads: int, workdir: Path) -> list[dict]:
    """Official-convention test-set means through PyTorch and onnxruntime, per checkpoint."""
    from matting_lib.data.compositing import list_test_items
    from matting_lib.data.layout import DatasetLayout, read_gray
    from matting_lib.inference.evaluation import evaluate_model
    from matting_lib.networks.checkpoints import load_any_model

    torch.set_num_threads(threads)
    items = list_test_items(DatasetLayout.for_root(data))[: limit or None]
    missing = [it.image_path for it in items if not Path(it.image_path).is_file()]
    if missing:
        raise SystemExit(f"error: {len(missing)} test composite(s) of {data} are missing (e.g. {missing[0]}); "
                         f"build the test set first (notebook 01, or matting_lib.data.compositing.build_test_set)")
    results = []
    for i, ckpt in enumerate(checkpoints):
        onnx_path = export_checkpoint(ckpt, workdir / f"parity{i}.onnx")
        models = {"PyTorch": load_any_model(ckpt), "onnxruntime": OnnxMatting(onnx_path, threads=threads)}
        means, preds = {}, {}
        for path_name, model in models.items():
            pred_dir = workdir / f"parity{i}-{path_name}" / "pred"
            res = evaluate_model(model, items, pred_dir, conventions=("official",), device="cpu", workers=0,
                                 progress=False)["official"]
            means[path_name] = res["mean"]
            preds[path_name] = pred_dir
        diff = [np.abs(read_gray(preds["PyTorch"] / f"{it.name}.png").astype(int)
                       - read_gray(preds["onnxruntime"] / f"{it.name}.png")) for it in items]
        results.append({"checkpoint": str(ckpt), "images": len(items), "means": means,
                        "pixels": int(sum(d.size for d in diff)), "differ": int(sum((d > 0).sum() for d in diff)),
                        "max_diff": int(max(d.max() for d in diff))})
    return results


def parity_markdown(results: list[dict]) -> str:
    lines = ["| checkpoint | images | path | SAD | MSE | Grad | Conn |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for path_name, m in r["means"].items():
            lines.append(f"| {r['checkpoint']} | {r['images']} | {path_name} | {m['sad']:.4f} | {m['mse']:.6f} "
                         f"| {m['grad']:.4f} | {m['conn']:.4f} |")
    notes = []
    for r in results:
        same = f"{r['means']['PyTorch']['sad']:.4f}" == f"{r['means']['onnxruntime']['sad']:.4f}"
        notes.append(f"{r['checkpoint']}: {r['differ']} of {r['pixels']:,} PNG pixels differ (max {r['max_diff']} "
                     f"grey level); SAD equal to 4 decimals: {'yes' if same else 'NO'}")
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 1024], help="square input sizes")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for PyTorch and onnxruntime")
    p.add_argument("--parity", type=Path, nargs="+", metavar="CKPT",
                   help="instead of latency: export these checkpoints and score --data through both paths")
    p.add_argument("--data", type=Path, help="Composition-1k-layout dataset root for --parity")
    p.add_argument("--limit", type=int, default=0, help="--parity: first N test images only (0 = all)")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings (width 0.0625, 64², 2 repeats; parity on 4 images) to check the wiring")
    p.add_argument("--out", type=Path, help="also write the table as Markdown here")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.force:
        p.error(f"{args.out} exists; pass --force to replace it")
    if args.parity and args.data is None:
        p.error("--parity needs --data (a Composition-1k-layout dataset root)")
    if args.quick:
        args.widths, args.sizes, args.repeats, args.limit = [0.0625], [64], 2, args.limit or 4
    header = (f"torch {torch.__version__} eager vs onnxruntime {_ort_version()} (CPUExecutionProvider) on "
              f"{cpu_name()}; {args.threads} intra-op thread(s) each, batch 1, median of {args.repeats} after one "
              f"warm-up (benchmarks/bench_export.py)")
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        if args.parity:
            table = parity_markdown(parity(args.parity, args.data, args.limit, args.threads, Path(tmp)))
        else:
            table = latency_markdown(latency_rows(args.widths, args.sizes, args.repeats, args.threads, Path(tmp)),
                                     header)
    print(table, end="")
    if args.out is not None:
        atomic_write_text(args.out, table)
        print(f"wrote {args.out}")
    return 0


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
