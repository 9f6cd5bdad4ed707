"""The protocol study: which student training protocol gives the least seed-to-seed noise for its cost, measured
on the validation split only.

The paper trains at a constant learning rate to the last step, so a student's final weights, and its test score,
move with the seed (and with any last-bit change) much as a new seed would. Table 1 compares configurations
paired by seed; its intervals are as narrow as the per-seed noise allows. This study trains the no-KD student under
candidate protocols, several seeds each, and scores the weights each protocol evaluates (``best.pt``) on the
full-size validation composites of :func:`matting_lib.studies.calibration.validation_composites` (held-out training
foregrounds; never the test set):

* ``constant`` — the paper's constant lr, the checkpoint of the lowest validation-crop loss (the default profile);
* ``step`` — a tenfold lr drop for the last fifth of training (``lr_decay``);
* ``cosine`` — cosine from lr to 0 (``lr_schedule``);
* ``ema`` — constant lr, an exponential moving average of the weights evaluated (``ema_decay``;
  ``torch.optim.swa_utils``);
* ``step+ema`` — both;
* ``*-x2`` — twice the steps (more steps per seed instead of more seeds).

For each protocol: mean and standard deviation over seeds of the validation SAD, the wall time per run, and the
noise at equal cost, ``std × sqrt(steps / base steps)`` (the standard error a fixed budget of training steps buys is
proportional to it; every protocol's step costs the same, so steps, not the measured seconds of a shared machine,
are the cost).

Command line (resumable: finished runs are read back, never retrained; ``-j`` runs in parallel, one torch thread
each; prints the tables docs/calibration.md shows)::

    python -m matting_lib.protocol_study --data data/synthetic-comp1k --runs-dir runs/protocol --seeds 6 -j 2 \\
        --out docs/protocol_study
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from matting_lib.data.layout import DatasetLayout
from matting_lib.data.output_safety import check_output, check_output_folder
from matting_lib.distillation.distill import CONFIGS
from matting_lib.files import atomic_write_text
from matting_lib.networks.checkpoints import load_model
from matting_lib.params import lookup
from matting_lib.reporting.figures import save_figure
from matting_lib.reporting.paired_stats import confidence_interval
from matting_lib.studies.calibration import RunSettings, score_model, train_run, validation_composites, write_csv
from matting_lib.training.run import train_network
from matting_lib.training.student import DistillRunParams

#: Candidate protocols: overrides of the base settings (``steps`` as a multiple of the base's steps).
PROTOCOLS: dict[str, dict] = {
    "constant": {},
    "step": {"lr_decay": "0.8"},
    "cosine": {"lr_schedule": "cosine"},
    "ema": {"ema_decay": 0.98},
    "step+ema": {"lr_decay": "0.8", "ema_decay": 0.98},
    "constant-x2": {"steps": 2},
    "step-x2": {"lr_decay": "0.8", "steps": 2},
}
#: The study's base: the default profile's student settings (profiles/default.toml [distill]) at the paper's
#: constant learning rate without weight averaging (the protocols above vary exactly that).
BASE = RunSettings(kind="student", width=0.25, crop_size=96, batch_size=16, lr=0.01, steps=500, val_every=100,
                   val_samples=64, num_workers=0, threads=1, snapshot_every=10**6)


def protocol_settings(name: str, base: RunSettings = BASE, seed: int = 0) -> RunSettings:
    """The settings of protocol ``name`` (:data:`PROTOCOLS`) for ``seed``: ``steps`` scales the base's steps,
    ``lr_decay`` given as a fraction of the steps becomes that step."""
    over = dict(lookup(PROTOCOLS, name, "protocol"))
    steps = base.steps * int(over.pop("steps", 1))
    if "lr_decay" in over:
        over["lr_decay"] = str(int(round(float(over["lr_decay"]) * steps)))
    return dataclasses.replace(base, **over, steps=steps, seed=seed)


def train_distilled(data_dir: str | os.PathLike, run_dir: str | os.PathLike, settings: RunSettings, config: str,
                    teacher_checkpoint: str | os.PathLike):
    """Train (or resume) a distilled student of ``config`` with these settings, as notebook 03 trains it (the same
    objective, data, loop and run identity), into ``run_dir``; returns
    :class:`matting_lib.training.loop.TrainResult`."""
    fields = set(DistillRunParams.__dataclass_fields__) & set(RunSettings.__dataclass_fields__) - {"kind"}
    p = DistillRunParams(**{k: getattr(settings, k) for k in fields}, config=config, data_dir=str(data_dir),
                         teacher_checkpoint=str(teacher_checkpoint))
    return train_network(p, run_dir, data_dir, distill=p.distill_config, teacher_checkpoint=teacher_checkpoint,
                         log=lambda *_: None, progress=False)


def _train_and_score(args: tuple[str, str, str, RunSettings, int, str, str]) -> dict:
    """Worker: train one run (or read back a finished one) and score its ``best.pt`` on the validation composites.
    A run folder this call creates is removed again when it fails before anything was trained (only ``run.json``
    in it), so a rerun finds no half-made run."""
    data_dir, run_dir, name, settings, bg_per_fg, config, teacher = args
    run = Path(run_dir)
    scores_file = run / "validation.json"
    if scores_file.is_file():
        try:
            done = json.loads(scores_file.read_text())
        except (OSError, ValueError):  # a damaged record: the run is scored again
            done = {}
        if done.get("settings") == dataclasses.asdict(settings) and done.get("row", {}).get("config",
                                                                                          "student") == config:
            return done["row"]
    fresh = not run.exists()
    try:
        if config == "student":
            result = train_run(data_dir, run, settings, progress=False)
        else:
            result = train_distilled(data_dir, run, settings, config, teacher)
    except BaseException:
        if fresh and run.is_dir() and {p.name for p in run.iterdir()} <= {"run.json"}:
            shutil.rmtree(run)  # nothing trained: no run.json left for a rerun to take as a started run
        raise
    wall = result.wall_s
    comps = validation_composites(data_dir, val_fraction=settings.val_fraction, split_seed=settings.split_seed,
                                  bg_per_fg=bg_per_fg)
    scores = score_model(load_model(result.best_path), comps, metrics=("sad", "mse"))["all"]
    row = {"protocol": name, "config": config, "seed": settings.seed, "steps": settings.steps,
           "best_step": result.best_step,
           "val_sad": scores["sad"], "val_mse": scores["mse"], "images": scores["count"], "train_s": round(wall, 1)}

    atomic_write_text(scores_file, json.dumps({"settings": dataclasses.asdict(settings), "row": row}, indent=1))
    return row


def run_study(data_dir: str | os.PathLike, runs_dir: str | os.PathLike, protocols: Sequence[str], seeds: int, *,
              jobs: int = 2, bg_per_fg: int = 2, base: RunSettings = BASE, config: str = "student",
              teacher: str | os.PathLike = "matting_lib/assets/teacher-default.pt") -> list[dict]:
    """Train and score every (protocol, seed) of ``config`` (``student``: no KD; else a distilled configuration
    of :data:`matting_lib.distillation.distill.CONFIGS` from ``teacher``); rows in protocol order. Seeds first within a
    round,
    so a study cut short still has every protocol at the same number of seeds."""
    prefix = "" if config == "student" else f"{config}-"
    tasks = [(str(data_dir), str(Path(runs_dir) / f"{prefix}{name}-seed{seed}"), name,
              protocol_settings(name, base, seed), bg_per_fg, config, str(teacher))
             for seed in range(seeds) for name in protocols]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = []
        for task, future in [(t, pool.submit(_train_and_score, t)) for t in tasks]:
            try:
                row = future.result()
            except BrokenProcessPool:
                raise RuntimeError(f"a worker process died while training {task[1]} (killed, or out of memory?); "
                                   f"rerun the same command to resume (finished runs are read back)") from None
            except (ValueError, OSError, RuntimeError) as err:  # one line naming the run; the others not started
                pool.shutdown(cancel_futures=True)
                raise RuntimeError(f"run {task[1]} failed: {str(err).rstrip('.')}; fix that and rerun the same "
                                   f"command (finished runs are read back, interrupted ones resume)") from None
            print(f"{config} {row['protocol']:12s} seed {row['seed']}: validation SAD {row['val_sad']:.3f} "
                  f"({row['train_s']:.0f} s)", flush=True)
            rows.append(row)
    order = {n: i for i, n in enumerate(protocols)}
    return sorted(rows, key=lambda r: (order[r["protocol"]], r["seed"]))


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The per-run rows a study wrote (``OUT.csv``), numbers as numbers."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ints, floats = ("seed", "steps", "best_step", "images"), ("val_sad", "val_mse", "train_s")
    return [{k: int(v) if k in ints else float(v) if k in floats else v for k, v in r.items()} for r in rows]


def noise_table(rows: Sequence[dict]) -> list[dict]:
    """Per protocol: seeds, mean and std (ddof 1) of the validation SAD, the coefficient of variation, the mean
    training time per run and the noise at equal cost ``std × sqrt(steps / base steps)``."""
    out = []
    for name in dict.fromkeys(r["protocol"] for r in rows):
        mine = [r for r in rows if r["protocol"] == name]
        sads = np.array([r["val_sad"] for r in mine])
        std = float(np.std(sads, ddof=1)) if len(sads) > 1 else math.nan
        steps = mine[0]["steps"]
        out.append({"protocol": name, "seeds": len(sads), "steps": steps, "val_sad": float(sads.mean()),
                    "val_sad_std": std, "cv_percent": 100 * std / float(sads.mean()),
                    "s_per_run": float(np.mean([r["train_s"] for r in mine])),
                    "noise_at_equal_cost": std * math.sqrt(steps / BASE.steps)})
    return out


def paired_table(students: Sequence[dict], distilled: Sequence[dict], *, level: float = 0.95) -> list[dict]:
    """Per protocol, the paired change of the runs ``distilled`` against the runs ``students`` of the same protocol
    and seed (validation SAD; the no-KD student, or another distilled configuration), as Table 1 pairs them: the
    t-interval of the per-seed log ratios ln(SAD_A / SAD_B) (:mod:`matting_lib.reporting.paired_stats`), over the
    seeds both have. ``mean``, ``low``, ``high``: shown back as changes (exp(x) − 1); ``half_width``: the interval's
    half-width in log units; ``std``: the standard deviation of the per-seed ratios SAD_A / SAD_B − 1, the spread
    the protocol rules of docs/calibration.md compare."""
    out = []
    for name in dict.fromkeys(r["protocol"] for r in distilled):
        base = {r["seed"]: r["val_sad"] for r in students if r["protocol"] == name}
        ratios = [r["val_sad"] / base[r["seed"]] for r in distilled if r["protocol"] == name and r["seed"] in base]
        if len(ratios) < 2:
            continue
        ci = confidence_interval(np.log(ratios), level=level, log=True)
        mean, low, high = ci.change
        out.append({"protocol": name, "seeds": ci.n, "mean": mean, "low": low, "high": high,
                    "std": float(np.std(ratios, ddof=1)), "half_width": ci.half_width})
    return out


def paired_markdown(table: Sequence[dict], config: str, against: str = "student") -> str:
    other = "no-KD student" if against == "student" else against
    lines = [f"| protocol | seeds | {config} vs {other}: change [95 % interval, log ratio] | per-seed std of the "
             "ratio |", "|---|---|---|---|"]
    lines += [f"| {r['protocol']} | {r['seeds']} | {100 * r['mean']:+.1f} % [{100 * r['low']:+.1f}, "
              f"{100 * r['high']:+.1f}] | {100 * r['std']:.1f} % |" for r in table]
    return "\n".join(lines) + "\n"


def seed_effect(rows: Sequence[dict], protocols: Sequence[str]) -> dict:
    """How much of the spread is the seed itself: a two-way analysis (seed × protocol, one run per cell, additive
    model) of the validation SAD over ``protocols`` (same steps) and the seeds every one of them has. Returns the
    shares of the sum of squares (seed, protocol, residual), the seed factor's F-test p-value
    (``scipy.stats.f``) and the residual standard deviation relative to the mean: the part of a run's score that
    pairing by seed does not remove."""
    seeds = sorted(set.intersection(*({r["seed"] for r in rows if r["protocol"] == p} for p in protocols)))
    m = np.array([[next(r["val_sad"] for r in rows if r["protocol"] == p and r["seed"] == s) for p in protocols]
                  for s in seeds])
    grand = m.mean()
    seed_eff, prot_eff = m.mean(1) - grand, m.mean(0) - grand
    resid = m - grand - seed_eff[:, None] - prot_eff[None, :]
    n_s, n_p = m.shape
    ss_seed, ss_prot, ss_res = n_p * (seed_eff ** 2).sum(), n_s * (prot_eff ** 2).sum(), (resid ** 2).sum()
    total = ss_seed + ss_prot + ss_res
    df_res = (n_s - 1) * (n_p - 1)
    f_seed = (ss_seed / (n_s - 1)) / (ss_res / df_res)
    return {
        "seeds": n_s,
        "protocols": list(protocols),
        "seed_share": ss_seed / total,
        "protocol_share": ss_prot / total,
        "residual_share": ss_res / total,
        "seed_p": float(stats.f.sf(f_seed, n_s - 1, df_res)),
        "residual_std_relative": float(np.sqrt(ss_res / df_res) / grand),
    }


def seed_effect_sentence(e: dict) -> str:
    return (
        f"Over {', '.join(e['protocols'])} ({e['seeds']} seeds each), the seed accounts for "
        f"{100 * e['seed_share']:.0f} % of the sum of squares of the validation SAD (F-test p = {e['seed_p']:.1g}), "
        f"the protocol for {100 * e['protocol_share']:.0f} %, the rest {100 * e['residual_share']:.0f} % "
        f"(residual std {100 * e['residual_std_relative']:.1f} % of the mean).\n"
    )


def table_markdown(table: Sequence[dict]) -> str:
    lines = [
        "| protocol | steps | seeds | validation SAD, mean ± std | std / mean | s per run | std × √(steps / 500) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(f"| {r['protocol']} | {r['steps']} | {r['seeds']} | {r['val_sad']:.3f} ± {r['val_sad_std']:.3f} | "
                     f"{r['cv_percent']:.1f} % | {r['s_per_run']:.0f} | {r['noise_at_equal_cost']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(rows: Sequence[dict], table: Sequence[dict]):
    """Each run's validation SAD per protocol (dots) with the mean ± std (bar), cost on a second axis."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    names = [t["protocol"] for t in table]
    for i, name in enumerate(names):
        ys = [r["val_sad"] for r in rows if r["protocol"] == name]
        ax.plot([i] * len(ys), ys, "o", color="0.55", ms=4, zorder=2)
        t = table[i]
        ax.errorbar([i + 0.15], [t["val_sad"]], yerr=[t["val_sad_std"]], fmt="s", color="C0", capsize=4, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("validation SAD (no-KD student)")
    ax.set_title("Training protocol vs seed-to-seed noise (validation split)")
    ax2 = ax.twinx()
    ax2.bar(range(len(names)), [t["s_per_run"] for t in table], width=0.5, color="C1", alpha=0.18, zorder=1)
    ax2.set_ylabel("seconds per run", color="C1")
    fig.tight_layout()
    return fig


PROG = "python -m matting_lib.protocol_study"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset root (the default profile's: data/synthetic-comp1k)")
    p.add_argument("--runs-dir", required=True, help="where the study's runs go (resumable)")
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), help=f"of: {', '.join(PROTOCOLS)}")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("-j", "--jobs", type=int, default=2, help="runs in parallel, one torch thread each")
    p.add_argument("--bg-per-fg", type=int, default=2, help="validation composites per held-out foreground")
    p.add_argument("--out", default=None, help="write the runs to OUT.csv and the figure to OUT.png (e.g. "
                   "docs/protocol_study); the tables are printed")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.csv / OUT.png")
    p.add_argument("--config", default="student", help="student (no KD) or a distilled configuration, e.g. "
                   "spatial+channel: then its paired difference against the runs of --against is reported")
    p.add_argument("--teacher", default="matting_lib/assets/teacher-default.pt", help="the teacher of --config")
    p.add_argument("--against", default="student", help="with --config: pair it against this configuration's runs "
                   "of the same protocols and seeds (trained or read back; default: the no-KD student)")
    args = p.parse_args(argv)
    unknown = [n for n in args.protocols if n not in PROTOCOLS]
    if unknown or args.seeds < 2 or args.jobs < 1 or args.bg_per_fg < 1:
        p.error(f"unknown protocol(s) {unknown}; valid: {', '.join(PROTOCOLS)}" if unknown else
                "--seeds must be at least 2 (a standard deviation needs two), -j and --bg-per-fg at least 1")

    bad = [c for c in (args.config, args.against) if c not in CONFIGS]
    if bad:
        p.error(f"unknown configuration {bad[0]!r}; valid: {', '.join(CONFIGS)}")
    try:
        check_inputs(args)
        return _run(args)
    except (ValueError, OSError, RuntimeError) as err:  # raised here or in a worker: one line, no traceback
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1


def check_inputs(args: argparse.Namespace) -> None:
    """Before any worker starts: the dataset, the teacher (when a configuration distils from it), the runs folder
    and the outputs (:mod:`matting_lib.data.output_safety`: never in a dataset or on an input, an existing file
    only with ``--force``)."""
    DatasetLayout.for_root(args.data).bg_per_fg("train")  # the name lists are there (named if not)
    inputs = []
    if any(CONFIGS[c].uses_teacher for c in (args.config, args.against)):
        load_model(args.teacher, kind="teacher")  # missing, not a checkpoint, unsafe or a student: named
        inputs.append(args.teacher)
    check_output_folder(args.runs_dir, inputs=inputs, datasets=[args.data], what="--runs-dir")
    if args.out:
        check_output(f"{args.out}.csv", inputs=inputs, datasets=[args.data], force=args.force,
                     what="--out", example="protocol_study", companions=[f"{args.out}.png"])


def _run(args: argparse.Namespace) -> int:
    rows = run_study(args.data, args.runs_dir, args.protocols, args.seeds, jobs=args.jobs, bg_per_fg=args.bg_per_fg,
                     config=args.config, teacher=args.teacher)
    table = noise_table(rows)
    text = table_markdown(table)
    same_steps = [t["protocol"] for t in table if t["steps"] == BASE.steps]
    if len(same_steps) > 1:
        text += "\n" + seed_effect_sentence(seed_effect(rows, same_steps))
    if args.config != "student":  # the runs paired with, same protocols and seeds, trained (or read back) too
        others = run_study(args.data, args.runs_dir, args.protocols, args.seeds, jobs=args.jobs,
                           bg_per_fg=args.bg_per_fg, config=args.against, teacher=args.teacher)
        text += "\n" + paired_markdown(paired_table(others, rows), args.config, args.against)
    print(text)
    if args.out:
        write_csv(f"{args.out}.csv", rows)
        save_figure(figure(rows, table), Path(args.out), formats=("png",))
    return 0
