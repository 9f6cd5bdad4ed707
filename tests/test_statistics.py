"""The statistics behind the verdicts: log-ratio intervals, TOST and Holm against hand computations and SciPy,
the symmetry of A vs B, the family's verdicts, leave-one-seed-out stability, the seed × image bootstrap, Table 1
per kind, the per-image file, and paired_report's answers to bad input (docs/bad_input.md)."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from scipy import stats

from matting_lib.reporting import paired_report, paired_stats, results


def _rec(config, seed, sad, source=""):
    return {"config": config, "seed": seed, "metrics": {"official": {"sad": sad, "mse": 0.01, "grad": 1.0,
                                                                       "conn": sad}}, "source": source}


def _records(sads: dict[str, list[float]]) -> list[dict]:
    return [_rec(cfg, seed, v) for cfg, vals in sads.items() for seed, v in enumerate(vals)]


def _t2_upper(t: float) -> float:
    """P(T > t) for Student's t with 2 degrees of freedom, in closed form: (1 − t / √(t² + 2)) / 2."""
    return (1 - t / math.sqrt(t * t + 2)) / 2


A, B = [4.0, 4.4, 3.6], [5.0, 5.0, 4.0]  # ratios 0.8, 0.88, 0.9


def test_log_ratio_interval_matches_a_hand_computation():
    recs = _records({"a": A, "b": B})
    d = [math.log(0.8), math.log(0.88), math.log(0.9)]
    mean = sum(d) / 3
    s = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302653 * s / math.sqrt(3)  # t(0.975, 2 df) from a t table
    c = paired_stats.compare(recs, "a", "b")
    assert (c["log_mean"], c["log_low"], c["log_high"]) == pytest.approx((mean, mean - half, mean + half), abs=1e-6)
    assert (c["mean"], c["low"], c["high"]) == pytest.approx(
        (math.exp(mean) - 1, math.exp(mean - half) - 1, math.exp(mean + half) - 1), abs=1e-6)
    assert c["mean"] == pytest.approx(-0.14111, abs=1e-5)  # the geometric mean ratio 0.8589, shown as -14.1 %
    assert c["interval"].fmt() == "-14.1% [-26.5, +0.3]"
    assert c["std"] == pytest.approx(s) and c["half_width"] == pytest.approx(half, abs=1e-6)
    # the two-sided t-test with 2 df in closed form, and SciPy by another route
    t = mean / (s / math.sqrt(3))
    assert c["p"] == pytest.approx(2 * _t2_upper(abs(t)))
    assert c["p"] == pytest.approx(stats.t.sf(abs(t), 2) * 2)


def test_tost_matches_a_hand_computation_and_scipy():
    d = np.log(np.array(A) / np.array(B))
    delta = math.log(1.03)
    se = d.std(ddof=1) / math.sqrt(3)
    lower = _t2_upper((d.mean() + delta) / se)  # H0: d <= -delta, rejected for large t
    upper = _t2_upper(-(d.mean() - delta) / se)  # H0: d >= +delta, rejected for small t
    assert paired_stats.tost_p(d, 0.03) == pytest.approx(max(lower, upper))
    assert paired_stats.tost_p(d, 0.03) == pytest.approx(0.96155, abs=1e-4)
    close = np.log([1.004, 0.998, 1.001, 0.999, 1.002])
    se = close.std(ddof=1) / math.sqrt(5)
    want = max(stats.t.sf((close.mean() + delta) / se, 4), stats.t.cdf((close.mean() - delta) / se, 4))
    assert paired_stats.tost_p(close, 0.03) == pytest.approx(want) and want < 1e-4
    # TOST at 0.025 per side is the 95 % interval within the margin
    for x in (close, d, np.log([1.02, 1.03, 0.99, 1.025])):
        ci = paired_stats.confidence_interval(x, log=True)
        assert (paired_stats.tost_p(x, 0.03) <= 0.025) == paired_stats.within_margin(ci, 0.03)
    assert paired_stats.tost_p(close, 0.0) == 1.0 and math.isnan(paired_stats.tost_p([0.01], 0.03))


def test_a_against_b_mirrors_b_against_a():
    recs = _records({"a": [4.0, 4.4, 3.6, 5.1], "b": [5.0, 5.0, 4.0, 4.9]})
    ab, ba = paired_stats.compare(recs, "a", "b"), paired_stats.compare(recs, "b", "a")
    assert (ab["log_mean"], ab["log_low"], ab["log_high"]) == pytest.approx(
        (-ba["log_mean"], -ba["log_high"], -ba["log_low"]))
    assert (1 + ab["mean"]) * (1 + ba["mean"]) == pytest.approx(1)
    assert (1 + ab["low"]) * (1 + ba["high"]) == pytest.approx(1)
    assert ab["p"] == pytest.approx(ba["p"]) and ab["p_tost"] == pytest.approx(ba["p_tost"])
    want = {"holds": "reversed", "reversed": "holds", "equivalent": "equivalent", "undecided": "undecided"}
    assert want[ab["verdict"]] == ba["verdict"]


def test_holm_matches_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert paired_stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired_stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    # two groups of two (at most one true per group): multipliers 2, 2, 2, 1 instead of 4, 3, 2, 1
    assert paired_stats.holm([0.001, 0.9, 0.02, 0.5], groups=[0, 0, 1, 1]) == pytest.approx([0.002, 1.0, 0.04, 1.0])
    assert paired_stats.holm([0.001, 0.9, 0.02, 0.5]) == pytest.approx([0.004, 1.0, 0.06, 1.0])
    adj = paired_stats.holm([0.01, math.nan, 0.02])
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="3 p-values but 2 group labels"):
        paired_stats.holm([0.1, 0.2, 0.3], groups=[0, 1])


def test_family_verdicts_adjust_both_tests_of_every_ordering():
    def c(p, p_tost, mean):
        return {"p": p, "p_tost": p_tost, "log_mean": mean, "verdict": "unadjusted"}

    # difference p 0.001, 0.03, 0.5; equivalence p (doubled) 1, 1, 0.008; three orderings, so the multiplier
    # stays 3 while each still has a hypothesis: adjusted 0.003, 0.09 and 0.024
    fam = paired_stats.family_verdicts([c(0.001, 1.0, -0.2), c(0.03, 1.0, 0.1), c(0.5, 0.004, 0.001)])
    assert [f["verdict"] for f in fam] == ["holds", "undecided", "equivalent"]
    assert [f["p_adj"] for f in fam] == pytest.approx([0.003, 0.09, 1.0])
    assert [f["p_tost_adj"] for f in fam] == pytest.approx([1.0, 1.0, 0.024])
    assert fam[1]["verdict_unadjusted"] == "unadjusted"
    assert paired_stats.family_verdicts([c(0.001, 1.0, 0.3)])[0]["verdict"] == "reversed"
    # a TOST p of 0.02 passes at 0.025 per side alone, not in a family of two
    assert paired_stats.family_verdicts([c(0.5, 0.02, 0.0)])[0]["verdict"] == "equivalent"
    assert paired_stats.family_verdicts([c(0.5, 0.02, 0.0), c(0.5, 0.9, 0.0)])[0]["verdict"] == "undecided"


def test_leave_one_seed_out_counts_the_subsets_that_keep_each_verdict():
    base = [5.0, 5.2, 4.8, 5.1, 4.9]
    recs = _records({"student": base, "a": [b * r for b, r in zip(base, [0.95, 0.96, 0.95, 0.96, 1.20])],
                     "b": [b * r for b, r in zip(base, [0.80, 0.81, 0.79, 0.80, 0.80])]})
    pairs = [("a", "student"), ("b", "student")]
    full = paired_stats.judge(recs, pairs, family=False)
    assert [c["verdict"] for c in full] == ["undecided", "holds"]  # seed 4 alone makes a's interval cross 0
    assert paired_stats.leave_one_out(recs, pairs, family=False) == [(4, 5), (5, 5)]
    without = paired_stats.judge(recs, pairs, family=False, exclude={4})
    assert without[0]["verdict"] == "holds" and without[0]["n"] == 4
    two = _records({"student": base[:2], "a": base[:2]})
    assert paired_stats.leave_one_out(two, [("a", "student")], family=True) == [(0, 0)]  # too few seeds


def test_seeds_sharing_runs_are_one_unit():
    """Two files with the same seeds: pooled by seed the interval has n = seeds, not n = runs."""
    recs = [_rec(c, s, v, src) for src, k in (("x.csv", 1.0), ("y.csv", 1.02))
            for c, vals in {"student": [5.0, 5.5, 6.0], "a": [4.0, 4.6, 4.7]}.items() for s, v in enumerate(vals)
            for v in [v * (k if c == "a" else 1)]]
    seeds = paired_stats.compare(recs, "a", "student")
    runs = paired_stats.compare(recs, "a", "student", cluster=False)
    assert (seeds["n"], seeds["runs"], runs["n"]) == (3, 6, 6)
    per_seed = [np.mean([math.log(a * k / s) for k in (1.0, 1.02)]) for a, s in zip([4.0, 4.6, 4.7], [5.0, 5.5, 6.0])]
    assert seeds["log_mean"] == pytest.approx(np.mean(per_seed))
    assert seeds["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3))
    assert seeds["half_width"] > runs["half_width"]  # six correlated runs are not six seeds


def _per_image(factors: dict[str, np.ndarray], fgs=("f0-hair", "f1-hair", "f2-glass"), bgs=2):
    """Per-image rows: config -> (seeds, foregrounds) factor on a base SAD per image."""
    rows = []
    for cfg, f in factors.items():
        for s in range(f.shape[0]):
            for j, fg in enumerate(fgs):
                for b in range(bgs):
                    rows.append({"config": cfg, "seed": s, "name": f"bg{b}!{fg}!{j}!{b}", "foreground": fg,
                                 "kind": fg.split("-")[1], "sad": (1 + j + 0.5 * b) * f[s, j], "mse": 0.0,
                                 "grad": 0.0, "conn": 0.0})
    return rows


def test_image_bootstrap_separates_seed_and_image_variation():
    ones = np.ones((4, 3))
    seed_only = _per_image({"student": ones, "a": ones * np.array([[0.8], [0.85], [0.9], [0.82]])})
    iv = paired_stats.image_bootstrap(seed_only, "a", "student", n_boot=500)
    assert iv["images"].half_width == pytest.approx(0, abs=1e-12)  # the same ratio on every image
    assert iv["seeds"].half_width > 0.01
    assert iv["seeds × images"].half_width == pytest.approx(iv["seeds"].half_width, rel=0.3)
    assert iv["seeds"].mean == pytest.approx(np.mean(np.log([0.8, 0.85, 0.9, 0.82])))
    image_only = _per_image({"student": ones, "a": ones * np.array([0.6, 0.9, 1.0])})
    iv = paired_stats.image_bootstrap(image_only, "a", "student", n_boot=500)
    assert iv["seeds"].half_width == pytest.approx(0, abs=1e-12) and iv["images"].half_width > 0.05
    # the estimate is the run-level ratio: total SAD of a over total SAD of the student
    w = np.array([2 * 1 + 0.5, 2 * 2 + 0.5, 2 * 3 + 0.5])
    assert iv["images"].mean == pytest.approx(math.log((w * [0.6, 0.9, 1.0]).sum() / w.sum()))
    again = paired_stats.image_bootstrap(image_only, "a", "student", n_boot=500)
    assert again["images"] == iv["images"]  # seeded
    with pytest.raises(ValueError, match="needs 2 or more shared seeds"):
        paired_stats.image_bootstrap(_per_image({"student": ones[:1], "a": ones[:1]}), "a", "student")


def test_table1_per_kind():
    ones = np.ones((3, 3))
    rows = _per_image({"student": ones, "a": ones * np.array([0.5, 0.5, 1.0]) * np.array([[1.0], [1.01], [0.99]])})
    ch = paired_stats.per_kind_changes(rows, "a")
    assert set(ch) == {"hair", "glass"}
    assert ch["glass"].change[0] == pytest.approx(np.exp(np.mean(np.log([1.0, 1.01, 0.99]))) - 1)
    assert ch["hair"].change[0] == pytest.approx(np.exp(np.mean(np.log([0.5, 0.505, 0.495]))) - 1)
    text = paired_report.per_kind_markdown(rows)
    assert "| Method | glass (2) | hair (4) |" in text
    assert f"| a | {ch['glass'].fmt()} | {ch['hair'].fmt()} |" in text
    report = paired_report.per_image_report(rows)
    assert report.startswith("What the choice of test images adds") and "Mean SAD per foreground kind" in report


def test_per_image_rows_are_collected_from_the_runs_and_round_trip(tmp_path):
    recs = []
    for cfg, seed, scale in (("teacher", None, 0.5), ("student", 0, 1.0), ("spatial", 0, 0.8)):
        run = tmp_path / cfg
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"config": cfg, "seed": seed, "metrics": {}}))
        (run / "metrics_official.csv").write_text(
            "name,sad,mse,grad,conn,n_unknown,note\n"
            + "".join(f"bg{b}!test-0001-hair!0!{b}.png,{scale * (1 + b)},0.01,1.0,{scale},10,\n" for b in range(2))
            + f"bg0!test-0002-glass!1!0.png,{scale * 3},0.02,2.0,{scale},10,\n")
        recs.append({"config": cfg, "seed": seed, "_path": str(run / "metrics.json")})
    rows = results.per_image_rows(recs)
    assert len(rows) == 9 and {r["kind"] for r in rows} == {"hair", "glass"}
    assert rows[0] == {"config": "teacher", "seed": None, "name": "bg0!test-0001-hair!0!0", "foreground":
                       "test-0001-hair", "kind": "hair", "sad": 0.5, "mse": 0.01, "grad": 1.0, "conn": 0.5}
    data = results.per_image_csv_gz(rows)
    assert data == results.per_image_csv_gz(rows) and data[:2] == b"\x1f\x8b"  # no time stamp: same bytes
    (tmp_path / "p.csv.gz").write_bytes(data)
    back = results.read_per_image(tmp_path / "p.csv.gz")
    assert back == rows
    (tmp_path / "plain.csv").write_bytes(gzip.decompress(data))
    assert results.read_per_image(tmp_path / "plain.csv") == rows
    (tmp_path / "spatial" / "metrics_official.csv").unlink()
    with pytest.raises(FileNotFoundError, match="1 run.s. have no per-image metrics"):
        results.per_image_rows(recs)


# ------------------------------------------------------------------------------ paired_report and bad numbers
GOOD = ("config,seed,convention,sad,mse,grad,conn\n"
        "teacher,,official,3.0,0.03,6.0,3.0\n"
        + "".join(f"student,{s},official,{v},0.07,8.0,5.0\n" for s, v in enumerate([6.0, 5.8, 6.3]))
        + "".join(f"spatial,{s},official,{v},0.05,7.0,4.0\n" for s, v in enumerate([4.5, 4.3, 4.6])))


def _run(tmp_path, capsys, text: str | bytes, *options: str) -> tuple[int, str]:
    f = tmp_path / "runs.csv"
    f.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(SystemExit) as exit_:
        paired_report.main([str(f), *options])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_.value.code, err


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("student,1,official,5.8", "student,1,official,nan"),
     "runs.csv, line 4: sad = nan (student, seed 1) is not a non-negative finite number"),
    (GOOD.replace("student,1,official,5.8", "student,1,official,-5.8"),
     "runs.csv, line 4: sad = -5.8 (student, seed 1) is not a non-negative finite number"),
    (GOOD + "spatial,1,official,4.1,0.05,7.0,4.0\n",
     "runs.csv, lines 7 and 9: spatial seed 1 (official) appears twice; keep one row per run and convention"),
    (GOOD.replace("spatial,2,official,4.6", "spatial,2,official,abc"),
     "runs.csv, line 8: sad = 'abc' is not a number (spatial, seed 2)"),
    (GOOD.replace("spatial,2,official,4.6", "spatial,2,official,"),
     "runs.csv, line 8: sad = '' is not a number (spatial, seed 2)"),
    (GOOD.replace("spatial,2,", "spatial,two,"), "runs.csv, line 8: seed = 'two' is not a non-negative integer"),
    ("", "runs.csv: the file is empty; give a runs.csv written by notebook 04"),
    ("config,seed,convention,sad,mse,grad,conn\n", "runs.csv: holds a header but no runs"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "runs.csv: not a text table (not UTF-8"),
    (b"config,seed\x00,convention", "runs.csv: not a text table (it holds NUL bytes)"),
    ("name,sad\nx,1\n", "runs.csv: not a runs table (needs the columns config, seed, convention"),
])
def test_paired_report_refuses_bad_numbers_and_files_with_a_message(tmp_path, capsys, text, message):
    code, err = _run(tmp_path, capsys, text)
    assert code == 2 and message in err, err


def test_a_zero_sad_cannot_be_a_ratio(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, GOOD.replace("spatial,0,official,4.5", "spatial,0,official,0.0"))
    assert code == 2 and "spatial seed 0 has sad = 0.0; a paired ratio needs a positive finite sad" in err


@pytest.mark.parametrize("options, message", [
    (("--level", "0"), "--level is a confidence level strictly between 0 and 1 (e.g. 0.95), got 0"),
    (("--level", "1"), "strictly between 0 and 1"),
    (("--level", "2"), "strictly between 0 and 1 (e.g. 0.95), got 2"),
    (("--level", "high"), "--level takes a number, got 'high'"),
    (("--margin", "-0.5"), "--margin is a non-negative fraction (0.03 = ±3 %), got -0.5"),
    (("--margin", "nan"), "--margin is a non-negative fraction (0.03 = ±3 %), got nan"),
    (("--convention", "spkd"), "holds no 'spkd' metrics (it has official); use --convention official"),
])
def test_paired_report_refuses_bad_options(tmp_path, capsys, options, message):
    code, err = _run(tmp_path, capsys, GOOD, *options)
    assert code == 2 and message in err, err


def test_a_table_saved_by_a_spreadsheet_is_read_as_it_is(tmp_path, capsys):
    """UTF-8 byte-order mark and CRLF line ends (Excel's "CSV UTF-8"): the same report as the plain file."""
    (tmp_path / "plain.csv").write_text(GOOD)
    paired_report.main([str(tmp_path / "plain.csv")])
    plain = capsys.readouterr().out
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    paired_report.main([str(tmp_path / "excel.csv")])
    assert capsys.readouterr().out == plain and "| spatial similarity improves on the no-KD student | 3 |" in plain
    recs = results.records_from_runs_csv("\ufeff" + GOOD.replace("\n", "\r\n"))
    assert {(r["config"], r["seed"]) for r in recs} == {("teacher", None)} | {
        (c, s) for c in ("student", "spatial") for s in range(3)}


def test_a_row_with_too_few_cells_is_named(tmp_path, capsys):
    code, err = _run(tmp_path, capsys, GOOD.replace("student,1,official,5.8,0.07,8.0,5.0", "student,1,official,5.8"))
    assert code == 2 and "runs.csv, line 4: expected 7 cells (config, seed, convention, sad, mse, grad, conn)" in err


def test_notebook_outputs_from_a_runs_csv(tmp_path, capsys):
    """--table1, --summary and --forest give what notebook 04 writes, from one committed runs.csv."""
    f = tmp_path / "runs.csv"
    f.write_text(GOOD)
    recs = paired_report.read_runs_csv(f)
    paired_report.main([str(f), "--table1", "compact", "--summary", "--forest", str(tmp_path / "forest.png")])
    out = capsys.readouterr().out
    assert out == results.to_compact_markdown(paired_report.table1(recs)) + "\n" + paired_report.notebook_summary(recs)
    assert out.count("The teacher's SAD is 50% of the no-KD student's") == 1
    assert (tmp_path / "forest.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exit_:
        paired_report.main([str(f), "--forest", str(tmp_path / "forest.png")])
    assert exit_.value.code == 2 and "forest.png exists; pass --force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired_report.main([str(f), "--forest", str(f), "--force"])
    assert "is the input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired_report.main([str(f), str(f.with_name("x.csv")), "--summary"])
    assert "no such file" in capsys.readouterr().err
