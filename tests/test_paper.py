"""The transcribed paper numbers match the project's shared copy of the paper's tables."""

from __future__ import annotations

import re

import pytest
from conftest import SHARED

from matting_lib.reporting import paper

RESULTS_MD = SHARED / "paper" / "results.md"


def _md_table(text: str, heading: str) -> dict[str, tuple[float, ...]]:
    block = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = tuple(float(c.strip("*")) for c in cells[1:])
    return rows


@pytest.mark.skipif(not RESULTS_MD.is_file(), reason="shared/paper/results.md is not beside this checkout")
@pytest.mark.parametrize("heading,table", [("## Table 1", paper.TABLE1), ("## Table 2", paper.TABLE2)])
def test_tables_match_shared_results(heading, table):
    md = _md_table(RESULTS_MD.read_text(), heading)
    by_display = {paper.DISPLAY_NAMES[k]: v for k, v in table.items()}
    # Table 2 names its no-KD row "DIM-student"; Table 1 "DIM-student (no KD)".
    md = {("DIM-student (no KD)" if k == "DIM-student" else k): v for k, v in md.items()}
    assert md == by_display


def test_table1_row_and_relative_change():
    row = paper.table1_row("spatial+channel")
    assert row["sad"] == 84.37
    assert paper.relative_change(row["sad"], paper.table1_row("student")["sad"]) == pytest.approx(-0.3071, abs=1e-4)
    with pytest.raises(KeyError, match="rows are"):
        paper.table1_row("spatial-channel")


def test_param_counts():
    assert paper.PARAMS["student+adapters"] - paper.PARAMS["student"] == 304_512
    ratio = 100 * paper.PARAMS["student+adapters"] / paper.PARAMS["teacher"]
    assert 20.2 <= ratio < 20.3  # the paper's "20.2 %"
