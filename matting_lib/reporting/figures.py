"""Figures of the results notebook: relative-improvement bars (ours vs the paper's), a forest plot of the paired
changes with their intervals, learning curves, qualitative grids and similarity-matrix panels. Each function takes
plain data and returns a matplotlib Figure; :func:`save_figure` writes PNG and PDF side by side.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from matting_lib.files import atomic_write


def save_figure(
    fig: plt.Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (atomically); returns the paths. The extension is appended,
    so a stem with dots (a layer-set run such as ``03_kd-spatial+channel-Lconv3.conv4.conv5.dconv5-seed0_terms``)
    keeps its whole name."""
    stem = Path(stem)
    paths = []
    for ext in formats:
        p = stem.with_name(f"{stem.name}.{ext}")
        atomic_write(p, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight"))
        paths.append(p)
    return paths


def relative_improvement_bars(rows: Sequence[Mapping], metric: str = "sad", *, title: str = "") -> plt.Figure:
    """Bars of each configuration's change in ``metric`` relative to the no-KD student, ours next to the paper's.

    ``rows`` come from :func:`matting_lib.reporting.results.table_rows`. Negative = better (lower error); our bars carry
    error bars of ±1 std over seeds, relative to the student's mean.
    """
    rows = [r for r in rows if r["config"] not in ("teacher", "student")]
    names = [r.get("name", r["config"]) for r in rows]
    ours = np.array([100 * (r[f"{metric}_rel"] or 0.0) for r in rows])
    err = np.array([100 * r[f"{metric}_std"] / (r[metric] / (1 + r[f"{metric}_rel"])) if r[f"{metric}_rel"] is not None
                    and r["n"] > 1 else 0.0 for r in rows])
    theirs = np.array(
        [100 * r[f"paper_{metric}_rel"] if r[f"paper_{metric}_rel"] is not None else np.nan for r in rows]
    )
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2) + 2, 3.8), layout="constrained")
    ax.bar(x - 0.2, ours, 0.4, yerr=err, capsize=3, label="this run", color="tab:blue")
    ax.bar(x + 0.2, theirs, 0.4, label="paper (Composition-1k)", color="tab:gray")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylabel(f"{metric.upper()} change vs no-KD student (%)\n(negative = better)")
    ax.set_title(title or f"Relative {metric.upper()} change over the no-KD student")
    fig.legend(frameon=False, loc="outside right upper")  # beside the axes, never on a bar
    return fig


def forest_plot(rows: Sequence[Mapping], metric: str = "sad", *, margin: float = 0.03, title: str = "") -> plt.Figure:
    """Each configuration's paired change in ``metric`` vs the no-KD student as a point with its 95 % interval as
    a horizontal error bar, on a log axis of the ratio SAD_A / SAD_student (the scale the intervals are computed
    on, so they are drawn as computed; ticks labelled as changes in percent, negative = better); the paper's
    change as a grey diamond, a line at no change and a shaded band of a factor 1 + ``margin`` either way (the
    equivalence margin).

    ``rows``: :func:`matting_lib.reporting.paired_report.with_intervals` rows; the teacher, the no-KD student and rows
    without a paired change are left out, and a row without an interval (one seed) is drawn without a bar.
    """
    rows = [r for r in rows if r["config"] not in ("teacher", "student") and r.get(f"{metric}_rel_paired") is not None]
    y = np.arange(len(rows))[::-1]  # the table's first row at the top
    ratio = np.array([1 + r[f"{metric}_rel_paired"] for r in rows])
    low = np.array([1 + r[f"{metric}_rel_low"] for r in rows], dtype=float)
    high = np.array([1 + r[f"{metric}_rel_high"] for r in rows], dtype=float)
    err = np.nan_to_num(np.vstack([ratio - low, high - ratio]))
    theirs = np.array([np.nan if r.get(f"paper_{metric}_rel") is None else 1 + r[f"paper_{metric}_rel"]
                       for r in rows])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.6), layout="constrained")
    ax.set_xscale("log")
    ax.axvspan(1 / (1 + margin), 1 + margin, color="tab:green", alpha=0.12,
               label=f"×/÷ {1 + margin:g} band (±{100 * margin:g} %)")
    ax.axvline(1, color="black", lw=0.8)
    ax.errorbar(ratio, y, xerr=err, fmt="o", capsize=3, color="tab:blue", label="this run: paired mean, 95 % CI")
    ax.scatter(theirs, y, marker="D", color="tab:gray", zorder=3, label="paper (Composition-1k)")
    ax.set_yticks(y, [r.get("name", r["config"]) for r in rows])
    shown = np.concatenate([v[np.isfinite(v)] for v in (ratio, low, high, theirs)] + [[1.0]])
    ticks = [t for t in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5)
             if shown.min() / 1.05 <= t <= shown.max() * 1.05]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "0 %" if abs(v - 1) < 1e-9 else f"{100 * (v - 1):+.0f} %"))
    ax.set_xlabel(f"{metric.upper()} change vs no-KD student, log scale: exp(mean over seeds of "
                  f"ln {metric.upper()}_A / {metric.upper()}_student) − 1\n(negative = better)")
    ax.set_title(title or f"{metric.upper()} change over the no-KD student, paired by seed")
    fig.legend(frameon=False, fontsize=8, loc="outside lower center", ncol=3)  # below the axis label, never on it
    return fig


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Read a training ``log.csv`` into column -> float array (empty cells become NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def learning_curves(logs: Mapping[str, Mapping[str, np.ndarray]], *, x: str = "step",
                    train_key: str = "loss", val_key: str = "val_loss", smooth: int = 20) -> plt.Figure:
    """Training loss (moving average over ``smooth`` steps) and validation loss per run, on shared axes."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, log in logs.items():
        if x not in log:
            continue
        if train_key in log:
            y = log[train_key]
            ok = ~np.isnan(y)
            xs, ys = log[x][ok], y[ok]
            if smooth > 1 and len(ys) > smooth:
                ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
                xs = xs[smooth - 1:]
            a1.plot(xs, ys, label=name, lw=1)
        if val_key in log:
            v = log[val_key]
            ok = ~np.isnan(v)
            a2.plot(log[x][ok], v[ok], marker="o", ms=3, label=name, lw=1)
    a1.set(title="training loss", xlabel=x, yscale="log")
    a2.set(title="validation alpha loss", xlabel=x)
    a2.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    return fig


def qualitative_grid(samples: Sequence[Mapping[str, np.ndarray]], columns: Sequence[str],
                     *, titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None) -> plt.Figure:
    """A grid: one row per sample, one column per key of ``columns`` (RGB uint8 (H,W,3) or gray (H,W))."""
    n, m = len(samples), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(2.2 * m, 2.2 * n), squeeze=False)
    for i, s in enumerate(samples):
        for j, key in enumerate(columns):
            ax = axes[i, j]
            img = s[key]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title((titles or columns)[j], fontsize=9)
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.tight_layout()
    return fig


def similarity_panels(matrices: Mapping[str, Mapping[str, np.ndarray]], *, kinds: Sequence[str] | None = None,
                      diff_against: str | None = None) -> plt.Figure:
    """Rows = models (e.g. teacher, no-KD student, KD student), columns = similarity kinds.

    ``matrices[model][kind]`` is a 2-D array (batch: b×b; spatial: one position's row reshaped to h×w;
    channel: c×c). The models' panels of one kind share one colour scale (equal colours, equal values). With
    ``diff_against`` an extra row shows |model − reference| for the last model.
    """
    models = list(matrices)
    kinds = list(kinds or next(iter(matrices.values())))
    rows = len(models) + (1 if diff_against else 0)
    fig, axes = plt.subplots(rows, len(kinds), figsize=(3 * len(kinds), 2.8 * rows), squeeze=False)
    scale = {k: (min(float(np.min(matrices[m][k])) for m in models), max(float(np.max(matrices[m][k])) for m in models))
             for k in kinds}
    for i, mdl in enumerate(models):
        for j, k in enumerate(kinds):
            im = axes[i, j].imshow(matrices[mdl][k], cmap="viridis", vmin=scale[k][0], vmax=scale[k][1])
            axes[i, j].set_title(f"{mdl}: {k}", fontsize=9)
            fig.colorbar(im, ax=axes[i, j], fraction=0.046)
    if diff_against:
        last = models[-1]
        for j, k in enumerate(kinds):
            a, b = matrices[last][k], matrices[diff_against][k]
            if a.shape != b.shape:  # e.g. channel similarity of a half-width student without adapters
                axes[-1, j].text(0.5, 0.5, f"shapes differ\n{a.shape} vs {b.shape}", ha="center", va="center",
                                 fontsize=8, transform=axes[-1, j].transAxes)
                continue
            im = axes[-1, j].imshow(np.abs(a - b), cmap="magma")
            axes[-1, j].set_title(f"|{last} − {diff_against}|: {k}", fontsize=9)
            fig.colorbar(im, ax=axes[-1, j], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def histogram(values: Sequence[float], *, xlabel: str, title: str = "", ylabel: str = "test images") -> plt.Figure:
    """A histogram of per-image values (e.g. official SAD), with about one bin per three values (5–30 bins)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(values, bins=min(30, max(5, len(values) // 3)))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def loss_terms(log: Mapping[str, np.ndarray], *, title: str = "", x: str = "step") -> plt.Figure:
    """Every loss term of a training log (columns ``alpha*`` and ``kd_*``, unweighted) on a log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for k in (k for k in log if k.startswith(("kd_", "alpha"))):
        ax.plot(log[x], log[k], lw=1, label=k)
    ax.set(xlabel=x, yscale="log", title=title)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def calibration_curves(frame: Sequence[Mapping], table: Sequence[Mapping], *, title: str = "") -> plt.Figure:
    """Left: validation SAD against training compute (TMACs, log scale), one line per setting (teachers solid,
    no-KD students dashed, mean over seeds with ±std band). Right: the gap 1 − SAD_teacher / SAD_student against
    the teacher's compute, one line per (teacher, student at its last step) pair; dotted lines at the 25 % target
    and the paper's 46 %. ``frame`` / ``table``: :func:`matting_lib.studies.calibration.curve_frame` /
    ``study_table``."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r["setting"] for r in frame):
        rows = [r for r in frame if r["setting"] == label]
        x = np.array([r["tmacs"] for r in rows])
        y, e = np.array([r["sad"] for r in rows]), np.array([r["sad_std"] for r in rows])
        style = "-" if rows[0]["kind"] == "teacher" else "--"
        (line,) = ax.plot(x, y, style, marker="o", ms=3, label=f"{label} ({rows[-1]['seeds']} seed(s))")
        if (e > 0).any():
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.15)
    ax.set(xscale="log", xlabel="training compute (TMACs, fwd+bwd ≈ 3 × forward)", ylabel="validation SAD (/1000)",
           title="validation SAD vs training compute")
    ax.legend(fontsize=7)
    for (teacher, student) in dict.fromkeys((r["teacher"], r["student"]) for r in table):
        rows = [r for r in table if r["teacher"] == teacher and r["student"] == student]
        last = max(r["student_step"] for r in rows)
        rows = [r for r in rows if r["student_step"] == last]
        bx.plot([r["teacher_tmacs"] for r in rows], [100 * r["gap"] for r in rows], marker="o", ms=3,
                label=f"{teacher} vs {student} @{last}")
    for level, name in ((25, "target 25 %"), (46, "paper 46 %")):
        bx.axhline(level, ls=":", color="grey")
        bx.text(bx.get_xlim()[0] if table else 0, level, f" {name}", va="bottom", fontsize=7, color="grey")
    bx.set(xscale="log" if table else "linear", xlabel="teacher training compute (TMACs)",
           ylabel="gap: 1 − SAD_teacher / SAD_student (%)", title="teacher vs no-KD student (validation)")
    bx.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
