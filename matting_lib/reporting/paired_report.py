"""Table 1's paired intervals, the verdicts on the paper's orderings and the generated summary, from per-run
records (:mod:`matting_lib.reporting.paired_stats` does the statistics); also a command that pools committed
``runs.csv`` files::

    python -m matting_lib.paired_report docs/constant_lr_runs*.csv

All differences are relative, SAD_A / SAD_B − 1 per seed (fractions in the returned data, percent in text).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from matting_lib.reporting import paper
from matting_lib.reporting.paired_stats import STRONG, compare, median_half_width, pairs_among, seeds_needed
from matting_lib.reporting.results import PAPER_ORDERINGS, records_from_runs_csv


def with_intervals(rows: Sequence[dict], records: Sequence[Mapping], *, baseline: str = "student",
                   metrics: Sequence[str] = ("sad",), convention: str = "official", level: float = 0.95,
                   method: str = "t") -> list[dict]:
    """Table 1 rows (:func:`matting_lib.reporting.results.table_rows`) with each configuration's paired change vs
    ``baseline`` and its interval: ``<m>_rel_paired``, ``<m>_rel_low``, ``<m>_rel_high`` (fractions; None on the
    baseline's own row and on every row when no run of ``baseline`` is among the records).
    :func:`matting_lib.reporting.results.to_markdown` / ``to_latex`` show them as a column."""
    out, has_baseline = [], any(r["config"] == baseline for r in records)
    for row in rows:
        row = dict(row)
        for m in metrics:
            c = None if row["config"] == baseline or not has_baseline else compare(
                records, row["config"], baseline, metric=m, convention=convention, level=level, method=method)
            row[f"{m}_rel_paired"], row[f"{m}_rel_low"], row[f"{m}_rel_high"] = (
                (None, None, None) if c is None else (c["mean"], c["low"], c["high"]))
        out.append(row)
    return out


def orderings(records: Sequence[Mapping], claims: Sequence[tuple[str, str, str]] = PAPER_ORDERINGS,
              **kw) -> list[dict]:
    """Each claim (text, better, worse) whose two configurations have runs, judged by
    :func:`matting_lib.reporting.paired_stats.compare` (keywords ``metric``, ``convention``, ``level``, ``method``,
    ``margin`` pass through); every dict gets the claim's ``claim`` text."""
    have = {r["config"] for r in records}
    return [{"claim": text, **compare(records, a, b, **kw)} for text, a, b in claims if {a, b} <= have]


def strong_pairs(records: Sequence[Mapping], configs: Sequence[str] = STRONG, **kw) -> list[dict]:
    """The pairs among ``configs`` that have runs (ten for :data:`~matting_lib.reporting.paired_stats.STRONG`), each as
    the claim "A is better than B" in the order of the paper's Table 1, judged like :func:`orderings`."""
    claims = [(f"{paper.DISPLAY_NAMES.get(a, a)} is better than {paper.DISPLAY_NAMES.get(b, b)}", a, b)
              for a, b in pairs_among([c for c in configs if c in paper.TABLE1], paper.TABLE1)]
    return orderings(records, claims, **kw)


def _pct(x: float) -> str:
    """A fraction as percent with one decimal (``0.0602`` -> ``6.0 %``)."""
    return f"{100 * x:.1f} %"


def _level(x: float) -> str:
    """A level or margin as percent without trailing zeros (``0.95`` -> ``95 %``)."""
    return f"{100 * x:g} %"


def _line(c: Mapping) -> str:
    small = ", by less than the margin" if c["verdict"] in ("holds", "reversed") and c["within_margin"] else ""
    return f"{c['claim']}: **{c['verdict']}**{small}, {c['interval'].fmt()} ({c['n']} seeds)"


def precision_sentence(pairs: Sequence[Mapping], *, target: float = 0.03, level: float = 0.95) -> str:
    """The median half-width over ``pairs`` (:func:`strong_pairs`), the target, and the seeds the median
    per-seed std of those differences needs to reach the target. Empty when no pair has an interval."""
    half = median_half_width(pairs)
    stds = [p["std"] for p in pairs if math.isfinite(p["std"])]
    if not stds:
        return ""
    std = statistics.median(stds)
    return (f"Median {_level(level)} half-width over the {len(pairs)} pair{'s' if len(pairs) != 1 else ''} among "
            f"{', '.join(sorted({p['a'] for p in pairs} | {p['b'] for p in pairs}))}: {_pct(half)} (target ≤ "
            f"{_level(target)}); at their median per-seed std of {_pct(std)}, ±{_level(target)} needs about "
            f"{seeds_needed(std, target, level=level)} seeds per configuration.")


def summary_markdown(records: Sequence[Mapping], *, margin: float = 0.03, level: float = 0.95,
                     method: str = "t", metric: str = "sad", convention: str = "official") -> str:
    """The generated summary: one verdict per paper ordering with mean and interval, then the median half-width
    over the pairs among :data:`~matting_lib.reporting.paired_stats.STRONG` and the seeds needed for ±``margin``."""
    kw = dict(metric=metric, convention=convention, level=level, method=method, margin=margin)
    rep = orderings(records, **kw)
    if not rep:
        return "Not enough runs to compare any of the paper's orderings.\n"
    counts = ", ".join(f"{v} {sum(r['verdict'] == v for r in rep)}" for v in ("holds", "reversed", "equivalent",
                                                                              "undecided"))
    how = "t-interval" if method == "t" else "bootstrap (BCa) interval"
    m = metric.upper()
    lines = [f"Each of the paper's {len(rep)} orderings \"A is better than B\" is judged by the paired relative "
             f"difference {m}_A / {m}_B − 1 over the seeds both have (mean and {_level(level)} {how}): *holds* "
             f"when the interval lies below 0, *reversed* when above 0, *equivalent* when it includes 0 and lies "
             f"within ±{_level(margin)}, *undecided* otherwise. Here: {counts}.", ""]
    lines += [f"- {_line(r)}" for r in rep]
    precision = precision_sentence(strong_pairs(records, **kw), target=margin, level=level)
    notes = sorted({note for r in rep for note in r["dropped"]})
    skewed = [r["claim"] for r in rep if r["normality_p"] < 0.05]
    if skewed and method == "t":
        notes.append(f"Shapiro–Wilk p < 0.05 for the per-seed differences of: {'; '.join(skewed)}. The t-interval "
                     "assumes normal differences: compare with the bootstrap interval (method \"bootstrap\").")
    return "\n".join(lines + ([""] + [precision] if precision else [])
                     + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def pooled_records(paths: Sequence[str | Path]) -> list[dict]:
    """The records of several ``runs.csv`` files, each labelled with its path as ``source`` (pairs stay within
    one file). Raises ``ValueError`` naming a file that is not a runs table."""
    out = []
    for p in paths:
        for rec in records_from_runs_csv(Path(p).read_text(encoding="utf-8"), source=str(p)):
            out.append({**rec, "source": str(p)})
    return out


def identical_runs(records: Sequence[Mapping], *, metric: str = "sad", convention: str = "official") -> list[str]:
    """One note per seeded run whose ``metric`` is bit-identical in two or more sources: the same training
    recorded twice, which pooling counts as two seeds (its intervals are then somewhat too narrow)."""
    seen: dict[tuple[str, int, float], list[str]] = {}
    for r in records:
        if r.get("seed") is not None and r["config"] != "teacher" and convention in r["metrics"]:
            key = (r["config"], int(r["seed"]), float(r["metrics"][convention][metric]))
            seen.setdefault(key, []).append(str(r.get("source", "")))
    return [f"{cfg} seed {seed} is identical in {' and '.join(srcs)}: one training counted {len(srcs)} times"
            for (cfg, seed, _), srcs in seen.items() if len(srcs) > 1]


def report_markdown(records: Sequence[Mapping], extra: Sequence[tuple[str, str]] = (), **kw) -> str:
    """Markdown tables (the paper's orderings; the pairs among the strong configurations, in the paper's order;
    the ``extra`` (A, B) pairs, if any) with seeds, mean, interval, per-seed std, the Shapiro–Wilk p-value of the
    per-seed differences and the verdict, the precision sentence and the notes on runs counted twice."""
    head = ["| claim: A is better than B | seeds | A/B − 1, mean [95 % CI] | per-seed std | Shapiro–Wilk p "
            "| verdict |", "|---|---|---|---|---|---|"]

    def table(reps: Sequence[Mapping]) -> list[str]:
        return head + [f"| {r['claim']} | {r['n']} | {r['interval'].fmt()} | {_pct(r['std'])} | "
                       f"{r['normality_p']:.2f} | {r['verdict']} |" for r in reps]

    pairs = strong_pairs(records, **kw)
    out = ["The paper's orderings:", ""] + table(orderings(records, **kw))
    out += ["", "The pairs among the strong configurations, ordered as in the paper's Table 1:", ""] + table(pairs)
    if extra:
        claims = [(f"{paper.DISPLAY_NAMES.get(a, a)} is better than {paper.DISPLAY_NAMES.get(b, b)}", a, b)
                  for a, b in extra]
        out += ["", "Further pairs:", ""] + table(orderings(records, claims, **kw))
    precision = precision_sentence(pairs, target=kw.get("margin", 0.03), level=kw.get("level", 0.95))
    twice = identical_runs(records, convention=kw.get("convention", "official"))
    return "\n".join(out + ["", precision] + ([""] + [f"- {t}" for t in twice] if twice else [])) + "\n"


def _student_values(records: Sequence[Mapping], convention: str, metric: str) -> dict[tuple[str, int], float]:
    """Every seeded student run's ``metric`` by (configuration, seed)."""
    return {(r["config"], int(r["seed"])): float(r["metrics"][convention][metric]) for r in records
            if r.get("seed") is not None and r["config"] != "teacher"}


def compare_markdown(a: Sequence[Mapping], b: Sequence[Mapping], names: tuple[str, str] = ("A", "B"),
                     **kw) -> str:
    """Two runs of one profile side by side (neither pooled with the other): how many student runs are
    bit-identical and how far apart the rest are, then every ordering of the paper and every pair among
    :data:`~matting_lib.reporting.paired_stats.STRONG` with each run's verdict and interval, and which verdicts differ.
    Keywords ``metric``, ``convention``, ``level``, ``method``, ``margin`` pass to
    :func:`matting_lib.reporting.paired_stats.compare`."""
    conv, m = kw.get("convention", "official"), kw.get("metric", "sad")
    sa, sb = _student_values(a, conv, m), _student_values(b, conv, m)
    common = sorted(set(sa) & set(sb))
    if not common:
        raise ValueError(f"{names[0]} and {names[1]} have no student run (configuration, seed) in common")
    diff = [abs(sa[k] - sb[k]) for k in common]
    teacher = [float(r["metrics"][conv][m]) for recs in (a, b) for r in recs if r["config"] == "teacher"]
    t_line = (
        ""
        if len(teacher) != 2
        else f" The teacher's test {m.upper()} is "
        + (
            f"identical ({teacher[0]:.6f})."
            if teacher[0] == teacher[1]
            else f"{teacher[0]:.6f} against {teacher[1]:.6f}."
        )
    )
    lines = [f"Student runs in both: {len(common)}; bit-identical {m.upper()}: {sum(d == 0 for d in diff)}; mean "
             f"|Δ{m.upper()}| per run {statistics.mean(diff):.3f}, largest {max(diff):.3f}.{t_line}", ""]
    ra, rb = orderings(a, **kw), orderings(b, **kw)
    pa, pb = strong_pairs(a, **kw), strong_pairs(b, **kw)
    seen = {frozenset((r["a"], r["b"])) for r in ra}
    rows = list(zip(ra, rb)) + [(x, y) for x, y in zip(pa, pb) if frozenset((x["a"], x["b"])) not in seen]
    if [(x["a"], x["b"]) for x, _ in rows] != [(y["a"], y["b"]) for _, y in rows]:
        raise ValueError(f"{names[0]} and {names[1]} do not hold the same configurations: compare runs of one profile")
    lines += [f"| claim: A is better than B | {names[0]} | {names[1]} | same verdict |", "|---|---|---|---|"]
    lines += [f"| {x['claim']} | {x['verdict']}, {x['interval'].fmt()} | {y['verdict']}, {y['interval'].fmt()} | "
              f"{'yes' if x['verdict'] == y['verdict'] else '**no**'} |" for x, y in rows]
    differ = [f"{x['claim']} ({x['verdict']} → {y['verdict']})" for x, y in rows if x["verdict"] != y["verdict"]]
    lines += [
        "",
        f"Same verdict on {len(rows) - len(differ)} of {len(rows)}"
        + (f"; different on: {'; '.join(differ)}." if differ else ".")
        + f" Median {_level(kw.get('level', 0.95))} half-width over the {len(pa)} strong "
        f"pair{'s' if len(pa) != 1 else ''}: "
        f"{_pct(median_half_width(pa))} ({names[0]}), {_pct(median_half_width(pb))} ({names[1]}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Print :func:`report_markdown` for the pooled ``runs.csv`` files named on the command line."""
    ap = argparse.ArgumentParser(prog="python -m matting_lib.paired_report", description=(
        "Verdicts on the paper's orderings from per-run metrics (runs.csv files written by notebook 04), "
        "paired by (file, seed) and pooled over the files."))
    ap.add_argument("files", nargs="+", help="runs.csv files (e.g. docs/constant_lr_runs*.csv)")
    ap.add_argument("--compare", action="store_true",
                    help="two runs.csv files of one profile side by side, verdict by verdict, not pooled")
    ap.add_argument("--method", choices=("t", "bootstrap"), default="t", help="interval (default: t)")
    ap.add_argument("--margin", type=float, default=0.03, help="equivalence margin, a fraction (default 0.03)")
    ap.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    ap.add_argument("--pair", action="append", default=[], metavar="A:B",
                    help="a further ordering 'A is better than B' to judge, e.g. ofd:spatial+channel (repeatable)")
    ap.add_argument("--convention", choices=("official", "spkd"), default="official",
                    help="metric convention (default: official)")
    args = ap.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    twice = sorted({f for f in args.files if args.files.count(f) > 1})
    if twice:
        ap.error(f"{', '.join(twice)} is named twice: name each runs.csv once")
    bad = [p for p in args.pair if p.count(":") != 1]
    if bad:
        ap.error(f"--pair takes A:B (two configuration names), got {', '.join(bad)}")
    extra = [tuple(p.split(":")) for p in args.pair]
    kw = dict(method=args.method, margin=args.margin, level=args.level, convention=args.convention)
    if args.compare:
        if len(args.files) != 2 or extra:
            ap.error("--compare takes exactly two runs.csv files and no --pair")
        try:
            print(compare_markdown(*(pooled_records([f]) for f in args.files), names=tuple(args.files), **kw), end="")
        except ValueError as e:
            ap.error(str(e))
        return
    records = pooled_records(args.files)
    have = {r["config"] for r in records}
    unknown = sorted({c for pair in extra for c in pair} - have)
    if unknown:
        ap.error(f"--pair names {', '.join(unknown)}, which the files have no runs of; they have "
                 f"{', '.join(sorted(have))}")
    print(report_markdown(records, extra, **kw), end="")
