"""Notebook 03 executed headlessly with papermill on a tiny synthetic dataset and a tiny random teacher:
first the no-KD student, then a distilled student that finds the no-KD run for its comparisons."""

from __future__ import annotations

import json

import pytest
from conftest import REPO


@pytest.mark.slow
def test_notebook_03_student_then_distilled(tmp_path):
    import papermill as pm
    import torch

    from matting_lib.data.compositing import build_test_set
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.data.synthetic import generate_dataset
    from matting_lib.networks.checkpoints import save_checkpoint
    from matting_lib.networks.models import build_teacher

    data = generate_dataset(tmp_path / "data", seed=0, preset="smoke", progress=False)
    build_test_set(DatasetLayout.for_root(data), progress=False)
    torch.manual_seed(0)
    teacher = save_checkpoint(tmp_path / "teacher.pt", model=build_teacher(0.0625).eval(), config={}, epoch=0,
                              step=0, metrics={})
    runs, figs = tmp_path / "students", tmp_path / "figures"
    common = dict(profile="smoke", data_dir=str(data), width=0.0625, crop_size=64, batch_size=4, steps=3,
                  val_every=2, val_samples=4, max_test_images=2, n_qualitative=2, threads=1,
                  teacher_checkpoint=str(teacher), runs_dir=str(runs), figures_dir=str(figs))
    nb = REPO / "notebooks" / "03_distill.ipynb"
    for cfg in ("student", "spatial+channel"):
        pm.execute_notebook(str(nb), str(tmp_path / f"03-{cfg}.ipynb"), cwd=str(REPO), kernel_name="python3",
                            progress_bar=False, parameters={**common, "config": cfg})

    rec = json.loads((runs / "kd-spatial+channel-seed0" / "metrics.json").read_text())
    assert rec["config"] == "spatial+channel" and rec["kind"] == "student" and rec["seed"] == 0
    assert set(rec["metrics"]) == {"official", "spkd"} and rec["metrics"]["official"]["sad"] > 0
    assert rec["test_images"] == 2 and rec["adapter_params"] > 0 and rec["distill"]["types"] == ["spatial", "channel"]
    base = json.loads((runs / "kd-student-seed0" / "metrics.json").read_text())
    assert base["config"] == "student" and base["adapter_params"] == 0 and base["teacher_checkpoint"] is None
    for name in ("best.pt", "last.pt", "log.csv"):
        assert (runs / "kd-spatial+channel-seed0" / name).is_file(), name
    for fig in ("learning_curves", "terms", "qualitative"):
        assert (figs / f"03_kd-spatial+channel-seed0_{fig}.png").is_file(), fig
    # the distilled run found the no-KD run: both appear in its learning curves and its qualitative grid
    out = json.loads((tmp_path / "03-spatial+channel.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in out["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))
    assert "run kd-spatial+channel-seed0" in text and "official " in text and "spkd " in text
    assert "learning curves of: spatial+channel, student (no KD)" in text
    assert "predictions of: teacher, no KD, spatial+channel" in text

    # another teacher: the finished distilled run is not "resumed" but moved aside and trained afresh
    run = runs / "kd-spatial+channel-seed0"
    first = json.loads((run / "run.json").read_text())["identity"]
    torch.manual_seed(1)
    save_checkpoint(teacher, model=build_teacher(0.0625).eval(), config={}, epoch=0, step=0, metrics={})
    pm.execute_notebook(str(nb), str(tmp_path / "03-again.ipynb"), cwd=str(REPO), kernel_name="python3",
                        progress_bar=False, parameters={**common, "config": "spatial+channel"})
    stale = list(runs.glob("kd-spatial+channel-seed0.stale-*"))
    assert len(stale) == 1 and json.loads((stale[0] / "run.json").read_text())["identity"] == first
    assert json.loads((run / "run.json").read_text())["identity"]["teacher"] != first["teacher"]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3


@pytest.mark.slow
def test_notebook_03_rejects_a_mistyped_configuration(tmp_path):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    nb = REPO / "notebooks" / "03_distill.ipynb"
    with pytest.raises(PapermillExecutionError, match="valid names: student, hinton"):
        pm.execute_notebook(str(nb), str(tmp_path / "bad.ipynb"), cwd=str(REPO), kernel_name="python3",
                            progress_bar=False, parameters={"config": "spacial", "runs_dir": str(tmp_path)})
