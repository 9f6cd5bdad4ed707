"""Paired comparisons over seeds: the interval against a hand computation and against SciPy, the verdict rules,
pairing on log ratios and pooling by seed, the seeds-needed estimate, Table 1's interval column, the summary and
the forest plot. Holm, TOST, leave-one-seed-out, the image bootstrap and bad input: tests/test_statistics.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from matting_lib.reporting import figures, paired_report, paired_stats, paper, results
from matting_lib.reporting.paired_stats import Interval, verdict, within_margin


def _rec(config, seed, sad, source=""):
    m = {"sad": sad, "mse": 0.01, "grad": 1.0, "conn": sad}
    return {"config": config, "seed": seed, "metrics": {"official": m}, "source": source}


def _records(sads: dict[str, list[float]], source: str = "") -> list[dict]:
    return [_rec(cfg, seed, v, source) for cfg, vals in sads.items() for seed, v in enumerate(vals)]


def test_t_interval_matches_a_hand_computation():
    d = [0.01, -0.02, 0.03, 0.00]
    # by hand: mean 0.005; deviations 0.005, -0.025, 0.025, -0.005; sum of squares 1.3e-3; s = sqrt(1.3e-3 / 3);
    # standard error s / sqrt(4); t quantile 0.975 with 3 degrees of freedom from a t table: 3.18245
    mean, s = 0.005, math.sqrt(1.3e-3 / 3)
    half = 3.18245 * s / 2
    ci = paired_stats.confidence_interval(d)
    assert ci.mean == pytest.approx(mean)
    assert ci.std == pytest.approx(s)
    assert (ci.low, ci.high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert ci.half_width == pytest.approx(half, abs=1e-6)
    assert (ci.n, ci.level, ci.method) == (4, 0.95, "t")
    assert ci.fmt() == "+0.5% [-2.8, +3.8]"


def test_intervals_agree_with_scipy_directly():
    d = np.array([-0.05, -0.02, -0.07, 0.01, -0.04, -0.03])
    ci = paired_stats.confidence_interval(d, level=0.9)
    want = stats.t.interval(0.9, df=len(d) - 1, loc=d.mean(), scale=stats.sem(d))  # another route through SciPy
    assert (ci.low, ci.high) == pytest.approx(want)
    assert ci.normality_p == pytest.approx(stats.shapiro(d).pvalue)
    boot = paired_stats.confidence_interval(d, method="bootstrap", seed=3)
    ref = stats.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (boot.low, boot.high) == (ref.low, ref.high) and boot.method == "bootstrap"
    assert boot.low < d.mean() < boot.high
    same = paired_stats.confidence_interval([0.0, 0.0, 0.0])  # identical trainings: no spread, no SciPy warning
    assert (same.low, same.high, same.std) == (0.0, 0.0, 0.0) and verdict(same) == "equivalent"
    one = paired_stats.confidence_interval([0.02])
    assert one.mean == 0.02 and math.isnan(one.low) and math.isnan(one.half_width) and one.fmt() == "+2.0% [n=1]"
    with pytest.raises(ValueError, match="unknown interval method 'percentile'; choose one of t, bootstrap"):
        paired_stats.confidence_interval(d, method="percentile")
    with pytest.raises(ValueError, match="share no seed"):
        paired_stats.confidence_interval([])


def _ci(low, high, n=5):
    return Interval((low + high) / 2, low, high, n, 0.01, 0.95, "t")


@pytest.mark.parametrize("low, high, want, small", [
    (-0.06, -0.01, "holds", False),
    (0.01, 0.05, "reversed", False),
    (-0.02, 0.025, "equivalent", True),
    (-0.03, 0.03, "equivalent", True),        # the margin's ends count as inside
    (-0.05, 0.02, "undecided", False),
    (-0.02, 0.031, "undecided", False),
    (-0.025, -0.005, "holds", True),          # decided sign wins over equivalence: holds, by less than 3 %
    (0.005, 0.025, "reversed", True),
    (-0.04, 0.0, "undecided", False),         # touching 0 does not exclude it
])
def test_verdict_rules(low, high, want, small):
    assert verdict(_ci(low, high)) == want
    assert within_margin(_ci(low, high)) is small


def test_verdict_margin_is_a_parameter_and_one_seed_is_undecided():
    assert verdict(_ci(-0.04, 0.04), margin=0.05) == "equivalent"
    assert verdict(_ci(-0.04, 0.04)) == "undecided"
    assert verdict(Interval(-0.2, math.nan, math.nan, 1, math.nan, 0.95, "t")) == "undecided"


def test_pairing_by_seed_drops_unmatched_seeds_with_a_note():
    recs = [_rec("spatial", s, v) for s, v in ((0, 9.0), (1, 8.0), (2, 7.0))]
    recs += [_rec("student", s, v) for s, v in ((0, 10.0), (1, 10.0), (3, 10.0))]
    p = paired_stats.paired_differences(recs, "spatial", "student")
    assert p.keys == (0, 1) and p.runs == 2
    assert p.d == pytest.approx([math.log(0.9), math.log(0.8)])
    assert p.dropped == ("spatial seed 2 has no student run with the same seed: left out",
                         "student seed 3 has no spatial run with the same seed: left out")
    c = paired_stats.compare(recs, "spatial", "student")
    assert c["n"] == 2 and c["dropped"] == p.dropped
    with pytest.raises(ValueError, match="no runs of configuration 'ofd'; the records have spatial, student"):
        paired_stats.paired_differences(recs, "ofd", "student")
    with pytest.raises(ValueError, match="spatial seed 0 appears twice in source ''"):
        paired_stats.paired_differences(recs + [_rec("spatial", 0, 1.0)], "spatial", "student")


def test_pooling_pairs_within_each_source_and_the_teacher_with_every_seed():
    recs = _records({"spatial": [9.0, 8.0], "student": [10.0, 10.0]}, "run1.csv")
    recs += _records({"spatial": [6.0, 12.0], "student": [8.0, 10.0]}, "run2.csv")
    recs.append({**_rec("teacher", None, 5.0, "run1.csv")})
    runs = paired_stats.paired_differences(recs, "spatial", "student", cluster=False)
    assert runs.keys == (("run1.csv", 0), ("run1.csv", 1), ("run2.csv", 0), ("run2.csv", 1))
    # never run1's seed 0 against run2's seed 0
    assert runs.d == pytest.approx(np.log([0.9, 0.8, 0.75, 1.2]))
    seeds = paired_stats.paired_differences(recs, "spatial", "student")  # a seed's runs are one unit
    assert seeds.keys == (0, 1) and seeds.runs == 4
    assert seeds.d == pytest.approx([np.log([0.9, 0.75]).mean(), np.log([0.8, 1.2]).mean()])
    t = paired_stats.paired_differences(recs, "teacher", "student")
    assert t.keys == (0, 1) and t.d == pytest.approx([math.log(0.5)] * 2)
    assert "student run2.csv seed 0 has no teacher run with the same seed: left out" in t.dropped


def test_seeds_needed_reaches_the_target_and_not_one_seed_earlier():
    n = paired_stats.seeds_needed(0.06, 0.03)
    half = lambda k: stats.t.ppf(0.975, k - 1) * 0.06 / math.sqrt(k)  # noqa: E731
    assert half(n) <= 0.03 < half(n - 1)
    assert n == 18
    assert paired_stats.seeds_needed(0.0, 0.03) == 2
    assert paired_stats.seeds_needed(0.06, 0.03, level=0.9) < n
    with pytest.raises(ValueError, match="must be positive"):
        paired_stats.seeds_needed(0.06, 0.0)
    with pytest.raises(ValueError, match="more than 5 seeds needed"):
        paired_stats.seeds_needed(0.06, 0.001, max_seeds=5)


def test_the_ten_pairs_are_oriented_by_the_papers_table_and_their_median_half_width():
    pairs = paired_stats.pairs_among(paired_stats.STRONG, paper.TABLE1)
    assert len(pairs) == 10 and len({frozenset(p) for p in pairs}) == 10
    assert ("spatial+channel", "ofd") in pairs and ("channel", "spatial") in pairs  # lower paper SAD first
    assert paired_stats.median_half_width([{"half_width": w} for w in (0.01, 0.05, 0.02, math.nan)]) == 0.02
    assert math.isnan(paired_stats.median_half_width([{"half_width": math.nan}]))


# Five seeds: spatial clearly better than no-KD, channel equivalent to it, batch better than it (against the
# paper's claim that no-KD beats batch), FSP anywhere.
NOISE = np.array([0.01, -0.01, 0.005, -0.005, 0.0])
STUDENT = np.array([10.0, 10.2, 9.8, 10.1, 9.9])
SADS = {"student": STUDENT, "spatial": STUDENT * (0.8 + NOISE), "channel": STUDENT * (1 + NOISE),
        "batch": STUDENT * (0.9 + NOISE), "fsp": STUDENT * (1 + np.array([-0.1, 0.12, -0.08, 0.1, 0.0]))}


def test_summary_states_one_holm_verdict_per_ordering_and_the_rest_as_exploratory():
    recs = _records({k: list(v) for k, v in SADS.items()})
    text = paired_report.summary_markdown(recs)
    family, exploratory = text.split("Exploratory, outside the family")
    lines = {ln.split(":")[0][2:]: ln for ln in family.splitlines() if ln.startswith("- ")}
    assert set(lines) == {"spatial similarity improves on the no-KD student",
                          "channel similarity improves on the no-KD student",
                          "the no-KD student beats batch similarity", "the no-KD student beats FSP"}
    spatial = paired_stats.compare(recs, "spatial", "student")
    claim = "spatial similarity improves on the no-KD student"
    assert lines[claim].startswith(f"- {claim}: **holds**, {spatial['interval'].fmt()} (5 seeds; p < 0.001")
    assert spatial["interval"].fmt().startswith("-20.0% [")  # exactly 0.8 x on every seed: exp(ln 0.8) - 1
    assert "**equivalent**" in lines["channel similarity improves on the no-KD student"]
    assert "**reversed**" in lines["the no-KD student beats batch similarity"]
    fsp = lines["the no-KD student beats FSP"]
    assert "**undecided**" in fsp and "(5 seeds; p 0.933, Holm 1.000; TOST p 0.299, Holm 1.000; the verdict stays " \
        "without any one seed in 5 of 5)" in fsp
    assert "Here: holds 1, reversed 1, equivalent 1, undecided 1." in family
    assert "- DIM-channel is better than DIM-spatial: reversed, +25.0% [" in exploratory  # a strong pair, unadjusted
    assert "Median 95 % half-width of the log ratio over the 1 pair among channel, spatial: " in text
    strong = _records({c: list(STUDENT * (1 + k * 0.05 + NOISE * k)) for k, c in enumerate(paired_stats.STRONG)})
    text = paired_report.summary_markdown(strong)
    assert "Median 95 % half-width of the log ratio over the 10 pairs among batch+spatial+channel, channel, ofd, " \
           "spatial, spatial+channel: " in text and "seeds per configuration." in text
    assert paired_report.summary_markdown(_records({"hinton": [1.0]})).startswith("Not enough runs")


def test_table1_carries_the_paired_interval_column():
    recs = _records({k: list(v) for k, v in SADS.items()})
    plain = results.table_rows(results.summarise(recs))
    rows = paired_report.with_intervals(plain, recs)
    by = {r["config"]: r for r in rows}
    want = paired_stats.confidence_interval(np.log(SADS["spatial"] / STUDENT), log=True)
    assert (by["spatial"]["sad_rel_paired"], by["spatial"]["sad_rel_low"], by["spatial"]["sad_rel_high"]) == \
        pytest.approx(np.expm1([want.mean, want.low, want.high]))
    assert by["student"]["sad_rel_low"] is None
    no_base = [r for r in recs if r["config"] != "student"]
    assert all(r["sad_rel_paired"] is None for r in paired_report.with_intervals(
        results.table_rows(results.summarise(no_base)), no_base))
    md = results.to_markdown(rows)
    assert "ΔSAD paired [95% CI]" in md and f"| {want.fmt()} |" in md
    assert "paired" not in results.to_markdown(plain)  # rows without intervals: the table as before
    assert r"$\Delta$SAD [95\% CI]" in results.to_latex(rows) and "sad_rel_high" in results.to_csv(rows)
    compact = results.to_compact_markdown(rows).splitlines()
    assert compact[0] == "| Method | seeds | SAD | MSE | GRAD | CONN | ΔSAD vs no KD [95% CI] | paper ΔSAD |"
    spatial = next(ln for ln in compact if ln.startswith("| DIM-spatial |")).split(" | ")
    assert spatial[-2] == want.fmt() and spatial[-1] == f"{100 * by['spatial']['paper_sad_rel']:+.1f}% |"
    assert next(ln for ln in compact if ln.startswith("| DIM-student")).split(" | ")[-2] == "—"
    with pytest.raises(ValueError, match="with_intervals"):
        results.to_compact_markdown(plain)


def test_forest_plot_draws_the_computed_intervals_and_the_papers_values():
    recs = _records({k: list(v) for k, v in SADS.items()})
    rows = paired_report.with_intervals(results.table_rows(results.summarise(recs)), recs)
    fig = figures.forest_plot(rows)
    ax = fig.axes[0]
    shown = [r for r in rows if r["config"] != "student"]  # fsp, batch, spatial, channel in the paper's order
    assert [t.get_text() for t in ax.get_yticklabels()] == [r["name"] for r in shown]  # the table's names
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "DIM-FSP"
    assert list(ax.get_yticks()) == [3, 2, 1, 0]  # the table's first row at the top
    assert ax.get_xscale() == "log"  # the ratio's scale, on which the intervals are computed
    bar = ax.containers[0]
    assert list(bar.lines[0].get_ydata()) == [3, 2, 1, 0]
    assert bar.lines[0].get_xdata() == pytest.approx([1 + r["sad_rel_paired"] for r in shown])
    ends = [list(seg[:, 0]) for seg in bar.lines[2][0].get_segments()]
    assert ends == [pytest.approx([1 + r["sad_rel_low"], 1 + r["sad_rel_high"]]) for r in shown]
    diamonds = ax.collections[-1].get_offsets()[:, 0]
    assert list(diamonds) == pytest.approx([1 + r["paper_sad_rel"] for r in shown])
    band = ax.patches[0]  # axvspan: a factor 1.03 either way
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx((1 / 1.03, 1.03))
    assert any(list(line.get_xdata()) == [1, 1] for line in ax.lines)  # the no-change line
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert "0 %" in labels and "-20 %" in labels  # ticks read as changes
    fig.canvas.draw()  # the legend sits below the axis label, not on it
    (legend,) = fig.legends
    assert legend.get_window_extent().y1 <= ax.xaxis.label.get_window_extent().y0


def test_cli_pools_runs_csv_files(tmp_path, capsys):
    files = []
    for i in range(2):
        recs = _records({k: list(v * (1 + 0.01 * i)) for k, v in SADS.items()})
        files.append(tmp_path / f"run{i}.csv")
        files[-1].write_text(results.runs_csv(recs))
    paired_report.main([str(f) for f in files] + ["--pair", "spatial:channel"])
    out = capsys.readouterr().out
    # the two files' runs of one seed are one unit: 5 seeds from 10 runs
    assert "| spatial similarity improves on the no-KD student | 5 (10 runs) | -20.0% [" in out
    assert "| DIM-spatial is better than DIM-channel | 5 (10 runs) |" in out
    assert "- seeds are the units: a seed's log ratios in the several files are averaged" in out
    assert "student seed 0 is identical" not in out
    paired_report.main([str(f) for f in files] + ["--units", "run"])
    assert "| spatial similarity improves on the no-KD student | 10 | -20.0% [" in capsys.readouterr().out
    copy = tmp_path / "copy.csv"
    copy.write_text(files[0].read_text())
    paired_report.main([str(files[0]), str(copy)])  # the same runs under two names: every run counted twice
    assert f"student seed 0 is identical in {files[0]} and {copy}: one training recorded 2 times" in \
        capsys.readouterr().out
    with pytest.raises(SystemExit):
        paired_report.main([str(files[0]), str(files[0])])
    assert "run0.csv is named twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired_report.main([str(files[0]), "--pair", "spatial:nope"])
    assert "--pair names nope, which the files have no runs of" in capsys.readouterr().err


def test_statistics_page_shows_the_commands_current_output(monkeypatch):
    """docs/statistics.md holds the output of the commands it states, on the committed per-run metrics: the default
    run alone and the four constant-lr runs pooled by seed."""
    from conftest import REPO

    monkeypatch.chdir(REPO)
    page = (REPO / "docs" / "statistics.md").read_text(encoding="utf-8")
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("constant_lr_runs*.csv"))
    for command, names in (("docs/default_runs.csv", ["docs/default_runs.csv"]),
                           ("docs/constant_lr_runs*.csv", files)):
        assert f"python -m matting_lib.paired_report {command}\n" in page
        out = paired_report.report_markdown([r for n in names for r in paired_report.read_runs_csv(n)])
        assert out in page, f"regenerate docs/statistics.md with the command it states ({command})"
    assert "five runs" not in page  # only committed runs are reported


def test_statistics_page_shows_what_the_test_images_add_on_the_committed_run():
    """docs/statistics.md holds the per-image report (seed x foreground bootstrap, Table 1 per kind) of the committed
    default run, and the committed per-image file is that run's: each run's mean over its images is its SAD in
    docs/default_runs.csv."""
    from conftest import REPO

    rows = results.read_per_image(REPO / "docs" / "default_runs_per_image.csv.gz")
    runs = {(r["config"], r["seed"]): r["metrics"]["official"]["sad"]
            for r in paired_report.read_runs_csv(REPO / "docs" / "default_runs.csv") if r["config"] != "teacher"}
    per_run: dict = {}
    for r in rows:
        per_run.setdefault((r["config"], r["seed"]), []).append(r["sad"])
    assert {k for k in per_run if k[0] != "teacher"} == set(runs)
    for key, sad in runs.items():
        assert len(per_run[key]) == 200 and np.mean(per_run[key]) == pytest.approx(sad, rel=1e-9), key
    page = (REPO / "docs" / "statistics.md").read_text(encoding="utf-8")
    command = "python -m matting_lib.paired_report docs/default_runs.csv --per-image docs/default_runs_per_image.csv.gz"
    assert command in page
    assert paired_report.per_image_report(rows) in page, f"regenerate docs/statistics.md with {command}"


def test_compare_two_runs_verdict_by_verdict(tmp_path, capsys):
    """--compare puts two runs of one profile side by side: bit-identical runs counted, each run's verdict and
    interval per ordering, and the orderings whose verdicts differ named."""
    a = _records({k: list(v) for k, v in SADS.items()})
    # the second run: the same no-KD students, spatial 5 % worse on every seed, batch now as good as the student
    other = {**{k: list(v) for k, v in SADS.items()}, "spatial": list(SADS["spatial"] * 1.05),
             "batch": list(STUDENT * (1 + NOISE))}
    b = _records(other)
    text = paired_report.compare_markdown(a, b, names=("x.csv", "y.csv"))
    assert text.startswith(
        f"Student runs in both: 25; bit-identical SAD: 15; mean |ΔSAD| per run "
        f"{np.mean([0.05 * s for s in SADS['spatial']] + [0.0] * 15 + list(abs(STUDENT * (1 + NOISE) - SADS['batch']))):.3f}"  # noqa: E501
    )
    rows = {ln.split(" | ")[0][2:]: ln for ln in text.splitlines() if ln.startswith("| ") and "claim" not in ln}
    assert rows["the no-KD student beats batch similarity"].endswith("| reversed, " + paired_stats.compare(
        a, "student", "batch")["interval"].fmt() + " | equivalent, " + paired_stats.compare(
        b, "student", "batch")["interval"].fmt() + " | **no** |")
    assert rows["spatial similarity improves on the no-KD student"].endswith("| yes |")
    assert "DIM-channel is better than DIM-spatial (exploratory)" in rows  # a strong pair outside the family
    assert "Same verdict on 4 of 5; different on: the no-KD student beats batch similarity (reversed → equivalent)." \
        in text
    for i, recs in enumerate((a, b)):
        (tmp_path / f"r{i}.csv").write_text(results.runs_csv(recs))
    paired_report.main(["--compare", str(tmp_path / "r0.csv"), str(tmp_path / "r1.csv")])
    assert capsys.readouterr().out == paired_report.compare_markdown(a, b, names=(str(tmp_path / "r0.csv"),
                                                                                  str(tmp_path / "r1.csv")))
    with pytest.raises(SystemExit):
        paired_report.main(["--compare", str(tmp_path / "r0.csv")])
    assert "--compare takes exactly two runs.csv files" in capsys.readouterr().err
    with pytest.raises(ValueError, match="x.csv and y.csv have no student run"):
        paired_report.compare_markdown(a, _records({"teacher": [1.0]}), names=("x.csv", "y.csv"))
