"""Paired comparisons of two configurations over seeds: log ratios, 95 % intervals, tests, Holm, verdicts.

The runs of one seed share the student's initialisation and the order of its batches, so two configurations are
compared seed by seed: for configurations A and B and every seed s that both have,

    d_s = ln(SAD_A,s / SAD_B,s)        (−0.051: A's SAD is 5 % lower than B's on that seed, exp(−0.051) − 1)

The log ratio is symmetric (B against A is exactly −d_s), so "A vs B" and "B vs A" give mirrored intervals and the
same tests. Means and intervals are computed on this scale and shown back as changes, exp(x) − 1 (fractions in
the returned data, percent in text).

**Units.** Runs of the same seed in several runs folders or ``runs.csv`` files (``source`` labels) share their
initialisation and batches, so by default they are one unit: the log ratios of one seed are averaged over the
sources that have it, and the interval is taken over seeds (``cluster=True``; with one source this changes
nothing). ``cluster=False`` treats every (source, seed) as its own unit. A record without a seed (the teacher:
one training shared by every student) pairs with every seed of its source.

**The interval.** The t-interval on the per-unit log ratios,
``scipy.stats.ttest_1samp(d, 0).confidence_interval(level)``. The bootstrap (``scipy.stats.bootstrap``, BCa) is
available as ``method="bootstrap"``; it is not the default because with 3–15 seeds its resampling distribution
is too narrow (percentile and BCa intervals under-cover at n ≈ 5–10). Each interval carries the Shapiro–Wilk
p-value of its differences (``normality_p``, for n ≥ 3).

**Tests.** ``p``: the two-sided one-sample t-test of no difference (``ttest_1samp(d, 0)``); ``p_tost``: the
two one-sided tests (TOST) of a difference at least the margin, ``max(p(d > −δ), p(d < δ))`` with
δ = ln(1 + margin), so the equivalence region is a factor 1 + margin either way. TOST at α per side is the
(1 − 2α) interval lying within ±δ: "the 95 % interval within ±3 %" is TOST at α = 0.025.

**Verdicts.** :func:`verdict` reads one interval alone (unadjusted; for exploratory comparisons).
:func:`family_verdicts` decides a declared family of orderings with Holm's step-down over two hypotheses per
ordering (no difference; a difference at least the margin), see there.

Records are the dicts of :func:`matting_lib.reporting.results.collect` /
:func:`~matting_lib.reporting.results.records_from_runs_csv` (``config``, ``seed``, ``metrics[convention][metric]``),
with an optional ``source`` label (default ``""``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

#: The configurations whose ten pairwise orderings are the hard ones to decide (the similarity rows and OFD).
STRONG = ("spatial", "channel", "spatial+channel", "batch+spatial+channel", "ofd")
METHODS = ("t", "bootstrap")
#: The family-wise error rate of :func:`family_verdicts` and the default equivalence margin (a fraction).
ALPHA = 0.05
MARGIN = 0.03


@dataclass(frozen=True)
class Paired:
    """The per-unit log ratios of configuration ``a`` against ``b``.

    ``keys``: the units used, sorted (a seed when clustered, else (source, seed)); ``d``: (n,) float,
    ln(SAD_A / SAD_B) per unit (the mean over the unit's sources when clustered); ``runs``: the number of
    (source, seed) pairs behind them; ``dropped``: one note per seed that only one of the two configurations has.
    """

    a: str
    b: str
    keys: tuple[Hashable, ...]
    d: np.ndarray
    dropped: tuple[str, ...]
    runs: int = 0


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences with its confidence interval.

    ``log=True`` (a log ratio): ``mean``, ``low``, ``high`` and ``std`` are on the log scale, and :attr:`change`,
    :meth:`fmt` show them back as exp(x) − 1; ``log=False``: plain fractions. ``std``: sample standard deviation of
    the per-unit differences (nan for n < 2); ``low``/``high``: nan when n < 2, both the mean when every difference
    is the same; ``normality_p``: Shapiro–Wilk p-value of the differences (nan for n < 3 or no spread).
    """

    mean: float
    low: float
    high: float
    n: int
    std: float
    level: float
    method: str
    normality_p: float = math.nan
    log: bool = False

    @property
    def half_width(self) -> float:
        """Half the interval's width on its own scale (log units ≈ fractions for small changes); nan without one."""
        return (self.high - self.low) / 2

    @property
    def change(self) -> tuple[float, float, float]:
        """(mean, low, high) as changes (fractions): exp(x) − 1 for a log ratio, the values themselves otherwise."""
        f = np.expm1 if self.log else (lambda x: x)
        return float(f(self.mean)), float(f(self.low)), float(f(self.high))

    def fmt(self, digits: int = 1) -> str:
        """``-3.9% [-6.5, -1.3]`` (percent changes); ``-3.9% [n=1]`` without an interval."""
        mean, low, high = self.change
        if not math.isfinite(low):
            return f"{100 * mean:+.{digits}f}% [n={self.n}]"
        return f"{100 * mean:+.{digits}f}% [{100 * low:+.{digits}f}, {100 * high:+.{digits}f}]"


Key = tuple[str, int | None]  # (source, seed); seed None: a run without a seed (the teacher)


def _values(records: Iterable[Mapping], config: str, metric: str, convention: str) -> dict[Key, float]:
    """``config``'s ``metric`` by (source, seed); raises naming the file on a duplicate, a missing convention or a
    value that is not a positive finite number (a ratio needs one)."""
    out: dict[Key, float] = {}
    for rec in records:
        if rec["config"] != config:
            continue
        seed = None if rec.get("seed") is None or config == "teacher" else int(rec["seed"])
        key = (str(rec.get("source", "")), seed)
        where = rec.get("_path", key[0] or config)
        if key in out:
            raise ValueError(f"{where}: {config} seed {seed} appears twice in source {key[0]!r}; "
                             "give each runs folder or runs.csv its own source label")
        if convention not in rec["metrics"]:
            raise ValueError(f"{where}: no {convention!r} metrics for {config}; has {', '.join(rec['metrics'])}")
        value = float(rec["metrics"][convention][metric])
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {config} seed {seed} has {metric} = {value}; a paired ratio needs a "
                             f"positive finite {metric}: rescore that run")
        out[key] = value
    return out


def _broadcast(vals: dict[Key, float], other: dict[Key, float]) -> dict[Key, float]:
    """A seedless record (the teacher) stands for every seed of its source that the other side has."""
    seedless = {src: v for (src, seed), v in vals.items() if seed is None}
    spread = {(src, seed): seedless[src] for src, seed in other if src in seedless and seed is not None}
    return {**{k: v for k, v in vals.items() if k[1] is not None}, **spread}


def paired_differences(records: Sequence[Mapping], a: str, b: str, *, metric: str = "sad",
                       convention: str = "official", cluster: bool = True,
                       exclude: Collection[Hashable] = ()) -> Paired:
    """ln(SAD_A / SAD_B) (or ``metric``) per unit: per seed, averaged over the sources that have it
    (``cluster=True``), or per (source, seed). Units in ``exclude`` are left out (leave-one-seed-out).

    Seeds only one configuration has are left out, each with a note in ``dropped``. Raises ``ValueError`` when a
    configuration has no record, naming the configurations that do, or when a value is not positive.
    """
    va, vb = _values(records, a, metric, convention), _values(records, b, metric, convention)
    for name, vals in ((a, va), (b, vb)):
        if not vals:
            have = sorted({str(r["config"]) for r in records})
            raise ValueError(f"no runs of configuration {name!r}; the records have {', '.join(have)}")
    va, vb = _broadcast(va, vb), _broadcast(vb, va)
    keys = sorted(set(va) & set(vb))
    dropped = tuple(f"{name} {src + ' ' if src else ''}seed {seed} has no {other} run with the same seed: left out"
                    for name, other, vals in ((a, b, va), (b, a, vb)) for src, seed in sorted(vals)
                    if (src, seed) not in keys)
    units: dict[Hashable, list[float]] = {}
    for src, seed in keys:
        units.setdefault(seed if cluster else (src, seed), []).append(math.log(va[src, seed] / vb[src, seed]))
    used = sorted(u for u in units if u not in exclude)
    d = np.array([np.mean(units[u]) for u in used], dtype=float)
    return Paired(a, b, tuple(used), d, dropped, sum(len(units[u]) for u in used))


def confidence_interval(d: Sequence[float], *, level: float = 0.95, method: str = "t", seed: int = 0,
                        log: bool = False) -> Interval:
    """Mean of the paired differences ``d`` and its ``level`` confidence interval (``log``: ``d`` are log ratios).

    ``method="t"`` (default): ``scipy.stats.ttest_1samp(d, 0).confidence_interval(level)``;
    ``method="bootstrap"``: ``scipy.stats.bootstrap((d,), np.mean)`` (BCa, 9,999 resamples, generator seeded by
    ``seed``, so the same data give the same interval). See the module docstring for why t is the default.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences: the two configurations share no seed")
    mean = float(np.mean(d))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, level, method, log=log)
    if np.all(d == d[0]):  # no spread (e.g. two configurations that train identically): a zero-width interval
        return Interval(mean, mean, mean, n, 0.0, level, method, log=log)
    std = float(np.std(d, ddof=1))
    if method == "t":
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    else:
        ci = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=9999, method="BCa",
                             rng=np.random.default_rng(seed)).confidence_interval
    normal = float(stats.shapiro(d).pvalue) if n >= 3 else math.nan
    return Interval(mean, float(ci.low), float(ci.high), n, std, level, method, normal, log)


def difference_p(d: Sequence[float]) -> float:
    """Two-sided p-value of no difference, ``scipy.stats.ttest_1samp(d, 0)``; nan for fewer than 2 values; 0 or 1
    when every value is the same (non-zero or zero)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def tost_p(d: Sequence[float], margin: float = MARGIN) -> float:
    """TOST p-value for equivalence of log ratios ``d`` within a factor ``1 + margin`` either way: the larger of
    ``ttest_1samp(d, −δ, alternative="greater")`` and ``ttest_1samp(d, δ, alternative="less")``, δ = ln(1 + margin).
    nan for fewer than 2 values; 1 when ``margin`` is 0 (nothing can be shown equivalent)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan
    if margin <= 0:
        return 1.0
    delta = math.log1p(margin)
    if np.all(d == d[0]):
        return 0.0 if abs(d[0]) < delta else 1.0
    lower = stats.ttest_1samp(d, -delta, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, delta, alternative="less").pvalue
    return float(max(lower, upper))


def holm(pvalues: Sequence[float], groups: Sequence[Hashable] | None = None) -> list[float]:
    """Holm's step-down adjusted p-values (reject where adjusted ≤ α: family-wise error ≤ α under any dependence).

    Sorted ascending, the j-th smallest p is multiplied by the number of hypotheses that could still be true once
    the smaller ones are rejected: m − j + 1 (Holm 1979), or, with ``groups`` (one label per p-value, labels
    shared by hypotheses of which at most one can be true), the number of distinct groups among the hypotheses
    from the j-th on (Shaffer 1986's logical restriction). Adjusted values are made monotone and capped at 1;
    nan p-values stay nan and do not count.
    """
    p = np.asarray(pvalues, dtype=float)
    g = list(range(len(p))) if groups is None else list(groups)
    if len(g) != len(p):
        raise ValueError(f"holm: {len(p)} p-values but {len(g)} group labels")
    valid = [i for i in np.argsort(p, kind="stable") if not math.isnan(p[i])]
    out = [math.nan] * len(p)
    running = 0.0
    for j, i in enumerate(valid):
        could_be_true = len({g[k] for k in valid[j:]})
        running = max(running, min(1.0, could_be_true * p[i]))
        out[i] = running
    return out


def verdict(ci: Interval, margin: float = MARGIN) -> str:
    """The unadjusted verdict on the claim "A is better than B" (lower error) from the interval of A against B.

    - *holds*: the whole interval is below 0 (A significantly better);
    - *reversed*: the whole interval is above 0 (B significantly better);
    - *equivalent*: the interval includes 0 and lies within a factor 1 + ``margin`` either way (log ratios:
      ±ln(1 + margin); changes from −margin / (1 + margin) to +margin); for a 95 % interval this is TOST at
      α = 0.025 per side;
    - *undecided*: otherwise, and always without an interval (one seed).

    Precedence: a sign the interval decides wins over equivalence, so [−2.5 %, −0.5 %] *holds* (A is better,
    by less than the margin: :func:`within_margin` says so).
    """
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return "undecided"
    if ci.high < 0:
        return "holds"
    if ci.low > 0:
        return "reversed"
    return "equivalent" if within_margin(ci, margin) else "undecided"


def within_margin(ci: Interval, margin: float = MARGIN) -> bool:
    """Whether the whole interval lies within the margin: ±ln(1 + margin) for a log ratio, ±margin otherwise."""
    delta = math.log1p(margin) if ci.log else margin
    return math.isfinite(ci.low) and -delta <= ci.low and ci.high <= delta


def compare(records: Sequence[Mapping], a: str, b: str, *, metric: str = "sad", convention: str = "official",
            level: float = 0.95, method: str = "t", margin: float = MARGIN, cluster: bool = True,
            exclude: Collection[Hashable] = ()) -> dict:
    """One ordering "``a`` is better than ``b``" on the log ratio: pairing, interval, tests and the unadjusted
    verdict as a flat dict. ``mean``/``low``/``high``: changes exp(x) − 1 (fractions); ``log_mean`` etc. and
    ``std``, ``half_width``: the log scale; ``p``: no difference; ``p_tost``: TOST within ±``margin``."""
    p = paired_differences(records, a, b, metric=metric, convention=convention, cluster=cluster, exclude=exclude)
    ci = confidence_interval(p.d, level=level, method=method, log=True)
    mean, low, high = ci.change
    return {"a": a, "b": b, "n": ci.n, "runs": p.runs, "mean": mean, "low": low, "high": high,
            "log_mean": ci.mean, "log_low": ci.low, "log_high": ci.high, "std": ci.std,
            "half_width": ci.half_width, "normality_p": ci.normality_p, "p": difference_p(p.d),
            "p_tost": tost_p(p.d, margin), "verdict": verdict(ci, margin), "within_margin": within_margin(ci, margin),
            "interval": ci, "dropped": p.dropped, "keys": p.keys}


def family_verdicts(comparisons: Sequence[Mapping], *, alpha: float = ALPHA) -> list[dict]:
    """The verdicts of a declared family of orderings (:func:`compare` results), family-wise error ≤ ``alpha``.

    Each ordering brings two hypotheses, of which at most one can be true: no difference (``p``) and a difference
    at least the margin (TOST, ``p_tost``, taken at ``alpha`` / 2 per side like a 95 % interval, so entered as
    2 · ``p_tost``). All of them enter one :func:`holm` step-down, grouped by ordering. Verdict: *holds* /
    *reversed* (by the sign of the mean) when the adjusted ``p_adj`` ≤ ``alpha``, else *equivalent* when the
    adjusted ``p_tost_adj`` ≤ ``alpha``, else *undecided*. Returns copies with ``p_adj``, ``p_tost_adj`` and
    ``verdict`` (the unadjusted one moves to ``verdict_unadjusted``).
    """
    k = len(comparisons)
    adj = holm([c["p"] for c in comparisons] + [min(1.0, 2 * c["p_tost"]) for c in comparisons],
               groups=list(range(k)) * 2)
    out = []
    for i, c in enumerate(comparisons):
        pd, pe = adj[i], adj[k + i]
        v = ("holds" if c["log_mean"] < 0 else "reversed") if pd <= alpha else \
            "equivalent" if pe <= alpha else "undecided"
        out.append({**c, "p_adj": pd, "p_tost_adj": pe, "verdict_unadjusted": c["verdict"], "verdict": v})
    return out


def judge(records: Sequence[Mapping], pairs: Sequence[tuple[str, str]], *, family: bool, alpha: float = ALPHA,
          exclude: Collection[Hashable] = (), **kw) -> list[dict]:
    """:func:`compare` each (A, B) of ``pairs``; as one Holm family (:func:`family_verdicts`) when ``family``,
    else each with its unadjusted verdict. Keywords pass to :func:`compare`."""
    comps = [compare(records, a, b, exclude=exclude, **kw) for a, b in pairs]
    return family_verdicts(comps, alpha=alpha) if family else comps


def leave_one_out(records: Sequence[Mapping], pairs: Sequence[tuple[str, str]], *, family: bool,
                  alpha: float = ALPHA, **kw) -> list[tuple[int, int]]:
    """Leave-one-seed-out stability of each verdict of :func:`judge`: for every unit (seed) the pairs use, the
    whole judgement repeated without it (the Holm family recomputed). Returns, per pair, (number of those
    subsets that keep the verdict on all units, number of subsets); (0, 0) where there are fewer than 3 units."""
    full = judge(records, pairs, family=family, alpha=alpha, **kw)
    units = sorted({u for c in full for u in c["keys"]}, key=repr)
    kept = [0] * len(pairs)
    counted = [0] * len(pairs)
    for u in units:
        try:
            sub = judge(records, pairs, family=family, alpha=alpha, exclude={u}, **kw)
        except ValueError:  # a pair with this unit alone: no subset to judge
            continue
        for i, (c, s) in enumerate(zip(full, sub)):
            if u in c["keys"] and c["n"] >= 3:
                counted[i] += 1
                kept[i] += s["verdict"] == c["verdict"]
    return list(zip(kept, counted))


def paper_oriented(a: str, b: str, table: Mapping[str, Sequence[float]]) -> tuple[str, str]:
    """(better, worse) as the paper's ``table`` (config -> (SAD, ...)) orders them: lower SAD first."""
    return (a, b) if table[a][0] <= table[b][0] else (b, a)


def pairs_among(configs: Sequence[str] = STRONG, table: Mapping[str, Sequence[float]] | None = None
                ) -> list[tuple[str, str]]:
    """Every pair of ``configs`` (ten for :data:`STRONG`), oriented by the paper's ``table`` when given."""
    return [paper_oriented(a, b, table) if table else (a, b) for a, b in combinations(configs, 2)]


def median_half_width(comparisons: Sequence[Mapping]) -> float:
    """The median half-width (log scale) over :func:`compare` results; nan when none has an interval."""
    widths = [c["half_width"] for c in comparisons if math.isfinite(c["half_width"])]
    return float(np.median(widths)) if widths else math.nan


def seeds_needed(std: float, target_half_width: float, *, level: float = 0.95, max_seeds: int = 10_000) -> int:
    """The fewest seeds n (≥ 2) whose t-interval half-width t_{(1+level)/2, n−1} · std / √n is ≤ the target.

    ``std``: per-seed standard deviation of the paired differences, ``target_half_width``: the wanted half-width
    (same scale, e.g. 0.06 and 0.03). Raises ``ValueError`` when even ``max_seeds`` seeds do not reach it.
    """
    if target_half_width <= 0:
        raise ValueError(f"target half-width must be positive, got {target_half_width}")
    q = (1 + level) / 2
    for n in range(2, max_seeds + 1):
        if stats.t.ppf(q, n - 1) * std / math.sqrt(n) <= target_half_width:
            return n
    raise ValueError(f"more than {max_seeds} seeds needed for a half-width {target_half_width} at std {std}")


# ------------------------------------------------------------------------------- what the intervals cover: images
def _per_foreground(rows: Sequence[Mapping], config: str, metric: str) -> dict[int | None, dict[str, float]]:
    """``config``'s ``metric`` summed per foreground, by seed (None: the teacher): {seed: {foreground: sum}}."""
    out: dict[int | None, dict[str, float]] = {}
    for r in rows:
        if r["config"] == config:
            fg = out.setdefault(r["seed"], {})
            fg[r["foreground"]] = fg.get(r["foreground"], 0.0) + float(r[metric])
    return out


def image_bootstrap(rows: Sequence[Mapping], a: str, b: str, *, metric: str = "sad", level: float = 0.95,
                    n_boot: int = 4000, seed: int = 0) -> dict[str, Interval]:
    """How much the choice of test images adds to the interval of ln(SAD_A / SAD_B), from per-image metrics.

    ``rows``: :func:`matting_lib.reporting.results.per_image_rows` (``config``, ``seed``, ``foreground``, metrics). Per
    seed, the statistic is ln(Σ SAD_A / Σ SAD_B) over the chosen images (the run's mean SAD ratio when every image is
    taken), averaged over the chosen seeds. A foreground's composites are resampled together (they share the
    alpha matte). Three percentile bootstraps (``n_boot`` resamples, seeded): ``"seeds"`` resamples the seeds
    with the images fixed, ``"images"`` the foregrounds with the seeds fixed, ``"seeds × images"`` both at once
    (Owen's pigeonhole bootstrap for a crossed design: slightly conservative, it counts the seed × image
    interaction twice). Each :class:`Interval` is on the log scale; ``mean`` is the all-data estimate.
    """
    fa, fb = _per_foreground(rows, a, metric), _per_foreground(rows, b, metric)
    for name, f in ((a, fa), (b, fb)):
        if not f:
            raise ValueError(f"no per-image rows of configuration {name!r}")
    if None in fa:  # the teacher: one training, paired with every seed of the other side
        fa = {s: fa[None] for s in fb if s is not None} if set(fa) == {None} else fa
    if None in fb:
        fb = {s: fb[None] for s in fa if s is not None} if set(fb) == {None} else fb
    seeds = sorted(set(fa) & set(fb) - {None})
    fgs = sorted(set.intersection(*(set(f[s]) for f in (fa, fb) for s in seeds))) if seeds else []
    if len(seeds) < 2 or len(fgs) < 2:
        raise ValueError(f"{a} against {b}: the image bootstrap needs 2 or more shared seeds and foregrounds, "
                         f"has {len(seeds)} and {len(fgs)}")
    A = np.array([[fa[s][g] for g in fgs] for s in seeds])  # (seeds, foregrounds) sums
    B = np.array([[fb[s][g] for g in fgs] for s in seeds])
    rng = np.random.default_rng(seed)
    n_s, n_f = A.shape
    estimate = float(np.mean(np.log(A.sum(1) / B.sum(1))))

    def draw(resample_seeds: bool, resample_images: bool) -> Interval:
        w = rng.multinomial(n_f, np.full(n_f, 1 / n_f), size=n_boot) if resample_images else np.ones((n_boot, n_f))
        v = rng.multinomial(n_s, np.full(n_s, 1 / n_s), size=n_boot) if resample_seeds else np.ones((n_boot, n_s))
        d = np.log((w @ A.T) / (w @ B.T))  # (n_boot, seeds): each seed's log ratio over the drawn images
        boot = (v * d).sum(1) / n_s
        low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        return Interval(estimate, float(low), float(high), n_s, float(np.std(boot, ddof=1)), level, "bootstrap",
                        log=True)

    return {"seeds": draw(True, False), "images": draw(False, True), "seeds × images": draw(True, True)}


def per_kind_changes(rows: Sequence[Mapping], config: str, baseline: str = "student", *, metric: str = "sad",
                     level: float = 0.95) -> dict[str, Interval]:
    """Per foreground kind (hair, fur, glass, …), ``config``'s paired change against ``baseline``: per seed the
    log ratio of the two mean ``metric`` values over that kind's test images, with its t-interval over seeds."""
    kinds = sorted({r["kind"] for r in rows})
    out = {}
    for kind in kinds:
        recs: dict[tuple[str, int | None], list[float]] = {}
        for r in rows:
            if r["kind"] == kind and r["config"] in (config, baseline):
                recs.setdefault((r["config"], r["seed"]), []).append(float(r[metric]))
        records = [
            {"config": c, "seed": s, "metrics": {"k": {metric: float(np.mean(v))}}} for (c, s), v in recs.items()
        ]
        p = paired_differences(records, config, baseline, metric=metric, convention="k")
        out[kind] = confidence_interval(p.d, level=level, log=True)
    return out
