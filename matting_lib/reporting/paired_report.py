"""Table 1's paired intervals, the verdicts on the paper's orderings and the generated summary, from per-run
records (:mod:`matting_lib.reporting.paired_stats` does the statistics); also a command that reads committed
``runs.csv`` files::

    python -m matting_lib.paired_report docs/default_runs.csv
    python -m matting_lib.paired_report docs/constant_lr_runs*.csv          # pooled, seeds as units
    python -m matting_lib.paired_report --compare docs/default_runs.csv docs/default_threads2_runs.csv

Every comparison is the paired log ratio ln(SAD_A / SAD_B) per seed, shown as the change exp(x) − 1 (fractions in
the returned data, percent in text). **The primary family** is the paper's orderings that the records hold
(:data:`matting_lib.reporting.results.PAPER_ORDERINGS`: Table 1's ten, Table 3's three), judged together with Holm
(:func:`matting_lib.reporting.paired_stats.family_verdicts`); everything else — each configuration against the no-KD
student and the pairs among the strong configurations that are not in the family, ``--pair`` — is
**exploratory**: unadjusted intervals, a verdict from the interval alone.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from matting_lib.data.output_safety import check_output
from matting_lib.reporting import figures, paper, results
from matting_lib.reporting.paired_stats import (
    ALPHA,
    MARGIN,
    STRONG,
    compare,
    image_bootstrap,
    judge,
    leave_one_out,
    median_half_width,
    pairs_among,
    per_kind_changes,
    seeds_needed,
)
from matting_lib.reporting.results import PAPER_ORDERINGS, read_per_image, records_from_runs_csv

Claim = tuple[str, str, str]  # (text, better, worse)
STAT_KEYS = ("metric", "convention", "level", "method", "margin", "cluster")


def _stat_kw(kw: Mapping) -> dict:
    """The keywords :func:`matting_lib.reporting.paired_stats.compare` takes, from ``kw``; refuses any other."""
    unknown = set(kw) - set(STAT_KEYS)
    if unknown:
        raise TypeError(f"unknown keyword(s) {', '.join(sorted(unknown))}; valid: {', '.join(STAT_KEYS)}")
    return dict(kw)


def with_intervals(rows: Sequence[dict], records: Sequence[Mapping], *, baseline: str = "student",
                   metrics: Sequence[str] = ("sad",), convention: str = "official", level: float = 0.95,
                   method: str = "t") -> list[dict]:
    """Table 1 rows (:func:`matting_lib.reporting.results.table_rows`) with each configuration's paired change vs
    ``baseline`` and its unadjusted interval (log ratio shown as exp(x) − 1): ``<m>_rel_paired``, ``<m>_rel_low``,
    ``<m>_rel_high`` (fractions; None on the baseline's own row and on every row when no run of ``baseline`` is
    among the records). :func:`matting_lib.reporting.results.to_markdown` / ``to_latex`` show them as a column."""
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


def _name(c: str) -> str:
    return paper.DISPLAY_NAMES.get(c, c)


def family_claims(records: Sequence[Mapping]) -> list[Claim]:
    """The primary family: the paper's orderings whose two configurations the records hold."""
    have = {r["config"] for r in records}
    return [(t, a, b) for t, a, b in PAPER_ORDERINGS if {a, b} <= have]


def exploratory_claims(records: Sequence[Mapping], extra: Sequence[tuple[str, str]] = ()) -> list[Claim]:
    """Outside the family: each configuration against the no-KD student, then each pair among
    :data:`~matting_lib.reporting.paired_stats.STRONG` in the paper's order — leaving out every pair the family already
    judges, in either direction — then the ``extra`` pairs in their own direction (unless given twice)."""
    have = [c for c in dict.fromkeys(r["config"] for r in records)]
    ordered = [c for c in paper.TABLE1 if c in have] + [c for c in have if c not in paper.TABLE1]
    seen = {frozenset((a, b)) for _, a, b in family_claims(records)}
    out = []
    pairs = [(c, "student") for c in ordered if c != "student" and "student" in have]
    pairs += pairs_among([c for c in STRONG if c in have], paper.TABLE1)
    for a, b in pairs + list(extra):
        key = frozenset((a, b)) if (a, b) in pairs else (a, b)
        if key in seen:
            continue
        seen.add(key)
        text = f"{_name(a)} improves on the no-KD student" if b == "student" else \
            f"{_name(a)} is better than {_name(b)}"
        out.append((text, a, b))
    return out


def judged(records: Sequence[Mapping], claims: Sequence[Claim], *, family: bool, alpha: float = ALPHA,
           stability: bool = True, **kw) -> list[dict]:
    """Each claim judged (:func:`matting_lib.reporting.paired_stats.judge`: as one Holm family, or each unadjusted),
    with its text as ``claim`` and the leave-one-seed-out stability as ``loo`` (kept, subsets)."""
    kw = _stat_kw(kw)
    pairs = [(a, b) for _, a, b in claims]
    reps = judge(records, pairs, family=family, alpha=alpha, **kw)
    loo = leave_one_out(records, pairs, family=family, alpha=alpha, **kw) if stability else [(0, 0)] * len(pairs)
    return [{"claim": text, **r, "loo": s} for (text, _, _), r, s in zip(claims, reps, loo)]


def orderings(records: Sequence[Mapping], claims: Sequence[Claim] | None = None, **kw) -> list[dict]:
    """The primary family (``claims``: default :func:`family_claims`) with its Holm verdicts."""
    return judged(records, family_claims(records) if claims is None else claims, family=True, **kw)


def strong_pairs(records: Sequence[Mapping], configs: Sequence[str] = STRONG, **kw) -> list[dict]:
    """The pairs among ``configs`` that have runs (ten for :data:`~matting_lib.reporting.paired_stats.STRONG`), each as
    the claim "A is better than B" in the order of the paper's Table 1, each with its unadjusted verdict (the
    precision of the comparisons is measured on them)."""
    have = {r["config"] for r in records}
    claims = [(f"{_name(a)} is better than {_name(b)}", a, b)
              for a, b in pairs_among([c for c in configs if c in paper.TABLE1 and c in have], paper.TABLE1)]
    return judged(records, claims, family=False, stability=False, **kw)


def _pct(x: float) -> str:
    """A fraction as percent with one decimal (``0.0602`` -> ``6.0 %``)."""
    return f"{100 * x:.1f} %"


def _level(x: float) -> str:
    """A level or margin as percent without trailing zeros (``0.95`` -> ``95 %``)."""
    return f"{100 * x:g} %"


def _p(x: float) -> str:
    """A p-value: three decimals, ``< 0.001`` below, ``—`` when there is none."""
    return "—" if not math.isfinite(x) else "< 0.001" if x < 0.001 else f"{x:.3f}"


def _seeds(c: Mapping) -> str:
    return f"{c['n']}" + (f" ({c['runs']} runs)" if c["runs"] > c["n"] else "")


def _loo(c: Mapping) -> str:
    kept, total = c["loo"]
    return f"{kept} of {total}" if total else "—"


def _small(c: Mapping) -> str:
    return ", by less than the margin" if c["verdict"] in ("holds", "reversed") and c["within_margin"] else ""


def precision_sentence(pairs: Sequence[Mapping], *, target: float = MARGIN, level: float = 0.95) -> str:
    """The median half-width of the log ratio over ``pairs`` (:func:`strong_pairs`), the target ln(1 + ``target``),
    and the seeds the median per-seed std of those log ratios needs to reach it. Empty when no pair has an
    interval."""
    half = median_half_width(pairs)
    stds = [p["std"] for p in pairs if math.isfinite(p["std"])]
    if not stds:
        return ""
    std, goal = statistics.median(stds), math.log1p(target)
    return (f"Median {_level(level)} half-width of the log ratio over the {len(pairs)} pair"
            f"{'s' if len(pairs) != 1 else ''} among "
            f"{', '.join(sorted({p['a'] for p in pairs} | {p['b'] for p in pairs}))}: {_pct(half)} (target ≤ "
            f"ln(1 + {_level(target)}) = {_pct(goal)}); at their median per-seed std of {_pct(std)}, that needs "
            f"about {seeds_needed(std, goal, level=level)} seeds per configuration.")


def _rules(k: int, margin: float, level: float, alpha: float, metric: str) -> str:
    m = metric.upper()
    return (f"The primary family is the paper's {k} ordering{'s' if k != 1 else ''} that this run holds. Each "
            f"\"A is better than B\" is judged on the paired log ratio ln({m}_A / {m}_B) over the seeds (mean and "
            f"{_level(level)} t-interval, shown as the change exp(x) − 1) by two tests: no difference (t-test) and a "
            f"difference of at least a factor 1 + {_level(margin)} (TOST, each side at {_level(alpha / 2)}). All "
            f"of them enter one Holm step-down at family-wise α = {alpha:g}: *holds* or *reversed* when the "
            f"difference test rejects, *equivalent* when the TOST rejects, *undecided* otherwise.")


def _family_line(c: Mapping) -> str:
    return (f"{c['claim']}: **{c['verdict']}**{_small(c)}, {c['interval'].fmt()} ({_seeds(c)} seeds; p {_p(c['p'])}, "
            f"Holm {_p(c['p_adj'])}; TOST p {_p(c['p_tost'])}, Holm {_p(c['p_tost_adj'])}; the verdict stays "
            f"without any one seed in {_loo(c)})")


def _exploratory_line(c: Mapping) -> str:
    return (f"{c['claim']}: {c['verdict']}{_small(c)}, {c['interval'].fmt()} ({_seeds(c)} seeds; p {_p(c['p'])}; "
            f"stays without any one seed in {_loo(c)})")


def summary_markdown(records: Sequence[Mapping], *, margin: float = MARGIN, level: float = 0.95,
                     method: str = "t", metric: str = "sad", convention: str = "official",
                     alpha: float = ALPHA) -> str:
    """The generated summary: the primary family's Holm verdicts with interval, p-values and leave-one-seed-out
    stability, the exploratory comparisons with their unadjusted intervals, and the median half-width over the
    pairs among :data:`~matting_lib.reporting.paired_stats.STRONG` with the seeds needed for ±``margin``."""
    kw = dict(metric=metric, convention=convention, level=level, method=method, margin=margin)
    rep = orderings(records, alpha=alpha, **kw)
    if not rep:
        return "Not enough runs to compare any of the paper's orderings.\n"
    counts = ", ".join(f"{v} {sum(r['verdict'] == v for r in rep)}" for v in ("holds", "reversed", "equivalent",
                                                                              "undecided"))
    lines = [_rules(len(rep), margin, level, alpha, metric) + f" Here: {counts}.", ""]
    lines += [f"- {_family_line(r)}" for r in rep]
    explo = judged(records, exploratory_claims(records), family=False, **kw)
    if explo:
        lines += ["", f"Exploratory, outside the family (unadjusted {_level(level)} intervals; the verdict from the "
                      f"interval alone, *equivalent* when it lies within the margin, i.e. TOST at "
                      f"{_level((1 - level) / 2)} per side):", ""]
        lines += [f"- {_exploratory_line(r)}" for r in explo]
    precision = precision_sentence(strong_pairs(records, **kw), target=margin, level=level)
    notes = sorted({note for r in rep + explo for note in r["dropped"]})
    skewed = [r["claim"] for r in rep if r["normality_p"] < 0.05]
    if skewed and method == "t":
        notes.append(f"Shapiro–Wilk p < 0.05 for the per-seed log ratios of: {'; '.join(skewed)}. The t-interval "
                     "assumes normal differences: compare with the bootstrap interval (method \"bootstrap\").")
    return "\n".join(lines + ([""] + [precision] if precision else [])
                     + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def read_runs_csv(path: str | Path) -> list[dict]:
    """The records of one ``runs.csv`` labelled with its path as ``source``; ``ValueError`` naming the file when
    it cannot be read as a runs table (not UTF-8 text, a folder, unreadable)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ValueError(f"{p}: cannot be read ({err.strerror or err}); give a runs.csv written by notebook 04") \
            from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text table (not UTF-8; a binary file or a spreadsheet's own format?); save "
                         "it as CSV (UTF-8) or give the runs.csv notebook 04 writes") from None
    return [{**rec, "source": str(p)} for rec in records_from_runs_csv(text, source=str(p))]


def identical_runs(records: Sequence[Mapping], *, metric: str = "sad", convention: str = "official") -> list[str]:
    """One note per seeded run whose ``metric`` is bit-identical in two or more sources: the same training
    recorded twice (seeds as units average it with itself; as separate units it would count twice)."""
    seen: dict[tuple[str, int, float], list[str]] = {}
    for r in records:
        if r.get("seed") is not None and r["config"] != "teacher" and convention in r["metrics"]:
            key = (r["config"], int(r["seed"]), float(r["metrics"][convention][metric]))
            seen.setdefault(key, []).append(str(r.get("source", "")))
    return [f"{cfg} seed {seed} is identical in {' and '.join(srcs)}: one training recorded {len(srcs)} times"
            for (cfg, seed, _), srcs in seen.items() if len(srcs) > 1]


def report_markdown(records: Sequence[Mapping], extra: Sequence[tuple[str, str]] = (), *, alpha: float = ALPHA,
                    **kw) -> str:
    """Markdown tables: the primary family with p-values, Holm-adjusted p-values, the verdict and its
    leave-one-seed-out stability; the exploratory comparisons (:func:`exploratory_claims`, with the ``extra``
    (A, B) pairs) unadjusted; the precision sentence and notes (runs recorded twice, units)."""
    kw = _stat_kw(kw)
    margin, level = kw.get("margin", MARGIN), kw.get("level", 0.95)
    fam = orderings(records, alpha=alpha, **kw)
    out = ["Primary family, the paper's orderings (Holm over the family, α = " f"{alpha:g}):", "",
           f"| claim: A is better than B | seeds | A/B − 1 [{_level(level)} CI] | per-seed std (log) | p | TOST p | "
           "Holm p: difference, equivalence | verdict | unadjusted | stays without one seed |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['claim']} | {_seeds(r)} | {r['interval'].fmt()} | {_pct(r['std'])} | {_p(r['p'])} | "
            f"{_p(r['p_tost'])} | {_p(r['p_adj'])}, {_p(r['p_tost_adj'])} | **{r['verdict']}** | "
            f"{r['verdict_unadjusted']} | {_loo(r)} |" for r in fam]
    explo = judged(records, exploratory_claims(records, extra), family=False, **kw)
    if explo:
        out += [
            "",
            f"Exploratory, unadjusted (verdict from the {_level(level)} interval alone):",
            "",
            f"| claim: A is better than B | seeds | A/B − 1 [{_level(level)} CI] | per-seed std (log) | p | TOST p | "
            "verdict | stays without one seed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += [f"| {r['claim']} | {_seeds(r)} | {r['interval'].fmt()} | {_pct(r['std'])} | {_p(r['p'])} | "
                f"{_p(r['p_tost'])} | {r['verdict']} | {_loo(r)} |" for r in explo]
    precision = precision_sentence(strong_pairs(records, **kw), target=margin, level=level)
    notes = identical_runs(records, convention=kw.get("convention", "official"))
    multi = max((r["runs"] / r["n"] for r in fam + explo), default=1)
    if multi > 1 and kw.get("cluster", True):
        notes.insert(0, "seeds are the units: a seed's log ratios in the several files are averaged before the "
                        "interval (runs of one seed share initialisation and batches)")
    return "\n".join(out + ["", precision] + ([""] + [f"- {t}" for t in notes] if notes else [])) + "\n"


def _student_values(records: Sequence[Mapping], convention: str, metric: str) -> dict[tuple[str, int], float]:
    """Every seeded student run's ``metric`` by (configuration, seed)."""
    return {(r["config"], int(r["seed"])): float(r["metrics"][convention][metric]) for r in records
            if r.get("seed") is not None and r["config"] != "teacher"}


def compare_markdown(a: Sequence[Mapping], b: Sequence[Mapping], names: tuple[str, str] = ("A", "B"),
                     **kw) -> str:
    """Two runs of one profile side by side (neither pooled with the other): how many student runs are
    bit-identical and how far apart the rest are, then the primary family (Holm, per run) and the pairs among
    :data:`~matting_lib.reporting.paired_stats.STRONG` outside it (exploratory) with each run's verdict and interval,
    and which verdicts differ. Keywords as :func:`matting_lib.reporting.paired_stats.compare`."""
    kw = _stat_kw(kw)
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
    fam = family_claims(a)
    if [c[1:] for c in fam] != [c[1:] for c in family_claims(b)]:
        raise ValueError(f"{names[0]} and {names[1]} do not hold the same configurations: compare runs of one profile")
    seen = {frozenset(c[1:]) for c in fam}
    strong = [(f"{_name(x)} is better than {_name(y)} (exploratory)", x, y)
              for x, y in pairs_among([c for c in STRONG if c in {r['config'] for r in a}], paper.TABLE1)
              if frozenset((x, y)) not in seen]
    rows = list(
        zip(judged(a, fam, family=True, stability=False, **kw), judged(b, fam, family=True, stability=False, **kw))
    )
    rows += list(zip(judged(a, strong, family=False, stability=False, **kw),
                     judged(b, strong, family=False, stability=False, **kw)))
    lines += [f"| claim: A is better than B | {names[0]} | {names[1]} | same verdict |", "|---|---|---|---|"]
    lines += [f"| {x['claim']} | {x['verdict']}, {x['interval'].fmt()} | {y['verdict']}, {y['interval'].fmt()} | "
              f"{'yes' if x['verdict'] == y['verdict'] else '**no**'} |" for x, y in rows]
    differ = [f"{x['claim']} ({x['verdict']} → {y['verdict']})" for x, y in rows if x["verdict"] != y["verdict"]]
    pa, pb = strong_pairs(a, **kw), strong_pairs(b, **kw)
    lines += ["", f"Verdicts of the family with Holm within each run, the exploratory pairs unadjusted. Same verdict "
                  f"on {len(rows) - len(differ)} of {len(rows)}" + (f"; different on: {'; '.join(differ)}." if differ
                                                                  else ".")
              + f" Median {_level(kw.get('level', 0.95))} half-width of the log ratio over the {len(pa)} strong "
              f"pair{'s' if len(pa) != 1 else ''}: {_pct(median_half_width(pa))} ({names[0]}), "
              f"{_pct(median_half_width(pb))} ({names[1]})."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- per image: kinds, bootstrap
def per_kind_markdown(rows: Sequence[Mapping], *, baseline: str = "student", metric: str = "sad",
                      level: float = 0.95) -> str:
    """Table 1 per foreground kind from per-image metrics (:func:`matting_lib.reporting.results.per_image_rows`): the
    mean ``metric`` over the kind's test images (mean over seeds), and each configuration's paired change against
    ``baseline`` per kind with its unadjusted interval over seeds."""
    kinds = sorted({r["kind"] for r in rows})
    have = list(dict.fromkeys(r["config"] for r in rows))
    configs = [c for c in paper.TABLE1 if c in have] + [c for c in have if c not in paper.TABLE1]
    images = {k: len({r["name"] for r in rows if r["kind"] == k}) for k in kinds}
    m = metric.upper()
    head = "| Method | " + " | ".join(f"{k} ({images[k]})" for k in kinds) + " |"
    sep = "|---|" + "---|" * len(kinds)
    means = []
    for c in configs:
        cells = []
        for k in kinds:
            per_seed: dict = {}
            for r in rows:
                if r["config"] == c and r["kind"] == k:
                    per_seed.setdefault(r["seed"], []).append(float(r[metric]))
            cells.append(f"{statistics.mean(statistics.mean(v) for v in per_seed.values()):.2f}")
        means.append(f"| {_name(c)} | " + " | ".join(cells) + " |")
    out = [f"Mean {m} per foreground kind (test images of that kind in brackets; mean over seeds):", "", head, sep]
    out += means
    if baseline in have:
        out += ["", f"Δ{m} against the no-KD student per kind, paired by seed: exp(mean log ratio) − 1 with its "
                    f"{_level(level)} t-interval (unadjusted):", "", head, sep]
        for c in configs:
            if c != baseline:
                ch = per_kind_changes(rows, c, baseline, metric=metric, level=level)
                out.append(f"| {_name(c)} | " + " | ".join(ch[k].fmt() for k in kinds) + " |")
    return "\n".join(out) + "\n"


def image_bootstrap_markdown(rows: Sequence[Mapping], claims: Sequence[Claim], *, metric: str = "sad",
                             level: float = 0.95, n_boot: int = 4000) -> str:
    """For each claim, the interval of the log ratio when the seeds, the test foregrounds or both are resampled
    (:func:`matting_lib.reporting.paired_stats.image_bootstrap`), and how much wider the test images make it."""
    out = ["| claim: A is better than B | estimate | seeds resampled | foregrounds resampled | both | "
           "width, both / seeds |", "|---|---|---|---|---|---|"]
    for text, a, b in claims:
        try:
            iv = image_bootstrap(rows, a, b, metric=metric, level=level, n_boot=n_boot)
        except ValueError as err:  # fewer than 2 seeds or foregrounds: nothing to resample
            out.append(f"| {text} | {err} | | | | |")
            continue
        s, i, both = iv["seeds"], iv["images"], iv["seeds × images"]
        ratio = both.half_width / s.half_width if s.half_width > 0 else math.nan
        out.append(f"| {text} | {100 * math.expm1(s.mean):+.1f}% | {_bracket(s)} | {_bracket(i)} | {_bracket(both)} "
                   f"| {ratio:.2f} |")
    return "\n".join(out) + "\n"


def _bracket(iv) -> str:
    _, low, high = iv.change
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def per_image_report(rows: Sequence[Mapping], *, level: float = 0.95,
                     n_boot: int = 4000) -> str:
    """The per-image sections: what the test images add to the family's intervals (seed × foreground bootstrap)
    and Table 1 per foreground kind."""
    configs = {r["config"] for r in rows}
    fam = [(t, a, b) for t, a, b in PAPER_ORDERINGS if {a, b} <= configs]
    return ("What the choice of test images adds: percentile bootstrap intervals (" f"{n_boot} resamples) of the "
            "change, resampling the seeds, the test foregrounds (each with all its composites), or both:\n\n"
            + image_bootstrap_markdown(rows, fam, level=level, n_boot=n_boot) + "\n"
            + per_kind_markdown(rows, level=level))


# ------------------------------------------------------------------------- notebook 04's outputs from a runs.csv
def table1(records: Sequence[Mapping], convention: str = "official") -> list[dict]:
    """Notebook 04's Table 1 rows of one convention, with the paired interval column vs the no-KD student."""
    return with_intervals(results.table_rows(results.summarise(records, convention)), records,
                          convention=convention)


def notebook_summary(records: Sequence[Mapping]) -> str:
    """Notebook 04's ``summary.md``: the teacher's gap sentence, then :func:`summary_markdown`."""
    gap = results.teacher_gap_sentence(results.summarise(records)).strip()
    return (gap + "\n\n" if gap else "") + summary_markdown(records)


# -------------------------------------------------------------------------------------------------- the command
def _fraction(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a number, got {text!r}") from None
        if name == "--level" and not 0 < v < 1:
            raise argparse.ArgumentTypeError(f"--level is a confidence level strictly between 0 and 1 (e.g. 0.95), "
                                             f"got {text}")
        if name == "--margin" and not (math.isfinite(v) and v >= 0):
            raise argparse.ArgumentTypeError(f"--margin is a non-negative fraction (0.03 = ±3 %), got {text}")
        return v
    return parse


def main(argv: Sequence[str] | None = None) -> None:
    """Print :func:`report_markdown` for the ``runs.csv`` files named on the command line (or, with
    ``--compare``, :func:`compare_markdown`). Bad input ends with a message and exit code 2."""
    ap = argparse.ArgumentParser(prog="python -m matting_lib.paired_report", description=(
        "Verdicts on the paper's orderings from per-run metrics (runs.csv files written by notebook 04), "
        "paired by seed: the primary family with Holm, the rest exploratory."))
    ap.add_argument("files", nargs="+", help="runs.csv files (e.g. docs/constant_lr_runs*.csv)")
    ap.add_argument("--compare", action="store_true",
                    help="two runs.csv files of one profile side by side, verdict by verdict, not pooled")
    ap.add_argument("--method", choices=("t", "bootstrap"), default="t", help="interval (default: t)")
    ap.add_argument("--margin", type=_fraction("--margin"), default=MARGIN,
                    help="equivalence margin, a fraction: a factor 1 + margin either way (default 0.03)")
    ap.add_argument("--level", type=_fraction("--level"), default=0.95,
                    help="confidence level of the intervals shown (default 0.95)")
    ap.add_argument("--pair", action="append", default=[], metavar="A:B",
                    help="a further (exploratory) ordering 'A is better than B', e.g. ofd:spatial+channel (repeatable)")
    ap.add_argument("--convention", choices=("official", "spkd"), default="official",
                    help="metric convention (default: official)")
    ap.add_argument("--units", choices=("seed", "run"), default="seed",
                    help="seed (default): a seed's runs in several files are one unit; run: each (file, seed) is one")
    ap.add_argument("--per-image", metavar="FILE",
                    help="runs_per_image.csv.gz of the same run: add the seed × image bootstrap and Table 1 per kind")
    ap.add_argument("--table1", choices=("compact", "official", "spkd"),
                    help="print notebook 04's Table 1 of one runs.csv (compact: the README's eight columns) instead")
    ap.add_argument("--summary", action="store_true", help="print notebook 04's summary.md of one runs.csv instead")
    ap.add_argument("--forest", metavar="PNG", help="write notebook 04's forest plot of one runs.csv to PNG")
    ap.add_argument("--force", action="store_true", help="let --forest replace an existing file")
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
    kw = dict(method=args.method, margin=args.margin, level=args.level, convention=args.convention,
              cluster=args.units == "seed")
    try:
        runs = [read_runs_csv(f) for f in args.files]
        for f, recs in zip(args.files, runs):
            have = sorted({c for r in recs for c in r["metrics"]})
            if args.convention not in have:
                ap.error(f"{f} holds no {args.convention!r} metrics (it has {', '.join(have)}); use --convention "
                         f"{have[0]}")
        if args.table1 or args.summary or args.forest:
            if len(args.files) != 1 or args.compare or extra or args.per_image:
                ap.error("--table1, --summary and --forest take one runs.csv file and no --compare, --pair or "
                         "--per-image")
            print(_notebook_outputs(runs[0], args), end="")
            return
        if args.compare:
            if len(args.files) != 2 or extra or args.per_image:
                ap.error("--compare takes exactly two runs.csv files and no --pair or --per-image")
            print(compare_markdown(*runs, names=tuple(args.files), **kw), end="")
            return
        records = [r for recs in runs for r in recs]
        have = {r["config"] for r in records}
        unknown = sorted({c for pair in extra for c in pair} - have)
        if unknown:
            ap.error(f"--pair names {', '.join(unknown)}, which the files have no runs of; they have "
                     f"{', '.join(sorted(have))}")
        text = report_markdown(records, extra, **kw)
        if args.per_image:

            text += "\n" + per_image_report(read_per_image(args.per_image), level=args.level)
    except (ValueError, OSError) as err:
        ap.error(str(err))
    print(text, end="")


def _notebook_outputs(records: Sequence[Mapping], args: argparse.Namespace) -> str:
    """What ``--table1``, ``--summary`` and ``--forest`` ask for, as notebook 04 makes it."""
    text = ""
    if args.table1:
        rows = table1(records, "official" if args.table1 == "compact" else args.table1)
        text += results.to_compact_markdown(rows) if args.table1 == "compact" else results.to_markdown(rows)
    if args.summary:
        text += ("\n" if text else "") + notebook_summary(records)
    if args.forest:

        out = check_output(args.forest, inputs=args.files, force=args.force, what="--forest", example="forest.png")
        if out.suffix.lower() != ".png":
            raise ValueError(f"--forest {out}: give a .png file name")
        figures.save_figure(figures.forest_plot(table1(records), "sad", margin=args.margin), out.with_suffix(""),
                            formats=("png",))
    return text
