"""Scoring a profile's finished runs on another test set (``python -m matting_lib.evaluation --runs``) and the
second test distribution it is for (the ``comp1k-photos`` preset: real colour photographs as backgrounds)."""

import json

import numpy as np
import pytest

from matting_lib.data.synthetic import PHOTO_TEST_PHOTOS, PRESETS, TEST_PHOTOS, TRAIN_PHOTOS, Preset, _spec, textures


def test_photo_backgrounds_are_photographs_only_and_never_a_training_photo(monkeypatch):
    assert not set(PHOTO_TEST_PHOTOS) & set(TRAIN_PHOTOS)
    assert PRESETS["comp1k-photos"].photo_backgrounds and not PRESETS["comp1k"].photo_backgrounds

    def no_texture(*args, **kwargs):
        raise AssertionError("a procedural texture in a photographs-only background")

    monkeypatch.setattr(textures, "_texture", no_texture)
    for i in range(20):
        bg = textures.make_background(np.random.default_rng(i), 40, 56, PHOTO_TEST_PHOTOS, photos_only=True)
        assert bg.shape == (40, 56, 3) and bg.dtype == np.uint8
    with pytest.raises(AssertionError, match="procedural texture"):  # the mixed recipe draws textures
        for i in range(20):
            textures.make_background(np.random.default_rng(i), 40, 56, TEST_PHOTOS)


def test_presets_without_photo_backgrounds_keep_their_spec():
    """The field is left out of a preset's manifest spec when off, so the datasets generated before it verify as
    they are; the photographs preset records it and its own test photographs."""
    assert "photo_backgrounds" not in _spec(0, "comp1k")["params"]
    assert _spec(0, "comp1k")["sources"]["test"] == [f"{a}:{b}" for a, b in TEST_PHOTOS]
    photos = _spec(1, "comp1k-photos")
    assert photos["params"]["photo_backgrounds"] is True
    assert photos["sources"]["test"] == [f"{a}:{b}" for a, b in PHOTO_TEST_PHOTOS]


def test_a_photographs_only_test_split_is_generated(tmp_path, monkeypatch):
    from matting_lib.data import synthetic as S
    from matting_lib.data.layout import DatasetLayout

    monkeypatch.setitem(S.PRESETS, "tiny-photos", Preset(2, 1, 2, 2, (64, 72), (64, 72), supersample=2,
                                                         trimap_width=(3.0, 5.0), photo_backgrounds=True))
    out = S.generate_dataset(tmp_path / "photos", seed=1, preset="tiny-photos", progress=False, splits=("test",))
    layout = DatasetLayout.for_root(out)
    assert len(layout.fg_names("test")) == 2 and len(layout.bg_names("test")) == 4
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["splits"] == ["test"] and man["params"]["photo_backgrounds"] is True


@pytest.mark.slow
def test_rescoring_a_runs_folder_on_its_own_test_set_gives_its_metrics_and_resumes(smoke_run, tmp_path, monkeypatch,
                                                                                   capsys):
    """Every finished run of the smoke profile scored again on the smoke test set reproduces the metrics.json it
    was scored with when it ran, in both conventions; a second call reads the kept parts (nothing is scored), a part
    whose checkpoint changed is scored again, and an existing CSV is replaced only with --force."""
    from matting_lib.paths import REPO
    from matting_lib.reporting import rescore, results

    runs = smoke_run[0] / "smoke"
    data = REPO / "data" / "synthetic-smoke"
    out = tmp_path / "smoke_runs.csv"
    args = ["--runs", str(runs), "--data", str(data), "--out", str(out), "--work", str(tmp_path / "work"),
            "--no-progress"]
    assert rescore.main(args) == 0
    recs = results.records_from_runs_csv(out.read_text())
    found = rescore.finished_runs(runs)
    assert len(found) == 11 and found[0][:2] == ("teacher", None)  # the teacher and the 10 students
    assert sorted(r["config"] for r in recs) == sorted(c for c, _, _ in found)
    for rec in recs:
        folder = runs / "teacher" if rec["config"] == "teacher" else runs / "students" / f"kd-{rec['config']}-seed0"
        ran = json.loads((folder / "metrics.json").read_text())
        for conv in ("official", "spkd"):
            for m in ("sad", "mse", "grad", "conn"):
                assert rec["metrics"][conv][m] == pytest.approx(ran["metrics"][conv][m], rel=1e-12), (rec, conv, m)
    assert rescore.main(args) == 1 and "--force" in capsys.readouterr().err  # the CSV is not replaced silently
    before = out.read_text()

    def scored(*a, **k):
        raise AssertionError("a kept part was scored again")

    monkeypatch.setattr(rescore, "score_test_set", scored)
    assert rescore.main([*args, "--force"]) == 0 and out.read_text() == before
    part = rescore.part_path(tmp_path / "work", out, "spatial", 0)
    assert part == tmp_path / "work" / "smoke_runs.parts" / "spatial-seed0.json"
    kept = json.loads(part.read_text())
    part.write_text(json.dumps({**kept, "checkpoint_sha256": "0" * 64}))  # as if best.pt had changed
    with pytest.raises(AssertionError, match="scored again"):
        rescore.rescore_runs(runs, data, out, work=tmp_path / "work", force=True, progress=False)


def test_generate_is_checked_before_anything_is_written(tmp_path, capsys):
    from matting_lib.reporting import rescore

    base = ["--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "r.csv"),
            "--no-progress"]
    assert rescore.main([*base, "--generate", "photos:1"]) == 1
    assert "--generate 'photos:1': expected PRESET:SEED with a preset of smoke, default" in capsys.readouterr().err
    assert not (tmp_path / "photos").exists()
    assert rescore.main([*base, "--generate", "comp1k-photos:x"]) == 1
    assert rescore.main(base) == 1  # no such runs folder: named, nothing written
    err = capsys.readouterr().err
    assert "teacher.pt is missing" in err and "runs/default" in err
    assert not (tmp_path / "r.csv").exists()
