"""The embedded synthetic benchmark: determinism, manifest, layout, hard structures, safety."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matting_lib.data import synthetic as S
from matting_lib.data.layout import DatasetLayout, LayoutError, read_alpha, read_trimap
from matting_lib.data.layout_check import check_layout
from matting_lib.data.synthetic import foregrounds as SF
from matting_lib.files import sha256_file


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return S.generate_dataset(tmp_path_factory.mktemp("syn") / "smoke", seed=0, preset="smoke", progress=False)


def test_same_seed_is_byte_identical_and_independent_of_workers(smoke, tmp_path):
    again = S.generate_dataset(tmp_path / "again", seed=0, preset="smoke", progress=False, workers=2)
    assert (again / "manifest.json").read_bytes() == (smoke / "manifest.json").read_bytes()
    assert _files(again) == _files(smoke)
    assert all((again / f).read_bytes() == (smoke / f).read_bytes() for f in _files(smoke))


def test_other_seed_gives_other_data(smoke, tmp_path):
    other = S.generate_dataset(tmp_path / "s1", seed=1, preset="smoke", progress=False)
    a = json.loads((smoke / "manifest.json").read_text())["files"]
    b = json.loads((other / "manifest.json").read_text())["files"]
    shared = set(a) & set(b)
    assert sum(a[f] == b[f] for f in shared if f.endswith((".png", ".jpg"))) == 0


def test_manifest_has_parameters_and_sha256_of_every_file(smoke):
    man = json.loads((smoke / "manifest.json").read_text())
    assert man["seed"] == 0 and man["preset"] == "smoke" and man["complete"]
    assert man["params"]["n_train_fg"] == S.PRESETS["smoke"].n_train_fg
    assert sorted(man["files"]) == _files(smoke)
    assert all(sha256_file(smoke / f) == d for f, d in man["files"].items())
    assert S.verify_dataset(smoke) == []
    from matting_lib import cpu_env  # the IPP level that made the files (it changes some bytes across CPUs)

    assert man["versions"]["opencv_ipp"] == cpu_env.opencv_ipp_level() and man["versions"]["opencv_ipp"]


def test_layout_is_adobe_and_test_is_disjoint_from_train(smoke):
    layout = DatasetLayout.for_root(smoke)
    report = check_layout(layout, progress=False)  # decodes every fg/alpha/trimap, checks 0/128/255
    assert report.ok, str(report)
    p = S.PRESETS["smoke"]
    assert report.counts["train foregrounds"] == p.n_train_fg and layout.bg_per_fg("train") == p.bg_per_train_fg
    assert report.counts["test foregrounds"] == p.n_test_fg and layout.bg_per_fg("test") == p.bg_per_test_fg
    assert not set(layout.bg_names("train")) & set(layout.bg_names("test"))
    assert not set(layout.fg_names("train")) & set(layout.fg_names("test"))
    assert not set(S.TRAIN_PHOTOS) & set(S.TEST_PHOTOS)
    fg = layout.fg_names("test")[0]
    trimaps = [read_trimap(layout.trimap_path(fg, i)) for i in range(p.bg_per_test_fg)]
    assert set(np.unique(trimaps[0])) == {0, 128, 255}
    alpha = read_alpha(layout.alpha_path("test", fg))
    assert (trimaps[0][(alpha > 0) & (alpha < 255)] == 128).all()  # all fractional alpha is unknown


def test_supersampled_coverage_is_physical():
    cv = SF._Canvas(12, 12, 4)
    cover = []
    for edge in (4.75, 5.0, 5.25):  # pixel 5 spans x in [4.5, 5.5]: a quarter, a half, three quarters covered
        c = cv.down(cv.fill(cv.new(), [np.array([[-1, -1], [edge, -1], [edge, 13], [-1, 13]])]))
        assert np.allclose(c[:, :5], 1, atol=0.02) and np.allclose(c[:, 6:], 0, atol=0.02)
        cover.append(float(c[:, 5].mean()))
    # coverage follows the covered area (OpenCV's anti-aliased fill adds a constant ~0.2 px, harmless)
    assert np.allclose(np.diff(cover), 0.25, atol=0.06) and 0.4 < cover[1] < 0.75, cover
    strand = cv.new()
    cv.lines(strand, [np.array([[-1.0, 6.0], [13.0, 6.0]])], thickness=1)
    column = cv.down(strand)[:, 6]
    assert column.max() < 0.7 and 0.15 < column.sum() < 0.6  # a sub-pixel-wide strand


@pytest.mark.parametrize("kind", list(SF.FOREGROUND_KINDS))
def test_every_structure_has_fractional_alpha(kind):
    fg, alpha, got = SF.make_foreground(np.random.default_rng(3), 96, 112, S.TRAIN_PHOTOS, supersample=3, kind=kind)
    assert got == kind and fg.shape == (96, 112, 3) and alpha.shape == (96, 112)
    frac = ((alpha > 0) & (alpha < 255)).mean()
    assert frac > 0.01, f"{kind}: only {frac:.3%} fractional pixels"
    assert (alpha == 0).any()  # never a full-frame opaque foreground


def test_existing_dataset_is_kept_resumed_or_refused(smoke, tmp_path):
    out = S.generate_dataset(tmp_path / "d", seed=0, preset="smoke", progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert S.generate_dataset(out, seed=0, preset="smoke", progress=False) == out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # complete and verified: untouched
    victim = sorted(out.rglob("*.png"))[0]
    victim.unlink()
    S.generate_dataset(out, seed=0, preset="smoke", progress=False)  # an interrupted/damaged one is completed
    assert S.verify_dataset(out) == [] and victim.is_file()
    with pytest.raises(LayoutError, match="seed: 0 -> 1"):
        S.generate_dataset(out, seed=1, preset="smoke", progress=False)
    S.generate_dataset(out, seed=1, preset="smoke", progress=False, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1 and S.verify_dataset(out) == []


def test_foreign_folder_is_never_touched(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "precious.jpg").write_bytes(b"x")
    with pytest.raises(LayoutError, match="real data"):
        S.generate_dataset(tmp_path / "real", preset="smoke", overwrite=True, progress=False)
    assert (tmp_path / "real" / "precious.jpg").read_bytes() == b"x"
    with pytest.raises(ValueError, match="smoke, default, comp1k, large"):
        S.generate_dataset(tmp_path / "x", preset="huge")
