"""Notebooks 04 and 05 read like a lab report: one parameters cell, code cells of at most ~10
lines that call the library, a markdown cell before every step, no committed outputs, no parameter that does
nothing."""

from __future__ import annotations

import nbformat
import pytest
from conftest import REPO

NOTEBOOKS = ["04_results.ipynb", "05_similarity_explorer.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_cells_are_short_steps_each_explained(name):
    nb = nbformat.read(REPO / "notebooks" / name, 4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{name} cell {i} has outputs"
        lines = [ln for ln in cell.source.splitlines() if ln.strip()]
        if cell is not params[0]:
            assert len(lines) <= 10, f"{name} cell {i} has {len(lines)} lines: move the logic into matting_lib"
        if i > nb.cells.index(params[0]):  # every step after the parameters says what it does first
            assert nb.cells[i - 1].cell_type == "markdown", f"{name} cell {i} has no markdown before it"
    steps = [c.source for c in nb.cells[nb.cells.index(params[0]) + 1:] if c.cell_type == "markdown"]
    assert all("Look for" in s for s in steps if s.startswith("## ")), f"{name}: a step says not what to look for"


def test_explorer_declares_only_parameters_it_uses():
    nb = nbformat.read(REPO / "notebooks" / "05_similarity_explorer.ipynb", 4)
    declared = [ln.split(":")[0] for c in nb.cells if "parameters" in c.metadata.get("tags", [])
                for ln in c.source.splitlines() if ":" in ln]
    body = "\n".join(
        c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    )
    assert "figures_dir" not in declared
    assert all(name in body for name in declared), [n for n in declared if n not in body]
