"""Calibration study helpers: Composition-1k kind mix, reproducible CPU kernels, dataset identity, validation
composites and snapshot curves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from matting_lib import cpu_env
from matting_lib.data import synthetic as S
from matting_lib.data.layout import DatasetLayout, dataset_identity
from matting_lib.data.synthetic.foregrounds import FOREGROUND_KINDS
from matting_lib.studies import calibration

DATA = Path(__file__).parent / "data"


def test_kind_table_covers_the_official_test_list_in_order():
    official = [ln.strip() for ln in (DATA / "comp1k_test_fg_names.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    kinds = S.comp1k_test_kinds()
    assert list(kinds) == official and len(official) == 50
    counts = S.comp1k_kind_counts()
    assert sum(counts.values()) == 50 and set(counts) == set(FOREGROUND_KINDS)
    assert counts["hair"] + counts["fur"] > 25  # Composition-1k is mostly people and animals


def test_allocation_is_stratified_exact_and_seeded():
    counts = {"a": 16, "b": 18, "c": 8, "d": 4, "e": 1, "f": 1, "g": 2, "h": 0}
    got = S.allocate_kinds(counts, 200, np.random.default_rng(0))
    assert Counter(got) == {"a": 64, "b": 72, "c": 32, "d": 16, "e": 4, "f": 4, "g": 8}
    small = S.allocate_kinds(counts, 25, np.random.default_rng(0))
    assert len(small) == 25 and Counter(small)["a"] == 8 and Counter(small)["b"] == 9 and "h" not in small
    assert S.allocate_kinds(counts, 25, np.random.default_rng(0)) == small
    assert S.allocate_kinds(counts, 25, np.random.default_rng(1)) != small


def test_comp1k_preset_follows_the_mix_and_old_presets_keep_their_spec():
    train = Counter(S._kinds(0, "comp1k", "train"))
    share = {k: c / 50 for k, c in S.comp1k_kind_counts().items()}
    assert all(abs(train.get(k, 0) / 200 - share[k]) <= 1 / 200 for k in share)
    assert S._kinds(0, "default", "test") == (None,) * 25  # the weighted draw, as before mixes existed
    assert "mix" not in S._spec(0, "default")["params"] and S._spec(0, "comp1k")["params"]["mix"] == "comp1k"


def test_pin_sets_defaults_but_never_overrides_the_user():
    env = {"MKL_CBWR": "COMPATIBLE"}
    if not cpu_env.supported():
        assert cpu_env.pin(env) == {"MKL_CBWR": "COMPATIBLE"}
        return
    cpu_env.pin(env)
    assert env["MKL_CBWR"] == "COMPATIBLE" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert not cpu_env.is_pinned(env) and cpu_env.is_pinned(cpu_env.PINNED_ENV)


@pytest.mark.skipif(not cpu_env.supported(), reason="needs an x86-64 CPU with AVX2")
def test_pinned_process_runs_avx2_kernels():
    env = {k: v for k, v in os.environ.items() if k not in cpu_env.PINNED_ENV}
    cpu_env.pin(env)
    code = "import torch, numpy; from matting_lib import cpu_env; print(cpu_env.describe())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "pinned to AVX2" in out and "torch AVX2" in out and "numpy X86_V4" not in out
    assert "opencv IPP " in out  # reported, since the pin does not reach it (see cpu_env)


def _fake_dataset(root: Path, files: dict[str, str], versions: dict) -> DatasetLayout:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"versions": versions, "files": files}))
    return DatasetLayout.for_root(root)


def test_dataset_identity_is_the_files_not_the_environment(tmp_path):
    a = dataset_identity(_fake_dataset(tmp_path / "a", {"x.png": "11", "y.png": "22"}, {"numpy": "1"}))
    b = dataset_identity(_fake_dataset(tmp_path / "b", {"y.png": "22", "x.png": "11"}, {"numpy": "2"}))
    c = dataset_identity(_fake_dataset(tmp_path / "c", {"x.png": "11", "y.png": "23"}, {"numpy": "1"}))
    assert a == b and a["kind"] == "files" and a["sha256"] != c["sha256"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return S.generate_dataset(tmp_path_factory.mktemp("cal") / "smoke", seed=0, preset="smoke", progress=False)


def test_validation_composites_are_held_out_deterministic_and_test_like(smoke):
    from matting_lib.data.datasets import split_train_val

    comps = calibration.validation_composites(smoke, bg_per_fg=2, val_fraction=0.34)
    layout = DatasetLayout.for_root(smoke)
    _, val_fg = split_train_val(layout.fg_names("train"), 0.34, 0)
    assert len(comps) == 2 * len(val_fg) and {c.name.split("!")[1] for c in comps} == {Path(n).stem for n in val_fg}
    again = calibration.validation_composites(smoke, bg_per_fg=2, val_fraction=0.34)
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.trimap, y.trimap) for x, y in zip(comps, again))
    for c in comps:
        assert c.image.shape == c.alpha.shape + (3,) and set(np.unique(c.trimap)) <= {0, 128, 255}
        assert (c.trimap == 128).any() and c.kind in FOREGROUND_KINDS
    with pytest.raises(ValueError, match="bg_per_fg"):
        calibration.validation_composites(smoke, bg_per_fg=99)


def test_snapshot_curve_is_scored_once_and_cached(smoke, tmp_path, monkeypatch):
    settings = calibration.RunSettings(kind="student", width=0.125, crop_size=48, batch_size=2, steps=4,
                                       snapshot_every=2, val_every=2, val_samples=2, num_workers=0)
    calibration.train_run(smoke, tmp_path / "run", settings, progress=False)
    comps = calibration.validation_composites(smoke, bg_per_fg=1, val_fraction=0.34)
    rows = calibration.evaluate_snapshots(tmp_path / "run", comps, progress=False)
    assert sorted({r["step"] for r in rows}) == [2, 4] and all(r["sad"] >= 0 for r in rows)
    calls = []
    monkeypatch.setattr(calibration, "score_model", lambda *a, **k: calls.append(1))
    assert calibration.evaluate_snapshots(tmp_path / "run", comps, progress=False) == rows and not calls
    # Another run's settings in the same folder: the old run is moved aside whole, never silently continued.
    calibration.train_run(smoke, tmp_path / "run", calibration.RunSettings(**{**settings.__dict__, "lr": 0.1}),
                          progress=False)
    aside = list(tmp_path.glob("run.stale-*"))
    assert len(aside) == 1 and (aside[0] / "snapshots").is_dir()
    assert calibration.read_settings(tmp_path / "run").lr == 0.1 and calibration.read_settings(aside[0]).lr == 0.01


def test_gap_table_pairs_every_teacher_and_student_step():
    t = [{"step": 10, "group": "all", "sad": 6.0}, {"step": 20, "group": "all", "sad": 5.0}]
    s = [{"step": 5, "group": "all", "sad": 10.0}, {"step": 5, "group": "hair", "sad": 1.0}]
    rows = calibration.gap_table(t, s)
    assert [(r["teacher_step"], r["student_step"]) for r in rows] == [(10, 5), (20, 5)]
    assert [r["gap"] for r in rows] == pytest.approx([0.4, 0.5])


def test_fg_kind_from_names():
    from matting_lib.data.synthetic import fg_kind

    assert fg_kind("train-0012-hair.png") == "hair" and fg_kind("dog-1.png") == "other"


def test_compare_training_data_says_when_the_data_differs(tmp_path):
    from matting_lib.data.layout import compare_training_data

    layout = _fake_dataset(tmp_path / "d", {"x.png": "11"}, {"numpy": "1"})
    same, msg = compare_training_data({"dataset": dataset_identity(layout)}, layout)
    assert same is True
    other = _fake_dataset(tmp_path / "e", {"x.png": "12"}, {"numpy": "1"})
    same, msg = compare_training_data({"dataset": dataset_identity(layout)}, other)
    assert same is False and "DIFFERS" in msg and str(other.root) in msg and "IPP" in msg
    import hashlib
    legacy = {"dataset_manifest_sha256": hashlib.sha256((tmp_path / "d" / "manifest.json").read_bytes()).hexdigest()}
    assert compare_training_data(legacy, layout)[0] is True and compare_training_data(legacy, other)[0] is False
    assert compare_training_data({}, layout)[0] is None


def test_study_plan_names_and_stints(smoke, tmp_path):
    plan = calibration.study_plan(teacher_widths=[0.125], teacher_crop=48, teacher_steps=4, snapshot_every=2,
                                  student_widths=[0.125], student_crops=[48], student_steps=2,
                                  student_snapshot_every=1, student_seeds=2)
    assert list(plan) == ["student-w0.125-c48-seed0", "student-w0.125-c48-seed1", "teacher-w0.125-c48"]
    teacher = dataclasses_replace(plan["teacher-w0.125-c48"], batch_size=2, val_samples=2)
    first = calibration.train_stint(smoke, tmp_path / "t", teacher, stint_steps=3, progress=False)
    assert first.step == 3 and first.interrupted
    second = calibration.train_stint(smoke, tmp_path / "t", teacher, stint_steps=3, progress=False)
    assert second.step == 4 and not second.interrupted
    md = calibration.table_markdown([{"teacher": "t", "teacher_step": 4, "teacher_tmacs": 1.0, "teacher_sad": 5.0,
                                      "student": "s", "student_step": 2, "student_seeds": 2, "student_sad": 10.0,
                                      "student_sad_std": 0.5, "gap": 0.5}])
    assert "| t | 4 | 1.0 | 5.00 | s | 2 | 2 | 10.00 ± 0.50 | +50.0% |" in md


def test_study_curves_scores_the_started_runs_and_refuses_an_empty_study(smoke, tmp_path):
    plan = calibration.study_plan(teacher_widths=[0.125], teacher_crop=48, teacher_steps=2, snapshot_every=1,
                                  student_widths=[0.125], student_crops=[48], student_steps=2,
                                  student_snapshot_every=1, student_seeds=1)
    plan = {name: dataclasses_replace(s, batch_size=2, val_samples=2) for name, s in plan.items()}
    comps = calibration.validation_composites(smoke, bg_per_fg=1)[:2]
    with pytest.raises(FileNotFoundError, match="no run of this calibration study has started.*train=True"):
        calibration.study_curves(tmp_path, plan, comps, progress=False)
    calibration.train_stint(smoke, tmp_path / "student-w0.125-c48-seed0", plan["student-w0.125-c48-seed0"],
                            progress=False)
    curves = calibration.study_curves(tmp_path, plan, comps, progress=False)
    assert list(curves) == ["student-w0.125-c48-seed0"]  # the teacher never started: left out, not an error
    settings, rows = curves["student-w0.125-c48-seed0"]
    assert settings.kind == "student" and sorted({r["step"] for r in rows}) == [1, 2]


def dataclasses_replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)


@pytest.mark.slow
def test_calibration_notebook_runs_on_tiny_settings(smoke, tmp_path):
    import papermill as pm

    out = tmp_path / "00.ipynb"
    pm.execute_notebook(str(Path(__file__).parents[1] / "notebooks" / "00_calibration.ipynb"), str(out),
                        parameters=dict(data_dir=str(smoke), runs_dir=str(tmp_path / "runs"),
                                        figures_dir=str(tmp_path / "figs"), teacher_widths=[0.125], teacher_crop=48,
                                        teacher_steps=2, snapshot_every=1, student_widths=[0.125],
                                        student_crops=[48], student_steps=2, student_snapshot_every=1,
                                        student_seeds=1, bg_per_fg=1, batch_size=2, threads=1,
                                        table_student_steps=[1]),
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    table = (tmp_path / "figs" / "calibration.md").read_text()
    assert "teacher w0.125 c48" in table and "student w0.125 c48" in table
    assert (tmp_path / "figs" / "00_calibration.png").is_file()
    rows = (tmp_path / "figs" / "calibration_curves.csv").read_text().splitlines()
    assert rows[0].startswith("setting,kind,width") and len(rows) == 1 + 4  # 2 snapshots each of 2 runs
    assert "| student w0.125 c48 | 1 |" in table and "| student w0.125 c48 | 2 |" not in table  # at the asked step


def test_table_markdown_at_chosen_student_steps():
    row = {"teacher": "t", "teacher_step": 4, "teacher_tmacs": 1.0, "teacher_sad": 3.0, "student": "s",
           "student_seeds": 2, "student_sad_std": 0.5}
    table = [{**row, "student_step": 500, "student_sad": 6.0, "gap": 0.5},
             {**row, "student_step": 2000, "student_sad": 5.0, "gap": 0.4}]
    assert "| s | 500 |" not in calibration.table_markdown(table)  # default: the student's last step only
    md = calibration.table_markdown(table, student_steps=[500])
    assert "| t | 4 | 1.0 | 3.00 | s | 500 | 2 | 6.00 ± 0.50 | +50.0% |" in md and "| s | 2000 |" not in md
    with pytest.raises(ValueError, match=r"no student curve point at steps \[250\]"):
        calibration.table_markdown(table, student_steps=[250])


def test_ship_teacher_writes_weights_and_the_evidence_and_refuses_what_it_should(smoke, tmp_path):
    import torch

    from matting_lib.data.compositing import build_test_set
    from matting_lib.inference.evaluation import evaluate_model
    from matting_lib.networks.checkpoints import check_manifest, load_checkpoint, load_model

    layout = DatasetLayout.for_root(smoke)
    items = build_test_set(layout)
    settings = calibration.RunSettings(kind="teacher", width=0.125, crop_size=48, batch_size=2, steps=2,
                                       snapshot_every=1, val_every=2, val_samples=2, num_workers=0,
                                       val_fraction=0.34)
    run, out = tmp_path / "teacher-run", tmp_path / "assets" / "teacher-x.pt"
    calibration.train_run(smoke, run, settings, progress=False)
    with pytest.raises(ValueError, match="no validation scores yet; score it first"):
        calibration.ship_teacher(smoke, run, 2, out, bg_per_fg=1, progress=False)
    assert not out.parent.exists()  # nothing written before the checks pass
    comps = calibration.validation_composites(smoke, val_fraction=0.34, bg_per_fg=1)
    rows = calibration.evaluate_snapshots(run, comps, progress=False)
    with pytest.raises(ValueError, match=r"no snapshot at step 7; it has \[1, 2\]"):
        calibration.ship_teacher(smoke, run, 7, out, bg_per_fg=1, progress=False)

    calibration.ship_teacher(smoke, run, 2, out, profile="x", bg_per_fg=1, progress=False)
    man = check_manifest(out)
    val2 = next(r for r in rows if r["step"] == 2 and r["group"] == "all")
    assert man["steps"] == 2 and man["profile"] == "x" and man["kind"] == "teacher"
    assert man["validation"]["scores"]["all"]["sad"] == pytest.approx(val2["sad"])
    assert set(man["validation"]["curve_sad"]) == {"1", "2"}
    assert man["dataset"] == dataset_identity(layout) and man["test_images"] == len(items)
    assert man["shipped_from"] == "teacher-run/snapshots/step-0000002.pt"
    assert str(tmp_path) not in out.with_suffix(".json").read_text()  # no machine paths in the manifest
    ckpt, snap = load_checkpoint(out), load_checkpoint(run / "snapshots" / "step-0000002.pt")
    assert ckpt["optimizer"] is None and ckpt["step"] == 2
    assert all(torch.equal(ckpt["model"][k], v) for k, v in snap["model"].items())
    again = evaluate_model(load_model(out), items, tmp_path / "pred", conventions=("official",), progress=False)
    assert man["metrics"]["official"]["sad"] == pytest.approx(again["official"]["mean"]["sad"], rel=1e-9)
    with pytest.raises(FileExistsError, match="--force"):
        calibration.ship_teacher(smoke, run, 1, out, bg_per_fg=1, progress=False)
    assert check_manifest(out)["steps"] == 2  # the shipped teacher is untouched
    other = tmp_path / "other-data-run"  # the same run, recorded as trained on other data
    shutil.copytree(run, other)
    record = json.loads((other / "run.json").read_text())
    record["identity"]["dataset"] = "files:" + "0" * 64
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="DIFFERS from the data"):
        calibration.ship_teacher(smoke, other, 2, tmp_path / "o.pt", bg_per_fg=1, progress=False)
    assert not (tmp_path / "o.pt").exists()
    student = calibration.RunSettings(**{**settings.__dict__, "kind": "student"})
    calibration.train_run(smoke, tmp_path / "student-run", student, progress=False)
    with pytest.raises(ValueError, match="student run"):
        calibration.ship_teacher(smoke, tmp_path / "student-run", 2, tmp_path / "s.pt", progress=False)


def test_a_fresh_calibration_run_does_not_depend_on_what_the_process_drew_before(smoke, tmp_path):
    import torch

    from matting_lib.networks.checkpoints import load_checkpoint

    settings = calibration.RunSettings(kind="student", width=0.125, crop_size=48, batch_size=2, steps=1,
                                       snapshot_every=1, val_every=1, val_samples=2, num_workers=0)
    calibration.train_run(smoke, tmp_path / "a", settings, progress=False)
    torch.rand(1000)  # whatever a notebook or another run drew before (the global generator moves)
    calibration.train_run(smoke, tmp_path / "b", settings, progress=False)
    a, b = (load_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recorded_teacher_curve_stands_in_for_an_absent_teacher_run(smoke, tmp_path):
    """A study whose teacher run folder is gone takes the curve the shipped manifest records — only when that
    manifest has the plan's settings and was scored on the same composites of the same data."""
    settings = calibration.RunSettings(kind="teacher", width=0.125, crop_size=48, batch_size=2, steps=2,
                                       snapshot_every=1, val_every=2, val_samples=2, num_workers=0,
                                       val_fraction=0.34)
    from matting_lib.data.compositing import build_test_set

    build_test_set(DatasetLayout.for_root(smoke))
    run, out = tmp_path / "runs" / "teacher-w0.125-c48", tmp_path / "assets" / "teacher-x.pt"
    calibration.train_run(smoke, run, settings, progress=False)
    comps = calibration.validation_composites(smoke, val_fraction=0.34, bg_per_fg=1)
    scored = calibration.evaluate_snapshots(run, comps, progress=False)
    calibration.ship_teacher(smoke, run, 2, out, bg_per_fg=1, progress=False)
    manifest = out.with_suffix(".json")
    rec_settings, rows, info = calibration.recorded_curve(manifest)
    assert rec_settings == calibration.read_settings(run)  # what the run recorded (num_workers is not identity)
    assert info["composites"] == len(comps) and info["bg_per_fg"] == 1
    assert [(r["step"], r["sad"]) for r in rows] == [(r["step"], r["sad"]) for r in scored if r["group"] == "all"]

    shutil.rmtree(run)  # the run folder is lost; the plan still names it (threads and steps may differ)
    plan = {"teacher-w0.125-c48": calibration.RunSettings(**{**settings.__dict__, "steps": 30, "threads": 2})}
    curves = calibration.study_curves(tmp_path / "runs", plan, comps, progress=False, recorded=[manifest],
                                      bg_per_fg=1, data_dir=smoke)
    assert [(r["step"], r["sad"]) for r in curves["teacher-w0.125-c48"][1]] == [(r["step"], r["sad"]) for r in rows]
    frame = calibration.curve_frame(curves)
    assert [r["sad"] for r in frame] == [r["sad"] for r in rows]
    # the check notebook 00 makes before the students train (no scoring): same data stands in, other data is refused
    assert list(calibration.recorded_stand_ins(tmp_path / "runs", plan, [manifest], data_dir=smoke)) == list(plan)
    other_data = _fake_dataset(tmp_path / "other-data", {"x.png": "11"}, {})
    with pytest.raises(ValueError, match=r"other data than .*AVX-512.*train_teachers=True"):
        calibration.recorded_stand_ins(tmp_path / "runs", plan, [manifest], data_dir=other_data.root)
    with pytest.raises(ValueError, match="scored on .* composites"):
        calibration.study_curves(tmp_path / "runs", plan, comps[:1], progress=False, recorded=[manifest],
                                 bg_per_fg=1, data_dir=smoke)
    other = {"teacher-w0.125-c48": calibration.RunSettings(**{**settings.__dict__, "lr": 0.001})}
    with pytest.raises(FileNotFoundError, match="no run of this calibration study"):  # other settings: not used
        calibration.study_curves(tmp_path / "runs", other, comps, progress=False, recorded=[manifest])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mode": "load"}))
    with pytest.raises(ValueError, match="records no calibration curve"):
        calibration.recorded_curve(bad)
