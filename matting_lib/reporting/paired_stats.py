"""Paired comparisons of two configurations over seeds: relative differences, 95 % intervals, verdicts.

The runs of one seed share the student's initialisation and the order of its batches, so two configurations are
compared seed by seed: for configurations A and B and every seed s that both have,

    d_s = SAD_A,s / SAD_B,s − 1        (a fraction; −0.05: A's SAD is 5 % lower than B's on that seed)

and the claim "A is better than B" (lower error) is judged on the mean of d_s and its confidence interval.
Several runs folders or ``runs.csv`` files are pooled by pairing on (source, seed): a seed of one run is never
paired with the same seed of another run. A record without a seed (the teacher: one training shared by every
student) pairs with every seed of its source.

Records are the dicts of :func:`matting_lib.reporting.results.collect` /
:func:`~matting_lib.reporting.results.records_from_runs_csv` (``config``, ``seed``, ``metrics[convention][metric]``),
with an optional ``source`` label (default ``""``).

**The interval.** The default is the t-interval on the paired differences,
``scipy.stats.ttest_1samp(d, 0).confidence_interval(level)``: the standard interval for a paired design, exact
when the per-seed differences are normal and close to nominal coverage for the mildly skewed differences of a
few seeds. The bootstrap (``scipy.stats.bootstrap``, BCa) is available as ``method="bootstrap"``; it is not the
default because with 3–15 seeds its resampling distribution is too narrow (percentile and BCa intervals
under-cover at n ≈ 5–10). As a hedge on normality each interval carries the Shapiro–Wilk p-value of its
differences (``normality_p``, for n ≥ 3), so a reader can see where the t-interval's assumption is doubtful.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

#: The configurations whose ten pairwise orderings are the hard ones to decide (the similarity rows and OFD).
STRONG = ("spatial", "channel", "spatial+channel", "batch+spatial+channel", "ofd")
METHODS = ("t", "bootstrap")
VERDICTS = ("holds", "reversed", "equivalent", "undecided")


@dataclass(frozen=True)
class Paired:
    """The per-seed relative differences of configuration ``a`` against ``b``.

    ``keys``: the (source, seed) pairs used, sorted; ``d``: (n,) float, SAD_A / SAD_B − 1 per key (a fraction);
    ``dropped``: one note per seed that only one of the two configurations has.
    """

    a: str
    b: str
    keys: tuple[tuple[str, int], ...]
    d: np.ndarray
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class Interval:
    """Mean of paired relative differences with its confidence interval (all fractions, −0.05 = −5 %).

    ``std``: sample standard deviation of the per-seed differences (nan for n < 2); ``low``/``high``: nan when
    n < 2, both the mean when every difference is the same; ``normality_p``: Shapiro–Wilk p-value of the
    differences (nan for n < 3 or no spread).
    """

    mean: float
    low: float
    high: float
    n: int
    std: float
    level: float
    method: str
    normality_p: float = math.nan

    @property
    def half_width(self) -> float:
        """Half the interval's width (a fraction); nan when there is no interval."""
        return (self.high - self.low) / 2

    def fmt(self, digits: int = 1) -> str:
        """``-3.9% [-6.5, -1.3]`` (percent); ``-3.9% [n=1]`` without an interval."""
        if not math.isfinite(self.low):
            return f"{100 * self.mean:+.{digits}f}% [n={self.n}]"
        return f"{100 * self.mean:+.{digits}f}% [{100 * self.low:+.{digits}f}, {100 * self.high:+.{digits}f}]"


Key = tuple[str, int | None]  # (source, seed); seed None: a run without a seed (the teacher)


def _values(records: Iterable[Mapping], config: str, metric: str, convention: str) -> dict[Key, float]:
    """``config``'s ``metric`` by (source, seed); raises naming the file on a duplicate or a missing convention."""
    out: dict[Key, float] = {}
    for rec in records:
        if rec["config"] != config:
            continue
        seed = None if rec.get("seed") is None or config == "teacher" else int(rec["seed"])
        key = (str(rec.get("source", "")), seed)
        if key in out:
            raise ValueError(f"{rec.get('_path', key[0])}: {config} seed {seed} appears twice in source {key[0]!r}; "
                             "give each runs folder or runs.csv its own source label")
        if convention not in rec["metrics"]:
            raise ValueError(f"{rec.get('_path', config)}: no {convention!r} metrics; has {', '.join(rec['metrics'])}")
        out[key] = float(rec["metrics"][convention][metric])
    return out


def _broadcast(vals: dict[Key, float], other: dict[Key, float]) -> dict[Key, float]:
    """A seedless record (the teacher) stands for every seed of its source that the other side has."""
    seedless = {src: v for (src, seed), v in vals.items() if seed is None}
    spread = {(src, seed): seedless[src] for src, seed in other if src in seedless and seed is not None}
    return {**{k: v for k, v in vals.items() if k[1] is not None}, **spread}


def paired_differences(records: Sequence[Mapping], a: str, b: str, *, metric: str = "sad",
                       convention: str = "official") -> Paired:
    """SAD_A / SAD_B − 1 (or ``metric``) for every (source, seed) that both ``a`` and ``b`` have.

    Seeds only one configuration has are left out, each with a note in ``dropped``. Raises ``ValueError`` when a
    configuration has no record, naming the configurations that do.
    """
    va, vb = _values(records, a, metric, convention), _values(records, b, metric, convention)
    for name, vals in ((a, va), (b, vb)):
        if not vals:
            have = sorted({str(r["config"]) for r in records})
            raise ValueError(f"no runs of configuration {name!r}; the records have {', '.join(have)}")
    va, vb = _broadcast(va, vb), _broadcast(vb, va)
    keys = tuple(sorted(set(va) & set(vb)))
    dropped = tuple(f"{name} {src + ' ' if src else ''}seed {seed} has no {other} run with the same seed: left out"
                    for name, other, vals in ((a, b, va), (b, a, vb)) for src, seed in sorted(vals)
                    if (src, seed) not in keys)
    d = np.array([va[k] / vb[k] - 1 for k in keys], dtype=float)
    return Paired(a, b, keys, d, dropped)


def confidence_interval(d: Sequence[float], *, level: float = 0.95, method: str = "t",
                        seed: int = 0) -> Interval:
    """Mean of the paired differences ``d`` (fractions) and its ``level`` confidence interval.

    ``method="t"`` (default): ``scipy.stats.ttest_1samp(d, 0).confidence_interval(level)``;
    ``method="bootstrap"``: ``scipy.stats.bootstrap((d,), np.mean)`` (BCa, 9,999 resamples, generator seeded by
    ``seed``, so the same data give the same interval). See the module docstring for why t is the default.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences: the two configurations share no seed")
    mean = float(np.mean(d))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, level, method)
    if np.all(d == d[0]):  # no spread (e.g. two configurations that train identically): a zero-width interval
        return Interval(mean, mean, mean, n, 0.0, level, method)
    std = float(np.std(d, ddof=1))
    if method == "t":
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    else:
        ci = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=9999, method="BCa",
                             rng=np.random.default_rng(seed)).confidence_interval
    normal = float(stats.shapiro(d).pvalue) if n >= 3 else math.nan
    return Interval(mean, float(ci.low), float(ci.high), n, std, level, method, normal)


def verdict(ci: Interval, margin: float = 0.03) -> str:
    """The verdict on the claim "A is better than B" (lower error) from the interval of SAD_A / SAD_B − 1.

    - *holds*: the whole interval is below 0 (A significantly better);
    - *reversed*: the whole interval is above 0 (B significantly better);
    - *equivalent*: the interval includes 0 and lies within ±``margin`` (a fraction; 0.03 = ±3 %);
    - *undecided*: otherwise, and always without an interval (one seed).

    Precedence: a sign the interval decides wins over equivalence, so [−2.5 %, −0.5 %] *holds* (A is better,
    by less than the margin: :func:`within_margin` says so). The paper's claims are orderings, and an interval
    that excludes 0 answers one; *equivalent* is kept for intervals that cannot sign the difference but rule out
    any difference larger than the margin.
    """
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return "undecided"
    if ci.high < 0:
        return "holds"
    if ci.low > 0:
        return "reversed"
    return "equivalent" if within_margin(ci, margin) else "undecided"


def within_margin(ci: Interval, margin: float = 0.03) -> bool:
    """Whether the whole interval lies within ±``margin`` (fractions)."""
    return math.isfinite(ci.low) and -margin <= ci.low and ci.high <= margin


def compare(records: Sequence[Mapping], a: str, b: str, *, metric: str = "sad", convention: str = "official",
            level: float = 0.95, method: str = "t", margin: float = 0.03) -> dict:
    """One ordering "``a`` is better than ``b``": pairing, interval and verdict as a flat dict (fractions)."""
    p = paired_differences(records, a, b, metric=metric, convention=convention)
    ci = confidence_interval(p.d, level=level, method=method)
    return {"a": a, "b": b, "n": ci.n, "mean": ci.mean, "low": ci.low, "high": ci.high, "std": ci.std,
            "half_width": ci.half_width, "normality_p": ci.normality_p, "verdict": verdict(ci, margin),
            "within_margin": within_margin(ci, margin), "interval": ci, "dropped": p.dropped}


def paper_oriented(a: str, b: str, table: Mapping[str, Sequence[float]]) -> tuple[str, str]:
    """(better, worse) as the paper's ``table`` (config -> (SAD, ...)) orders them: lower SAD first."""
    return (a, b) if table[a][0] <= table[b][0] else (b, a)


def pairs_among(configs: Sequence[str] = STRONG, table: Mapping[str, Sequence[float]] | None = None
                ) -> list[tuple[str, str]]:
    """Every pair of ``configs`` (ten for :data:`STRONG`), oriented by the paper's ``table`` when given."""
    return [paper_oriented(a, b, table) if table else (a, b) for a, b in combinations(configs, 2)]


def median_half_width(comparisons: Sequence[Mapping]) -> float:
    """The median 95 % half-width (a fraction) over :func:`compare` results; nan when none has an interval."""
    widths = [c["half_width"] for c in comparisons if math.isfinite(c["half_width"])]
    return float(np.median(widths)) if widths else math.nan


def seeds_needed(std: float, target_half_width: float, *, level: float = 0.95, max_seeds: int = 10_000) -> int:
    """The fewest seeds n (≥ 2) whose t-interval half-width t_{(1+level)/2, n−1} · std / √n is ≤ the target.

    ``std``: per-seed standard deviation of the paired differences, ``target_half_width``: the wanted half-width
    (both fractions, e.g. 0.06 and 0.03). Raises ``ValueError`` when even ``max_seeds`` seeds do not reach it.
    """
    if target_half_width <= 0:
        raise ValueError(f"target half-width must be positive, got {target_half_width}")
    q = (1 + level) / 2
    for n in range(2, max_seeds + 1):
        if stats.t.ppf(q, n - 1) * std / math.sqrt(n) <= target_half_width:
            return n
    raise ValueError(f"more than {max_seeds} seeds needed for a half-width {target_half_width} at std {std}")
