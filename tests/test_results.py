"""Table building from run metrics: aggregation over seeds, relative changes, formats."""

from __future__ import annotations

import json

import pytest

from matting_lib.metrics import METRIC_KEYS
from matting_lib.reporting import paper, results


def _write(tmp_path, config, seed, sad, mse=0.01, grad=10.0, conn=20.0):
    d = tmp_path / "students" / f"{config}-seed{seed}"
    d.mkdir(parents=True)
    m = {"sad": sad, "mse": mse, "grad": grad, "conn": conn}
    (d / "metrics.json").write_text(json.dumps({"config": config, "seed": seed,
                                                "metrics": {"official": m, "spkd": {k: 2 * v for k, v in m.items()}}}))


def test_summarise_mean_std_and_relative(tmp_path):
    for seed, sad in enumerate([100.0, 110.0, 120.0]):
        _write(tmp_path, "student", seed, sad)
    for seed, sad in enumerate([80.0, 90.0, 100.0]):
        _write(tmp_path, "spatial+channel", seed, sad)
    recs = results.load_records(sorted(tmp_path.rglob("metrics.json")))
    summ = results.summarise(recs)
    assert summ["student"]["sad"].mean == pytest.approx(110.0)
    assert summ["student"]["sad"].std == pytest.approx(10.0)  # sample std
    assert summ["student"]["sad"].n == 3
    assert results.summarise(recs, "spkd")["student"]["sad"].mean == pytest.approx(220.0)
    rows = results.table_rows(summ)
    assert [r["config"] for r in rows] == ["student", "spatial+channel"]  # the paper's row order
    sc = rows[1]
    assert sc["sad_rel"] == pytest.approx(-20 / 110)
    assert sc["paper_sad"] == paper.TABLE1["spatial+channel"][0]
    assert sc["paper_sad_rel"] == pytest.approx((84.37 - 121.77) / 121.77)
    md = results.to_markdown(rows)
    assert "90.00 ± 10.00" in md and "DIM-spatial+channel" in md and "-18.2%" in md
    assert results.to_csv(rows).splitlines()[0].startswith("config,name,n,sad")
    tex = results.to_latex(rows)
    assert r"\pm" in tex and r"\toprule" in tex


def test_runs_csv_round_trip_gives_the_same_table(tmp_path):
    for seed, sad in enumerate([100.0, 110.0 + 1e-9, 120.0]):
        _write(tmp_path, "student", seed, sad, mse=0.1 / 3)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "metrics.json").write_text(json.dumps({"config": "teacher", "metrics": {
        "official": {"sad": 60.0, "mse": 0.02, "grad": 5.0, "conn": 9.0}}}))
    recs = results.load_records(sorted(tmp_path.rglob("metrics.json")))
    text = results.runs_csv(recs)
    lines = text.splitlines()
    assert lines[0] == "config,seed,convention,sad,mse,grad,conn" and len(lines) == 1 + 3 * 2 + 1
    assert "student,1,official,110.000000001,0.03333333333333333,10.0,20.0" in lines  # full precision
    assert "teacher,,official,60.0,0.02,5.0,9.0" in lines
    back = results.records_from_runs_csv(text)
    for conv in ("official", "spkd"):
        want = results.to_markdown(results.table_rows(results.summarise([r for r in recs if conv in r["metrics"]],
                                                                        conv)))
        got = results.to_markdown(results.table_rows(results.summarise([r for r in back if conv in r["metrics"]],
                                                                       conv)))
        assert got == want
    with pytest.raises(ValueError, match="not-runs.csv: not a runs table"):
        results.records_from_runs_csv("config,name\nteacher,DIM-teacher\n", source="not-runs.csv")


def _run(runs, config, seed, sad=1.0):
    d = runs / ("teacher" if config == "teacher" else f"students/kd-{config}-seed{seed}")
    d.mkdir(parents=True, exist_ok=True)
    m = {"sad": sad, "mse": 0.01, "grad": 1.0, "conn": 1.0}
    (d / "metrics.json").write_text(json.dumps({"config": config, "seed": seed, "metrics": {"official": m}}))
    return d


def test_collect_reads_exactly_the_wanted_runs_and_names_the_missing_ones(tmp_path):
    _run(tmp_path, "teacher", 0)
    for seed in (0, 1):
        _run(tmp_path, "student", seed)
    _run(tmp_path, "spatial", 0)
    stale = _run(tmp_path, "spatial", 1)
    stale.rename(stale.with_name(stale.name + ".stale-20260101T000000Z"))  # moved aside: never a table row
    with pytest.raises(FileNotFoundError) as err:
        results.collect(tmp_path, configs=["student", "spatial"], seeds=2, command="./run_all.sh --profile p")
    msg = str(err.value)
    assert "Table 1 needs 1 run(s)" in msg and "spatial seed 1: " in msg and "kd-spatial-seed1/metrics.json" in msg
    assert "`./run_all.sh --profile p --only distill`" in msg and "student seed" not in msg
    recs = results.collect(tmp_path, configs=["student", "spatial"], seeds=1)
    assert [(r["config"], r["seed"]) for r in recs] == [("teacher", 0), ("student", 0), ("spatial", 0)]
    (tmp_path / "teacher" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"the teacher: .* is missing[\s\S]*--only teacher`"):
        results.collect(tmp_path, configs=["student"], seeds=1)
    _run(tmp_path, "teacher", 0)
    (tmp_path / "students" / "kd-spatial-seed0" / "metrics.json").write_text('{"config": "spa')  # truncated
    with pytest.raises(ValueError, match=r"kd-spatial-seed0/metrics.json is not readable JSON .*; rerun that run "
                                         r"\(./run_all.sh --only distill"):
        results.collect(tmp_path, configs=["spatial"], seeds=1)
    copied = _run(tmp_path, "at", 0)
    (copied / "metrics.json").write_text((tmp_path / "students/kd-student-seed0/metrics.json").read_text())
    with pytest.raises(ValueError, match="holds config 'student' seed 0, not 'at' seed 0"):
        results.collect(tmp_path, configs=["at"], seeds=1)


def test_collect_reads_the_seeds_from_first_seed(tmp_path):
    _run(tmp_path, "teacher", 0)
    for seed in (7, 8):
        _run(tmp_path, "student", seed)
    recs = results.collect(tmp_path, configs=["student"], seeds=2, first_seed=7)
    assert [(r["config"], r["seed"]) for r in recs] == [("teacher", 0), ("student", 7), ("student", 8)]
    with pytest.raises(FileNotFoundError, match="student seed 0: "):
        results.collect(tmp_path, configs=["student"], seeds=1)


def test_bad_metrics_file(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text("{}")
    with pytest.raises(ValueError, match="not a run metrics file"):
        results.load_records([p])


def test_figures_render_and_save(tmp_path):
    import numpy as np
    from matplotlib.container import BarContainer

    from matting_lib.reporting import figures

    summ = {c: {m: results.Stat(v, 1.0, 3) for m, v in zip(METRIC_KEYS, (100 - i, 0.05, 50, 100))}
            for i, c in enumerate(["student", "spatial", "channel"])}
    rows = results.table_rows(summ)
    bars = figures.relative_improvement_bars(rows)
    ours, theirs = (c for c in bars.axes[0].containers if isinstance(c, BarContainer))
    assert [b.get_height() for b in ours] == pytest.approx([-1.0, -2.0])  # SAD 99, 98 vs the student's 100
    student = paper.table1_row("student")["sad"]
    assert [b.get_height() for b in theirs] == pytest.approx(
        [100 * paper.relative_change(paper.table1_row(c)["sad"], student) for c in ("spatial", "channel")])
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["DIM-spatial", "DIM-channel"]  # the table's
    paths = figures.save_figure(bars, tmp_path / "bars")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    dotted = [figures.save_figure(bars, tmp_path / f"03_kd-spatial+channel-Lconv3.conv4.conv5.dconv5-seed{i}_terms")
              for i in (0, 1)]  # a layer-set run's name has dots: each seed keeps its own files
    assert [p.name for p in dotted[1]] == ["03_kd-spatial+channel-Lconv3.conv4.conv5.dconv5-seed1_terms.png",
                                           "03_kd-spatial+channel-Lconv3.conv4.conv5.dconv5-seed1_terms.pdf"]
    assert all(p.is_file() for ps in dotted for p in ps)
    log = tmp_path / "log.csv"
    log.write_text("step,loss,val_loss\n1,1.0,\n2,0.5,0.7\n3,0.4,\n")
    parsed = figures.read_log(log)
    assert np.isnan(parsed["val_loss"][0]) and parsed["val_loss"][1] == 0.7
    train_ax, val_ax = figures.learning_curves({"a": parsed}, smooth=1).axes
    assert train_ax.lines[0].get_ydata().tolist() == [1.0, 0.5, 0.4]
    assert val_ax.lines[0].get_xydata().tolist() == [[2.0, 0.7]]  # only the validated step
    img = np.zeros((8, 8, 3), np.uint8)
    grid = figures.qualitative_grid([{"image": img, "alpha": img[..., 0]}], ["image", "alpha"])
    assert [ax.get_title() for ax in grid.axes] == ["image", "alpha"]
    panels = figures.similarity_panels({"t": {"batch": np.eye(3)}, "s": {"batch": np.ones((3, 3))}},
                                       diff_against="t")
    images = [ax.images[0].get_array() for ax in panels.axes if ax.images]  # t, s, then |s − t|
    assert len(images) == 3 and np.array_equal(images[2], 1 - np.eye(3))


def test_best_config_excludes_teacher_and_student():
    rows = [{"config": "teacher", "sad": 1.0}, {"config": "student", "sad": 2.0}, {"config": "at", "sad": 3.0},
            {"config": "channel", "sad": 2.5}, {"config": "spatial", "sad": 2.7}]
    assert results.best_config(rows) == "channel"
    assert results.best_config(rows, among=("spatial", "at")) == "spatial"
    assert results.best_config(rows, among=("batch",)) is None


def test_histogram_and_loss_terms_figures():
    import numpy as np

    from matting_lib.reporting import figures

    fig = figures.histogram([1.0, 2.0, 2.5, 3.0], xlabel="SAD")
    assert fig.axes[0].get_xlabel() == "SAD" and len(fig.axes[0].patches) == 5
    log = {"step": np.arange(1, 4.0), "loss": np.ones(3), "alpha": np.ones(3), "kd_spatial": np.full(3, 0.1)}
    labels = [line.get_label() for line in figures.loss_terms(log).axes[0].lines]
    assert labels == ["alpha", "kd_spatial"]


def test_teacher_gap_sentence():
    S = results.Stat
    assert results.teacher_gap_sentence({"teacher": {"sad": S(50, 0, 1)}, "student": {"sad": S(100, 1, 3)}}) == \
        "The teacher's SAD is 50% of the no-KD student's (paper: 54%). "
    assert results.teacher_gap_sentence({"student": {"sad": S(100, 1, 3)}}) == ""


# The committed runs: first the default profile's run of Table 1, then the runs of the paper's constant-lr protocol
# at 3 seeds, one per machine and teacher forward (docs/reproducibility.md), in the order of the docs' columns.
RUN_FILES = ("default_runs", "default_runs_contiguous", "constant_lr_runs_xeon_avx512", "constant_lr_runs_epyc_avx2",
             "constant_lr_runs_xeon_avx512_plain_teacher", "constant_lr_runs_epyc_avx512_plain_teacher")
CONSTANT_LR = RUN_FILES[2:]


def _runs(name: str) -> list[dict]:
    from conftest import REPO

    return results.records_from_runs_csv((REPO / "docs" / f"{name}.csv").read_text(), source=f"docs/{name}.csv")


def _per_run_table(cell, configs) -> str:
    """One row per configuration, one column per committed run: ``cell(row of results.table_rows)``."""
    rows = {name: {r["config"]: r for r in results.table_rows(results.summarise(_runs(name)))} for name in CONSTANT_LR}
    head = ["configuration"] + [f"`{n.removeprefix('constant_lr_runs_')}`" for n in CONSTANT_LR]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config in configs:
        label = "student (no KD)" if config == "student" else config
        lines.append("| " + " | ".join([label] + [cell(rows[n][config]) for n in CONSTANT_LR]) + " |")
    return "\n".join(lines) + "\n"


def sad_per_run_table() -> str:
    """Test SAD, mean ± std over seeds, of every student configuration in each constant-lr run
    (docs/reproducibility.md)."""
    return _per_run_table(lambda r: results.Stat(r["sad"], r["sad_std"], r["n"]).fmt(2), results.ROW_ORDER[1:])


def delta_per_run_table() -> str:
    """ΔSAD vs the no-KD student of the teacher and every KD configuration in each constant-lr run
    (docs/results.md)."""
    configs = [c for c in results.ROW_ORDER if c != "student"]
    return _per_run_table(lambda r: f"{100 * r['sad_rel']:+.1f}%", configs)


def generated_results() -> dict[str, str]:
    """What notebook 04 makes of docs/default_runs.csv: both Table 1 conventions and the summary paragraph."""
    recs = _runs(RUN_FILES[0])
    tables = _table1(recs)
    return {"official": results.to_markdown(tables["official"]), "spkd": results.to_markdown(tables["spkd"]),
            "summary": _summary_quote(recs)}


def _table1(recs) -> dict[str, list[dict]]:
    """Notebook 04's Table 1 rows per convention, with their paired intervals."""
    from matting_lib.reporting import paired_report

    return {conv: paired_report.with_intervals(results.table_rows(results.summarise(recs, conv)), recs,
                                               convention=conv) for conv in ("official", "spkd")}


def readme_table1() -> str:
    """The README's compact Table 1: notebook 04's official rows with their paired intervals, eight columns."""
    return results.to_compact_markdown(_table1(_runs(RUN_FILES[0]))["official"])


def _summary_quote(recs) -> str:
    """Notebook 04's summary.md (teacher gap, then the paired verdicts) as a Markdown quote."""
    from matting_lib.reporting import paired_report

    text = results.teacher_gap_sentence(results.summarise(recs)).strip() + "\n\n" + paired_report.summary_markdown(recs)
    return "\n".join(f"> {ln}" if ln else ">" for ln in text.rstrip("\n").split("\n"))


def test_readme_table1_is_generated_from_the_committed_per_run_metrics():
    """The README's default-profile Table 1 is exactly what notebook 04 makes of docs/default_runs.csv (the
    per-run metrics of the run it reports, committed so another machine can compare run by run), and that file
    holds every configuration and seed of profiles/default.toml."""
    import tomllib

    from conftest import REPO

    recs = _runs(RUN_FILES[0])
    distill = tomllib.loads((REPO / "profiles" / "default.toml").read_text())["distill"]
    have = sorted((r["config"], r["seed"]) for r in recs if r["config"] != "teacher")
    assert have == sorted((c, s) for c in distill["configs"] for s in range(distill["seeds"]))
    assert [r["config"] for r in recs].count("teacher") == 1
    table = readme_table1()
    assert table in (REPO / "README.md").read_text(), "regenerate the README's Table 1 from docs/default_runs.csv"


def test_results_page_is_generated_from_the_committed_runs():
    """docs/results.md's tables and summary are notebook 04's output on docs/default_runs.csv, its per-run table
    and docs/reproducibility.md's are computed from the four constant-lr runs, and every committed run is listed."""
    from conftest import REPO

    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    for name, text in generated_results().items():
        assert text in page, f"docs/results.md: regenerate the {name} part from docs/default_runs.csv"
    assert delta_per_run_table() in page, "docs/results.md: regenerate the per-run ΔSAD table"
    repro = (REPO / "docs" / "reproducibility.md").read_text(encoding="utf-8")
    assert sad_per_run_table() in repro, "docs/reproducibility.md: regenerate the per-run SAD table"
    committed = {p.stem for pattern in ("default_runs*.csv", "constant_lr_runs*.csv")
                 for p in (REPO / "docs").glob(pattern)}
    assert committed == set(RUN_FILES), f"docs/ holds runs {sorted(committed)}; list each in RUN_FILES and the docs"
    configs = {r["config"] for r in _runs(RUN_FILES[0])}
    for name in RUN_FILES:
        assert f"({name}.csv)" in repro or f"({name}.csv)" in page, f"docs/reproducibility.md or docs/results.md " \
            f"does not link docs/{name}.csv"
        have = {(r["config"], r["seed"]) for r in _runs(name) if r["config"] != "teacher"}
        seeds = len({seed for _, seed in have})
        want = {(c, s) for c in configs - {"teacher"} for s in range(seeds)}
        assert have == want, f"docs/{name}.csv: not every configuration at seeds 0-{seeds - 1}"


def ablation_results() -> str:
    """What notebook 04 makes of docs/ablation_runs.csv (profiles/ablation.toml): the compact table with paired
    intervals and the generated summary, whose last orderings are Table 3's."""
    from matting_lib.reporting import paired_report

    recs = _runs("ablation_runs")
    rows = paired_report.with_intervals(results.table_rows(results.summarise(recs)), recs)
    return results.to_compact_markdown(rows) + "\n" + _summary_quote(recs)


def test_results_page_shows_table3_from_the_committed_ablation_run():
    """docs/results.md's Table 3 is notebook 04's output on docs/ablation_runs.csv, which holds every configuration
    and seed of profiles/ablation.toml."""
    import tomllib

    from conftest import REPO

    distill = tomllib.loads((REPO / "profiles" / "ablation.toml").read_text())["distill"]
    have = sorted((r["config"], r["seed"]) for r in _runs("ablation_runs") if r["config"] != "teacher")
    assert have == sorted((c, s) for c in distill["configs"] for s in range(distill["seeds"]))
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    assert ablation_results() in page, "docs/results.md: regenerate Table 3 from docs/ablation_runs.csv"


def test_ablation_run_repeats_the_default_runs_it_shares_bit_for_bit():
    """docs/reproducibility.md: the ablation run's no-KD and spatial+channel runs (and the teacher's row) equal the
    default run's exactly, the same code on the same machine."""
    from conftest import REPO

    def sads(name):
        return {(r["config"], r["seed"]): r["metrics"]["official"]["sad"] for r in _runs(name)}

    default, ablation = sads("default_runs"), sads("ablation_runs")
    shared = set(default) & set(ablation)
    assert {c for c, _ in shared} == {"teacher", "student", "spatial+channel"} and len(shared) == 15
    assert all(default[k] == ablation[k] for k in shared)
    assert "repeated the 14 no-KD and spatial+channel runs" in (REPO / "docs" / "reproducibility.md").read_text()


def test_reproducibility_page_compares_the_default_run_at_two_thread_counts():
    """docs/reproducibility.md holds the output of `paired_report --compare` on the committed default run and its
    second run at two torch threads per student, which holds the profile's seeds of every configuration it names."""
    import tomllib

    from conftest import REPO


    seeds = tomllib.loads((REPO / "profiles" / "default.toml").read_text())["distill"]["seeds"]
    configs = ["student", "fsp", "ofd", "batch", "spatial", "channel", "spatial+channel", "batch+spatial+channel"]
    have = sorted((r["config"], r["seed"]) for r in _runs("default_threads2_runs") if r["config"] != "teacher")
    assert have == sorted((c, s) for c in configs for s in range(seeds))
    _assert_comparison_in("reproducibility.md", ("docs/default_runs_contiguous.csv", "docs/default_threads2_runs.csv"),
                          same_runs=False)


def _assert_comparison_in(page_name: str, files: tuple[str, str], *, same_runs: bool) -> None:
    """``docs/<page_name>`` states ``paired_report --compare FILES`` and holds its current output; with
    ``same_runs`` the two files hold the same (configuration, seed) pairs."""
    from conftest import REPO

    from matting_lib.reporting import paired_report

    a, b = (_runs(f.removeprefix("docs/").removesuffix(".csv")) for f in files)
    if same_runs:
        assert sorted((r["config"], r["seed"]) for r in a) == sorted((r["config"], r["seed"]) for r in b)
    page = (REPO / "docs" / page_name).read_text(encoding="utf-8")
    assert f"python -m matting_lib.paired_report --compare {files[0]} {files[1]}" in page
    assert paired_report.compare_markdown(a, b, names=files) in page, \
        f"docs/{page_name}: regenerate the comparison of {files[0]} and {files[1]}"


def test_reproducibility_page_compares_table1_under_the_two_training_codes():
    """docs/reproducibility.md holds the output of `paired_report --compare` on Table 1 of the contiguous training
    code and Table 1 as committed (channels_last), which hold the same configurations and seeds."""
    _assert_comparison_in("reproducibility.md", ("docs/default_runs_contiguous.csv", "docs/default_runs.csv"),
                          same_runs=True)


def test_robustness_page_compares_table1_on_the_second_test_distribution():
    """docs/robustness.md holds `paired_report --compare` of Table 1 and the same networks scored on the
    comp1k-photos test split, which holds the teacher and every run of Table 1."""
    _assert_comparison_in("robustness.md", ("docs/default_runs.csv", "docs/default_photos_runs.csv"),
                          same_runs=True)
