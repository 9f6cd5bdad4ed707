"""Collect run metrics into the paper's Table 1: mean ± std over seeds, changes relative to the no-KD student,
side by side with the published numbers, as Markdown / CSV / LaTeX, with the paired 95 % intervals of
:func:`matting_lib.reporting.paired_report.with_intervals` as a column where the rows carry them.

Every run folder holds a ``metrics.json`` written by notebook 02 (teacher) or 03 (students)::

    {"config": "spatial+channel", "seed": 0, "kind": "student",
     "metrics": {"official": {"sad": ..., "mse": ..., "grad": ..., "conn": ...}, "spkd": {...}}, ...}

``config`` is ``teacher`` for the teacher run. Nothing in a table is typed by hand.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matting_lib.data.layout import read_gray
from matting_lib.data.synthetic import comp1k_test_kinds, fg_kind
from matting_lib.distillation.distill import ABLATION_CONFIGS
from matting_lib.files import atomic_write_text
from matting_lib.inference.evaluation import prediction_path, qualitative_samples
from matting_lib.metrics import METRIC_KEYS
from matting_lib.paths import RunLayout, metrics_problem
from matting_lib.reporting import paper

ROW_ORDER = tuple(paper.TABLE1)  # teacher, student, hinton, at, fsp, ofd, batch, spatial, channel, s+c, b+s+c


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (0 for one value) and count of one metric over seeds."""

    mean: float
    std: float
    n: int

    def fmt(self, digits: int) -> str:
        if self.n > 1:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}"


def load_records(paths: Iterable[str | Path]) -> list[dict]:
    """Read metrics.json files; raise naming the file when one lacks ``config`` or ``metrics``."""
    records = []
    for p in paths:
        try:
            rec = json.loads(Path(p).read_text())
        except ValueError as err:  # truncated or not JSON
            raise ValueError(f"{p}: not readable JSON ({err}); rerun the run that writes it") from None
        if not isinstance(rec, dict) or "config" not in rec or "metrics" not in rec:
            raise ValueError(f"{p}: not a run metrics file (needs 'config' and 'metrics' keys); "
                             "was it written by notebook 02/03?")
        rec["_path"] = str(p)
        records.append(rec)
    return records


def summarise(records: list[dict], convention: str = "official") -> dict[str, dict[str, Stat]]:
    """Group records by configuration: config -> metric -> Stat over seeds (one record per seed)."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        if convention not in rec["metrics"]:
            raise ValueError(f"{rec.get('_path', rec['config'])}: no {convention!r} metrics; "
                             f"has {', '.join(rec['metrics'])}")
        groups.setdefault(rec["config"], []).append(rec["metrics"][convention])
    out = {}
    for cfg, rows in groups.items():
        out[cfg] = {}
        for m in METRIC_KEYS:
            vals = [float(r[m]) for r in rows]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            out[cfg][m] = Stat(mean, std, len(vals))
    return out


def table_rows(summary: dict[str, dict[str, Stat]], *, baseline: str = "student") -> list[dict]:
    """Table 1 rows in the paper's order: ours (mean, std, n, change vs our no-KD student) and the paper's."""
    rows = []
    base = summary.get(baseline)
    for cfg in [c for c in ROW_ORDER if c in summary] + sorted(set(summary) - set(ROW_ORDER)):
        row = {"config": cfg, "name": paper.DISPLAY_NAMES.get(cfg, cfg), "n": summary[cfg]["sad"].n}
        for m in METRIC_KEYS:
            s = summary[cfg][m]
            row[m], row[f"{m}_std"] = s.mean, s.std
            row[f"{m}_rel"] = paper.relative_change(s.mean, base[m].mean) if base and base[m].mean else None
            published = _published(cfg)
            if published is not None:
                pv = published[m]
                row[f"paper_{m}"] = pv
                row[f"paper_{m}_rel"] = paper.relative_change(pv, paper.table1_row(baseline)[m])
            else:
                row[f"paper_{m}"] = row[f"paper_{m}_rel"] = None
        rows.append(row)
    return rows


def _published(cfg: str) -> dict[str, float] | None:
    """The paper's numbers of a row: Table 1's, or Table 3's for a layer-ablation configuration; None otherwise."""
    if cfg in paper.TABLE1:
        return paper.table1_row(cfg)

    if cfg in ABLATION_CONFIGS and ABLATION_CONFIGS[cfg].layers in paper.TABLE3:
        return dict(zip(METRIC_KEYS, paper.TABLE3[ABLATION_CONFIGS[cfg].layers]))
    return None


_DIGITS = {"sad": 2, "mse": 4, "grad": 2, "conn": 2}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.1f}%"


def _interval_metrics(rows: list[dict]) -> list[str]:
    """The metrics whose paired interval vs the no-KD student the rows carry (``<m>_rel_low``)."""
    return [m for m in METRIC_KEYS if rows and f"{m}_rel_low" in rows[0]]


def _ci(r: dict, m: str) -> str:
    """``-3.9% [-6.5, -1.3]``: the paired change vs the no-KD student and its interval (percent)."""
    mean, low, high = r[f"{m}_rel_paired"], r[f"{m}_rel_low"], r[f"{m}_rel_high"]
    if mean is None:
        return ""
    return _pct(mean) + ("" if math.isnan(low) else f" [{100 * low:+.1f}, {100 * high:+.1f}]")


def _ours(r: dict) -> list[str]:
    """A row's first Markdown cells: its name, its number of seeds and each metric as mean ± std."""
    return [r["name"], str(r["n"])] + [Stat(r[m], r[f"{m}_std"], r["n"]).fmt(_DIGITS[m]) for m in METRIC_KEYS]


def to_markdown(rows: list[dict], *, title: str = "") -> str:
    """A Markdown table: ours (mean ± std, change vs no-KD, and the paired change with its 95 % interval where the
    rows carry one) | the paper's (value, change vs no-KD)."""
    ci = _interval_metrics(rows)
    head = ["Method", "seeds"] + [f"{m.upper()}" for m in METRIC_KEYS] + [f"Δ{m.upper()}" for m in METRIC_KEYS] \
        + [f"Δ{m.upper()} paired [95% CI]" for m in ci] \
        + [f"paper {m.upper()}" for m in METRIC_KEYS] + [f"paper Δ{m.upper()}" for m in METRIC_KEYS]
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(head) + " |",
                                                        "|" + "---|" * len(head)]
    for r in rows:
        cells = _ours(r) + [_pct(r[f"{m}_rel"]) for m in METRIC_KEYS]
        cells += [_ci(r, m) for m in ci]
        cells += ["" if r[f"paper_{m}"] is None else f"{r[f'paper_{m}']:.{_DIGITS[m]}f}" for m in METRIC_KEYS]
        cells += [_pct(r[f"paper_{m}_rel"]) for m in METRIC_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_compact_markdown(rows: list[dict], metric: str = "sad") -> str:
    """Table 1 in eight columns (the README's): the four metrics as mean ± std, the paired change of ``metric`` vs
    the no-KD student with its 95 % interval (rows from :func:`matting_lib.reporting.paired_report.with_intervals`), and
    the paper's change of ``metric``."""
    if metric not in _interval_metrics(rows):
        raise ValueError(f"the rows carry no paired interval of {metric!r}; pass them through "
                         "matting_lib.reporting.paired_report.with_intervals first")
    m = metric.upper()
    head = ["Method", "seeds"] + [k.upper() for k in METRIC_KEYS] + [f"Δ{m} vs no KD [95% CI]", f"paper Δ{m}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = _ours(r) + [_ci(r, metric) or "—", _pct(r[f"paper_{metric}_rel"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    """All columns of :func:`table_rows` as CSV (machine-readable; relative changes as fractions)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["config"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_latex(rows: list[dict], *, caption: str = "") -> str:
    """A booktabs LaTeX table: ours (mean ± std, and the paired change vs no-KD with its 95 % interval where the
    rows carry one) next to the paper's numbers."""
    ci = _interval_metrics(rows)
    cols = "l" + "r" * (2 * len(METRIC_KEYS) + len(ci))
    out = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
           "Method & " + " & ".join(m.upper() for m in METRIC_KEYS) + " & "
           + "".join(rf"$\Delta${m.upper()} [95\% CI] & " for m in ci)
           + " & ".join(f"paper {m.upper()}" for m in METRIC_KEYS) + r" \\", r"\midrule"]
    for r in rows:
        ours = [Stat(r[m], r[f"{m}_std"], r["n"]).fmt(_DIGITS[m]).replace("±", r"$\pm$") for m in METRIC_KEYS]
        theirs = ["--" if r[f"paper_{m}"] is None else f"{r[f'paper_{m}']:.{_DIGITS[m]}f}" for m in METRIC_KEYS]
        ours += [(_ci(r, m) or "--").replace("%", r"\%") for m in ci]
        out.append(r["name"].replace("_", r"\_") + " & " + " & ".join(ours + theirs) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{caption}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# The paper's qualitative claims about Table 1, as (description, better config, worse config).
# "A beats B" means lower SAD. :mod:`matting_lib.paired_report` judges each with a paired interval.
PAPER_ORDERINGS: tuple[tuple[str, str, str], ...] = (
    ("the teacher is better than the no-KD student", "teacher", "student"),
    ("spatial similarity improves on the no-KD student", "spatial", "student"),
    ("channel similarity improves on the no-KD student", "channel", "student"),
    ("spatial+channel improves on spatial alone", "spatial+channel", "spatial"),
    ("spatial+channel improves on channel alone", "spatial+channel", "channel"),
    ("spatial+channel beats batch+spatial+channel", "spatial+channel", "batch+spatial+channel"),
    ("spatial+channel beats the best baseline (OFD)", "spatial+channel", "ofd"),
    ("OFD improves on the no-KD student", "ofd", "student"),
    ("the no-KD student beats batch similarity", "student", "batch"),
    ("the no-KD student beats FSP", "student", "fsp"),
    # Table 3 (profiles/ablation.toml): distilling encoder stages 2-5 beats every other layer set
    ("conv2-5 beats conv3-5 + dconv5 (Table 3)", "spatial+channel", "spatial+channel-Lconv3.conv4.conv5.dconv5"),
    ("conv2-5 beats conv4-5 + dconv5-4 (Table 3)", "spatial+channel", "spatial+channel-Lconv4.conv5.dconv5.dconv4"),
    ("conv2-5 beats conv5 + dconv5-3 (Table 3)", "spatial+channel", "spatial+channel-Lconv5.dconv5.dconv4.dconv3"),
)


def teacher_gap_sentence(summary: dict[str, dict[str, Stat]]) -> str:
    """The teacher's SAD as a share of the no-KD student's, as a sentence beside the paper's 54 % (Table 1: 65.37 vs
    121.77): how far the teacher leads bounds what distillation can transfer. Empty without both rows."""
    if not {"teacher", "student"} <= set(summary):
        return ""
    gap = summary["teacher"]["sad"].mean / summary["student"]["sad"].mean
    return f"The teacher's SAD is {gap:.0%} of the no-KD student's (paper: 54%). " if gap else ""


def collect(runs_dir: str | Path, *, configs: Sequence[str], seeds: int, first_seed: int = 0,
            command: str = "./run_all.sh") -> list[dict]:
    """The teacher's record (``runs_dir/teacher/metrics.json``) and every wanted student's
    (``runs_dir/students/kd-<config>-seed<seed>/metrics.json`` for each configuration and seeds ``first_seed ..
    first_seed + seeds - 1``).

    Nothing else under ``runs_dir`` is read (folders moved aside as ``*.stale-*`` are ignored). Raises
    ``FileNotFoundError`` naming every missing configuration/seed and the command that makes it (``command``: the
    pipeline command of this run, e.g. ``./run_all.sh --profile smoke --runs-dir R``), so a table is never written
    without a row; ``ValueError`` when a file does not belong where it lies.
    """
    runs = RunLayout(runs_dir)
    wanted = [("teacher", None, runs.teacher / "metrics.json")]
    wanted += [(cfg, seed, runs.student(cfg, seed) / "metrics.json")
               for cfg in configs for seed in range(first_seed, first_seed + seeds)]
    missing = [(cfg, seed, path) for cfg, seed, path in wanted if not path.is_file()]
    if missing:
        lines = [f"{'the teacher' if seed is None else f'{cfg} seed {seed}'}: {path} is missing"
                 for cfg, seed, path in missing]
        stages = {"teacher" if seed is None else "distill" for _, seed, _ in missing}
        make = f"{command} --only {stages.pop()}" if len(stages) == 1 else command
        raise FileNotFoundError(
            f"Table 1 needs {len(missing)} run(s) that are missing under {runs_dir}:\n  - " + "\n  - ".join(lines)
            + f"\nMake them with `{make}` (with the other options of this run; finished jobs are skipped), then "
            f"rerun this notebook.")
    for cfg, seed, path in wanted:  # the pipeline's check of the same record: its rerun mends what fails here
        problem = metrics_problem(path, cfg, seed)
        if problem:
            raise ValueError(f"{problem}; rerun that run ({command} --only {'teacher' if seed is None else 'distill'}"
                             f", which runs again every run whose record fails this check), then this notebook")
    return load_records(path for _, _, path in wanted)


RUNS_CSV_FIELDS = ("config", "seed", "convention", *METRIC_KEYS)


def runs_csv(records: Sequence[dict]) -> str:
    """Every run's test metrics, one row per run and convention (``config, seed, convention, sad, mse, grad,
    conn``; values at full precision): what a table was made of, for comparing two machines run by run. The
    teacher's seed is empty. :func:`records_from_runs_csv` reads it back."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RUNS_CSV_FIELDS)
    for rec in records:
        for conv, values in sorted(rec["metrics"].items()):
            writer.writerow([rec["config"], "" if rec.get("seed") is None or rec["config"] == "teacher"
                             else int(rec["seed"]), conv, *(repr(float(values[m])) for m in METRIC_KEYS)])
    return buf.getvalue()


def records_from_runs_csv(text: str, *, source: str = "runs.csv") -> list[dict]:
    """The records of :func:`runs_csv` (``config``, ``seed``, ``metrics`` per convention), for :func:`summarise`.

    Reads a table saved by a spreadsheet too (a UTF-8 byte-order mark, CRLF line ends). Raises ``ValueError``
    naming ``source``, the line and the value for anything that is not a runs table: no header or no rows, a
    metric that is not a number (``abc``, an empty cell), NaN, infinite or negative, a seed that is not a
    non-negative integer, a (configuration, seed, convention) given twice."""
    text = text.removeprefix("\ufeff")
    fix = "fix or remove that row, or write the table again (./run_all.sh --only results)"
    if "\x00" in text:
        raise ValueError(f"{source}: not a text table (it holds NUL bytes); give a runs.csv written by notebook 04")
    if not text.strip():
        raise ValueError(f"{source}: the file is empty; give a runs.csv written by notebook 04 (columns "
                         f"{', '.join(RUNS_CSV_FIELDS)})")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(f.strip() for f in reader.fieldnames or ()) != RUNS_CSV_FIELDS:
        raise ValueError(f"{source}: not a runs table (needs the columns {', '.join(RUNS_CSV_FIELDS)}; its first "
                         f"line is {text.splitlines()[0][:80]!r})")
    reader.fieldnames = list(RUNS_CSV_FIELDS)
    by: dict[tuple[str, str], dict] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for r in reader:
        line = reader.line_num
        if None in r or any(r[k] is None for k in RUNS_CSV_FIELDS):
            raise ValueError(f"{source}, line {line}: expected {len(RUNS_CSV_FIELDS)} cells "
                             f"({', '.join(RUNS_CSV_FIELDS)}); {fix}")
        config, seed, conv = (r[k].strip() for k in ("config", "seed", "convention"))
        if not config or not conv:
            raise ValueError(f"{source}, line {line}: empty {'config' if not config else 'convention'} cell; {fix}")
        if seed and not (seed.isdigit()):
            raise ValueError(f"{source}, line {line}: seed = {seed!r} is not a non-negative integer; {fix}")
        if (config, seed, conv) in seen:
            raise ValueError(f"{source}, lines {seen[config, seed, conv]} and {line}: {config} "
                             f"{'seed ' + seed if seed else '(no seed)'} ({conv}) appears twice; keep one row per "
                             f"run and convention")
        seen[config, seed, conv] = line
        values = {}
        for m in METRIC_KEYS:
            cell = r[m].strip()
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{source}, line {line}: {m} = {cell!r} is not a number ({config}, "
                                 f"{'seed ' + seed if seed else 'no seed'}); {fix}") from None
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{source}, line {line}: {m} = {cell} ({config}, "
                                 f"{'seed ' + seed if seed else 'no seed'}) is not a non-negative finite number; "
                                 f"an error metric never is: {fix}")
            values[m] = v
        rec = by.setdefault((config, seed), {"config": config, "metrics": {}, "_path": source,
                                             "seed": int(seed) if seed else None})
        rec["metrics"][conv] = values
    if not by:
        raise ValueError(f"{source}: holds a header but no runs; give a runs.csv written by notebook 04")
    return list(by.values())


PER_IMAGE_FIELDS = ("config", "seed", "name", "foreground", "kind", *METRIC_KEYS)


def _kind_of(fg_stem: str) -> str:
    """The foreground kind of a test image's foreground (file stem): the synthetic name's kind, else the official
    Composition-1k kind list's, else ``other``."""
    kind = fg_kind(fg_stem)
    if kind == "other":
        kind = {Path(k).stem: v for k, v in comp1k_test_kinds().items()}.get(fg_stem, "other")
    return kind


def per_image_rows(records: Sequence[dict], convention: str = "official") -> list[dict]:
    """Every run's per-image metrics: the ``metrics_<convention>.csv`` that scoring wrote beside each record's
    ``metrics.json`` (:func:`collect` records), one row per run and test image with its foreground and kind.
    A composite ``{bg}!{fg}!{f}!{b}`` belongs to foreground ``fg``. Raises ``FileNotFoundError`` naming the runs
    without the file."""
    missing = [Path(r["_path"]).parent / f"metrics_{convention}.csv" for r in records
               if not (Path(r["_path"]).parent / f"metrics_{convention}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} run(s) have no per-image metrics ({', '.join(map(str, missing[:3]))}"
                                f"{', …' if len(missing) > 3 else ''}); rescore them by rerunning those runs")
    rows = []
    for rec in records:
        path = Path(rec["_path"]).parent / f"metrics_{convention}.csv"
        with path.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                stem = r["name"].removesuffix(".png")
                fg = stem.split("!")[1] if stem.count("!") == 3 else stem
                seed = None if rec.get("seed") is None or rec["config"] == "teacher" else int(rec["seed"])
                rows.append({"config": rec["config"], "seed": seed, "name": stem, "foreground": fg,
                             "kind": _kind_of(fg), **{m: float(r[m]) for m in METRIC_KEYS}})
    return rows


def per_image_csv_gz(rows: Sequence[dict]) -> bytes:
    """:func:`per_image_rows` as a gzip-compressed CSV (values at full precision; no time stamp in the gzip
    header, so the same rows give the same bytes). :func:`read_per_image` reads it back."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PER_IMAGE_FIELDS)
    for r in rows:
        writer.writerow([r["config"], "" if r["seed"] is None else r["seed"], r["name"], r["foreground"], r["kind"],
                         *(repr(float(r[m])) for m in METRIC_KEYS)])
    return gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0)


def read_per_image(path: str | Path) -> list[dict]:
    """The rows of a per-image file written by :func:`per_image_csv_gz` (``.csv.gz``, or a plain ``.csv``)."""
    raw = Path(path).read_bytes()
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a per-image table ({err}); give the runs_per_image.csv.gz notebook 04 "
                         "writes") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != PER_IMAGE_FIELDS:
        raise ValueError(f"{path}: not a per-image table (needs the columns {', '.join(PER_IMAGE_FIELDS)})")
    rows = []
    for r in reader:
        try:
            values = {m: float(r[m]) for m in METRIC_KEYS}
            seed = int(r["seed"]) if r["seed"] else None
        except (TypeError, ValueError):
            raise ValueError(f"{path}, line {reader.line_num}: a seed or metric that is not a number") from None
        rows.append({**r, "seed": seed, **values})
    return rows


def write_tables(rows: list[dict], out_dir: str | Path, stem: str, *, title: str = "") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex`` (atomically) into ``out_dir``."""
    out = Path(out_dir)
    return [atomic_write_text(out / f"{stem}.md", to_markdown(rows, title=title)),
            atomic_write_text(out / f"{stem}.csv", to_csv(rows)),
            atomic_write_text(out / f"{stem}.tex", to_latex(rows, caption=title))]


def hardest_rows(rows: Iterable[dict], n: int, metric: str = "sad") -> list[dict]:
    """The ``n`` per-image rows with the largest ``metric``, largest first (rows without a value left out)."""
    valued = [r for r in rows if r.get(metric) not in ("", None, "nan") and not math.isnan(float(r[metric]))]
    return sorted(valued, key=lambda r: -float(r[metric]))[:n]


def hardest_images(per_image_csv: str | Path, n: int, metric: str = "sad") -> list[str]:
    """Names (file stems) of the ``n`` test images with the largest ``metric`` in a per-image metrics CSV."""
    with open(per_image_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["name"].removesuffix(".png") for r in hardest_rows(rows, n, metric)]


def comparison_samples(items, pred_dirs: dict[str, str | Path], names: Sequence[str]) -> list[dict]:
    """Image, trimap, ground truth and each model's prediction (keyed by its label) for the named test images."""
    samples = qualitative_samples(items, next(iter(pred_dirs.values())), names)
    for s, name in zip(samples, names):
        del s["pred"], s["error"]
        s.update({label: read_gray(prediction_path(d, name)) for label, d in pred_dirs.items()})
    return samples


def best_config(rows: list[dict], among: Sequence[str] | None = None, metric: str = "sad") -> str | None:
    """The configuration with the lowest mean ``metric`` among the student rows (teacher and no-KD student
    excluded), optionally restricted to ``among``; None when there is none."""
    cands = [r for r in rows if r["config"] not in ("teacher", "student") and (among is None or r["config"] in among)]
    return min(cands, key=lambda r: r[metric])["config"] if cands else None
