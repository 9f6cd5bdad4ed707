"""Notebook 02 executed headlessly with papermill on a tiny synthetic dataset: train mode, then load mode."""

from __future__ import annotations

import json

import pytest
from conftest import REPO


def test_notebook_02_declares_every_parameter():
    import papermill as pm

    declared = pm.inspect_notebook(str(REPO / "notebooks" / "02_teacher.ipynb"))
    # what the pipeline passes (plan_jobs) plus the profile's teacher keys
    assert {"profile", "figures_dir", "data_dir", "run_dir", "threads", "mode", "public_checkpoint", "width",
            "steps", "seed", "shipped_checkpoint", "crop_size", "batch_size"} <= set(declared)
    assert all(p["help"] for p in declared.values()), "every parameter needs a trailing comment"


@pytest.mark.slow
def test_notebook_02_train_then_load(tmp_path):
    import papermill as pm

    from matting_lib.data.compositing import build_test_set
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", seed=0, preset="smoke", progress=False)
    build_test_set(DatasetLayout.for_root(data), progress=False)
    common = dict(profile="smoke", data_dir=str(data), width=0.0625, crop_size=64, batch_size=4, steps=3,
                  val_every=2, val_samples=4, max_test_images=2, threads=1, figures_dir=str(tmp_path / "figures"))
    nb = REPO / "notebooks" / "02_teacher.ipynb"
    pm.execute_notebook(str(nb), str(tmp_path / "02-train.ipynb"), cwd=str(REPO), kernel_name="python3",
                        progress_bar=False, parameters={**common, "mode": "train", "run_dir": str(tmp_path / "t")})
    rec = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert rec["config"] == "teacher" and rec["test_images"] == 2 and rec["width"] == 0.0625
    assert set(rec["metrics"]) == {"official", "spkd"} and rec["metrics"]["official"]["sad"] > 0
    assert (tmp_path / "t" / "teacher.pt").is_file() and (tmp_path / "t" / "teacher.json").is_file()
    assert (tmp_path / "t" / "train" / "log.csv").is_file()
    ident = json.loads((tmp_path / "t" / "train" / "run.json").read_text())["identity"]
    assert ident["kind"] == "teacher" and ident["target"]["steps"] == 3 and ident["dataset"]
    for fig in ("02_teacher_sad_hist", "02_teacher_qualitative", "02_teacher_learning_curves"):
        assert (tmp_path / "figures" / f"{fig}.png").is_file(), fig

    # Load mode: the trained teacher as the "shipped" one; hash and metrics are checked against its manifest.
    pm.execute_notebook(str(nb), str(tmp_path / "02-load.ipynb"), cwd=str(REPO), kernel_name="python3",
                        progress_bar=False, parameters={**common, "mode": "load", "run_dir": str(tmp_path / "l"),
                                                        "shipped_checkpoint": str(tmp_path / "t" / "teacher.pt")})
    rec2 = json.loads((tmp_path / "l" / "metrics.json").read_text())
    assert rec2["metrics"] == rec["metrics"] and rec2["mode"] == "load"
    out = json.loads((tmp_path / "02-load.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in out["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "SHA-256 matches" in text and "metrics vs manifest" in text
    assert "training data: same data as the teacher was trained on (files identity" in text
    manifest = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert manifest["dataset"]["kind"] == "files" and manifest["dataset_manifest_sha256"]
