"""Where a profile's student runs spend their time, part by part, and how far they are from the machine's FLOP limit.

Reads what a finished pipeline run leaves behind (nothing is rerun, so it can be pointed at any runs folder, also one
made by another checkout of the code): each executed notebook 03 (papermill records every cell's duration), its
marker (the notebook run's wall time) and the run's ``log.csv`` (the time of every optimiser step). Each run's wall
time is split into

* kernel: starting the notebook's kernel and papermill's own work (the run's wall time less its cells'),
* imports: the notebook's import cell,
* build: ``build_training`` (data sets, teacher, student, objective, run folder),
* steps: the optimiser steps (``log.csv``: the time to the last step less the validations and the start),
* start: the loop's start before the first step (seeding, resume, the first batch's loader),
* validation: the steps at which the loop validated, less a median step,
* test set: predicting and scoring the test composites,
* figures: the notebook's figure cells,
* writing: ``metrics.json`` and the rest.

With two runs folders (e.g. the same profile run by two versions of the code on one machine) it prints both and
their ratio, part by part. The FLOP limit: the multiply-adds of the runs' steps (``torch.utils.flop_counter`` on the
networks at the profile's width, crop and batch: the student's forward and backward, the teacher's forward once per
batch and seed) over the machine's peak (``--peak-gflops``: cores × FMA lanes × 2 × GHz; the default is 2 cores of
AVX2 at 2.5 GHz, 160 GFLOP/s).

    .venv/bin/python benchmarks/bench_run_breakdown.py runs/default [runs-b/default] [--peak-gflops 160]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

PARTS = ("kernel", "imports", "build", "start", "steps", "validation", "test set", "figures", "writing")
# a code cell belongs to the part whose marker it contains (the first that matches)
# (notebook 03 as it is, and the cells of its earlier form: data, teacher, student and objective built cell by cell)
CELL_PARTS = (("training.run()", "training"), ("= train(", "training"), ("build_training(", "build"),
              ("train_val_sets(", "build"), ("DistillObjective(", "build"), ("teacher_path.is_file()", "build"),
              ("score_test_set", "test set"), ("save_figure", "figures"), ("import ", "imports"))


def _log_times(log_csv: Path) -> tuple[float, float, float]:
    """(start, steps, validation) seconds of one training from its log.csv's ``time_s`` column."""
    with log_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return 0.0, 0.0, 0.0
    t = [float(r["time_s"]) for r in rows]
    gaps = [b - a for a, b in zip(t, t[1:])]
    step = statistics.median(gaps) if gaps else 0.0
    val = sum(g - step for g, r in zip(gaps, rows[1:]) if r.get("val_loss"))
    start = t[0] - step
    return start, t[-1] - start - val, val


def breakdown(runs: Path) -> dict[str, dict[str, float]]:
    """{run name: {part: seconds}} of every finished student run under ``runs`` (a profile's runs folder)."""
    out = {}
    for marker in sorted((runs / "pipeline").glob("kd-*.json")):
        m = json.loads(marker.read_text())
        nb = json.loads(Path(m["executed_notebook"]).read_text())
        parts = dict.fromkeys(PARTS, 0.0)
        cells = 0.0
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            d = float(cell["metadata"].get("papermill", {}).get("duration") or 0.0)
            cells += d
            src = "".join(cell["source"])
            part = next((p for key, p in CELL_PARTS if key in src), "writing")
            if part == "training":
                log = runs / "students" / m["key"] / "log.csv"
                start, steps, val = _log_times(log) if log.is_file() else (0.0, d, 0.0)
                parts["start"] += start
                parts["steps"] += steps
                parts["validation"] += val
                parts["writing"] += max(0.0, d - start - steps - val)  # checkpoints after the last step
            else:
                parts[part] += d
        parts["kernel"] = max(0.0, float(m["wall_s"]) - cells)
        out[m["key"]] = parts
    if not out:
        raise SystemExit(f"{runs}: no finished student run (pipeline/kd-*.json); give a profile's runs folder, "
                         f"e.g. runs/default")
    return out


def flops_per_run(runs: Path) -> tuple[float, float]:
    """(student step GFLOP, teacher forward GFLOP) at the settings of the runs' first marker."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from matting_lib.networks.models import build_student, build_teacher

    p = json.loads(next((runs / "pipeline").glob("kd-*.json")).read_text())["params"]
    width, crop, batch = float(p.get("width", 0.25)), int(p.get("crop_size", 96)), int(p.get("batch_size", 16))
    x = torch.randn(batch, 4, crop, crop)
    student, teacher = build_student(width), build_teacher(width).eval()
    with FlopCounterMode(display=False) as fc:
        student(x).sum().backward()
    s = fc.get_total_flops() / 1e9
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        teacher(x)
    return s, fc.get_total_flops() / 1e9


def total_flops(runs: Path, by_run: dict[str, dict[str, float]]) -> float:
    """GFLOP of every optimiser step of the runs: the student's forward and backward, plus one teacher forward per
    batch of each seed that distils (the shared teacher cache computes it once per seed)."""
    s, t = flops_per_run(runs)
    total, seeds_with_teacher = 0.0, set()
    for key in by_run:
        m = json.loads((runs / "pipeline" / f"{key}.json").read_text())
        steps = int(m["params"].get("steps", 500))
        total += steps * s
        if m["params"].get("config") != "student":
            if m["params"].get("teacher_cache_dir"):
                if m["params"]["seed"] not in seeds_with_teacher:
                    seeds_with_teacher.add(m["params"]["seed"])
                    total += steps * t
            else:
                total += steps * t
    return total


def table(names: list[str], results: list[dict[str, dict[str, float]]], peak: float, flops: list[float]) -> str:
    totals = [{part: sum(r[part] for r in res.values()) for part in PARTS} for res in results]
    head = "| part | " + " | ".join(f"{n} (s)" for n in names) + (" | ratio |" if len(names) == 2 else " |")
    lines = [head, "|" + "---|" * (len(names) + 1 + (len(names) == 2))]
    for part in (*PARTS, "all"):
        vals = [sum(t.values()) if part == "all" else t[part] for t in totals]
        ratio = f" | {vals[1] / vals[0]:.2f}" if len(vals) == 2 and vals[0] else (" | —" if len(vals) == 2 else "")
        lines.append(f"| {part} | " + " | ".join(f"{v:.0f}" for v in vals) + ratio + " |")
    for n, res, t, f in zip(names, results, totals, flops):
        wall = sum(t.values())
        share, steps_share = 100 * f / peak / wall, 100 * f / peak / max(t["steps"], 1e-9)
        lines.append(f"\n{n}: {len(res)} student runs, {wall / 60:.1f} min of run time; {f / 1e3:.1f} TFLOP of "
                     f"training steps take {f / peak / 60:.1f} min at {peak:.0f} GFLOP/s: {share:.1f} % of the limit "
                     f"(steps alone: {steps_share:.1f} %)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="one or two profile runs folders (e.g. runs/default)")
    ap.add_argument("--peak-gflops", type=float, default=160.0,
                    help="the machine's peak: cores x FMA lanes x 2 x GHz (default: 2 cores of AVX2 at 2.5 GHz)")
    args = ap.parse_args(argv)
    if len(args.runs) > 2:
        ap.error("give one runs folder, or two to compare")
    results = [breakdown(r) for r in args.runs]
    flops = [total_flops(r, res) for r, res in zip(args.runs, results)]
    print(table([str(r) for r in args.runs], results, args.peak_gflops, flops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
