"""Notebook 02's parameters (matting_lib.teacher.TeacherParams) and the manifest check; the three modes run in
tests/test_notebook_02.py."""

from __future__ import annotations

import pytest

from conftest import REPO
from matting_lib.checkpoints import load_checkpoint
from matting_lib.teacher import TeacherParams, check_against_manifest


def test_record_keeps_the_keys_stored_in_teachers_written_before():
    # the shipped teacher's config is notebook 02's record at the time it was trained: same keys, same order, so
    # its run identity (run.json) and manifest stay those of a teacher retrained with the same profile
    shipped = load_checkpoint(REPO / "matting_lib" / "assets" / "teacher-default.pt")["config"]
    p = TeacherParams(**{k: v for k, v in shipped.items() if k != "shipped_checkpoint"})
    record = p.record()
    assert list(record) == list(shipped)
    assert {k: v for k, v in record.items() if k != "shipped_checkpoint"} == \
        {k: v for k, v in shipped.items() if k != "shipped_checkpoint"}
    assert record["shipped_checkpoint"] == str(REPO / "matting_lib" / "assets" / "teacher-default.pt")


@pytest.mark.parametrize("bad, match", [({"mode": "trian"}, "mode='trian'; valid modes: train, load, import"),
                                        ({"mode": "import"}, "needs public_checkpoint"),
                                        ({"steps": 0}, "steps must be >= 1"),
                                        ({"lr_decay": "x"}, "lr_decay='x'"),
                                        ({"val_fraction": 1.0}, "val_fraction in \\(0, 1\\)")])
def test_bad_parameters_are_refused_naming_them(bad, match):
    with pytest.raises(ValueError, match=match):
        TeacherParams(**bad)


def test_metrics_are_checked_against_the_manifest():
    manifest = {"file": "t.pt", "test_images": 2, "metrics": {"official": {"sad": 2.0, "mse": 0.5, "grad": 1.0,
                                                                          "conn": 4.0}}}
    same = {"sad": 2.0, "mse": 0.5, "grad": 1.0, "conn": 4.0}
    assert check_against_manifest(None, same, 2) is None
    assert check_against_manifest(manifest, same, 3) is None  # measured on another number of test images
    assert check_against_manifest(manifest, {**same, "sad": 2.0001}, 2)["sad"] == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="differ from the manifest's t.pt"):
        check_against_manifest(manifest, {**same, "conn": 4.1}, 2)
