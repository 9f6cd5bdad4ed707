"""Notebook 01 runs headless through papermill on the smoke preset and writes what later notebooks read."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "01_compositing.ipynb"


def test_parameters_are_declared_for_papermill():
    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOK))
    assert {"profile", "source", "adobe_root", "preset", "seed", "data_dir", "figures_dir"} <= set(declared)
    assert declared["seed"]["inferred_type_name"] == "int" and declared["seed"]["help"]


@pytest.mark.slow
def test_notebook_01_on_the_smoke_preset(tmp_path):
    import papermill as pm

    data, figures = tmp_path / "data", tmp_path / "figures"
    out = tmp_path / "01_executed.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), cwd=str(REPO), kernel_name="python3", progress_bar=False,
                        parameters={"profile": "smoke", "preset": "smoke", "seed": 0, "data_dir": str(data),
                                    "figures_dir": str(figures), "n_gallery": 3})
    assert (figures / "01_gallery.png").stat().st_size > 10_000
    assert (figures / "01_statistics.png").is_file()
    merged = sorted((data / "Composition-1k" / "merged").glob("*.png"))
    assert len(merged) == 3 * 2 and json.loads((data / "manifest.json").read_text())["preset"] == "smoke"
    text = out.read_text()
    assert "Composition-1k (paper)" in text and "test composites in" in text
