"""Notebook 02's parameters (matting_lib.training.teacher.TeacherParams) and the manifest check; the three modes run in
tests/test_notebook_02.py."""

from __future__ import annotations

import pytest
from conftest import REPO

from matting_lib.training.teacher import TeacherParams, check_against_manifest

# The training config stored in an older teacher.pt (keys of notebook 02's parameters then, machine path left out):
# it still builds the parameters, and the record holds every field of today's with the shipped path resolved.
STORED = {"profile": "default", "data_dir": "data/synthetic-default", "mode": "train", "width": 0.25,
          "crop_size": 160, "batch_size": 16, "lr": 0.01, "lr_decay": "2000", "steps": 2400, "epoch_length": 0,
          "val_fraction": 0.1, "val_samples": 128, "val_every": 200, "seed": 0, "public_checkpoint": "",
          "shipped_checkpoint": "matting_lib/assets/teacher-default.pt"}


def test_record_holds_every_parameter_and_reads_older_configs():
    import dataclasses

    record = TeacherParams(**STORED).record()
    assert list(record) == [f.name for f in dataclasses.fields(TeacherParams)]
    assert record == {**TeacherParams().record(), **STORED,
                      "shipped_checkpoint": str(REPO / "matting_lib" / "assets" / "teacher-default.pt")}


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
