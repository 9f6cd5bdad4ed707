"""Every notebook's ``parameters`` cell matches the dataclass that validates it: names, types and defaults, so the
two cannot drift apart (the notebook builds the dataclass with ``utils.params_from_globals``)."""

from __future__ import annotations

import ast
import dataclasses
import typing

import pytest

from conftest import REPO
from matting_lib.dataset_report import DataParams
from matting_lib.distill import DistillRunParams
from matting_lib.teacher import TeacherParams
from matting_lib.utils import params_from_globals

NOTEBOOK_PARAMS = {"01_compositing.ipynb": DataParams, "02_teacher.ipynb": TeacherParams,
                   "03_distill.ipynb": DistillRunParams}


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_PARAMS))
def test_parameters_cell_matches_its_dataclass(notebook):
    import papermill as pm

    cls = NOTEBOOK_PARAMS[notebook]
    declared = pm.inspect_notebook(str(REPO / "notebooks" / notebook))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(declared) == list(fields), f"{notebook}: parameter names/order differ from {cls.__name__}'s fields"
    hints = typing.get_type_hints(cls)
    for name, info in declared.items():
        assert info["inferred_type_name"] == hints[name].__name__, (notebook, name)
        assert ast.literal_eval(info["default"]) == fields[name].default, (notebook, name)
    # and the notebook's way of building it: every field from the notebook's globals
    values = {name: ast.literal_eval(info["default"]) for name, info in declared.items()}
    assert params_from_globals(cls, {**values, "other_global": 1}) == cls()


def test_params_from_globals_names_a_missing_or_mistyped_parameter():
    with pytest.raises(ValueError, match="defines no crop_size"):
        params_from_globals(TeacherParams, {f.name: f.default for f in dataclasses.fields(TeacherParams)
                                            if f.name != "crop_size"})
    values = {f.name: f.default for f in dataclasses.fields(TeacherParams)}
    with pytest.raises(ValueError, match="steps='10' has the wrong type"):
        params_from_globals(TeacherParams, {**values, "steps": "10"})
