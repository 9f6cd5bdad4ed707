"""Every notebook's ``parameters`` cell matches the dataclass that validates it: names, types and defaults, so the
two cannot drift apart (the notebook builds the dataclass with ``utils.params_from_globals``)."""

from __future__ import annotations

import ast
import dataclasses
import typing

import pytest
from conftest import REPO

from matting_lib.data.dataset_report import DataParams
from matting_lib.params import help_of, params_from_globals
from matting_lib.training.student import DistillRunParams
from matting_lib.training.teacher import TeacherParams

NOTEBOOK_PARAMS = {"01_compositing.ipynb": DataParams, "02_teacher.ipynb": TeacherParams,
                   "03_distill.ipynb": DistillRunParams}


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_PARAMS))
def test_parameters_cell_matches_its_dataclass(notebook):
    import papermill as pm

    cls = NOTEBOOK_PARAMS[notebook]
    declared = pm.inspect_notebook(str(REPO / "notebooks" / notebook))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert sorted(declared) == sorted(fields), f"{notebook}: parameter names differ from {cls.__name__}'s fields"
    hints = typing.get_type_hints(cls)
    for name, info in declared.items():
        assert info["inferred_type_name"] == hints[name].__name__, (notebook, name)
        assert ast.literal_eval(info["default"]) == fields[name].default, (notebook, name)
        # the help text has one home, the dataclass field; the cell's comment repeats it
        assert info["help"] == help_of(cls, name) != "", (notebook, name, info["help"], help_of(cls, name))
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


def _normalised(p) -> dict:
    """Every field, paths as absolute paths (the pipeline passes absolute ones, the notebooks' defaults are relative
    to the repository), the cache folders left out (shared caches give bit-identical results: test_batch_cache)."""
    from matting_lib.paths import repo_path

    out = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if f.name.endswith("_cache_dir"):
            continue
        if f.name == "figures_dir" and hasattr(p, "figures_path"):  # notebook 01: empty means figures/<profile>
            v = str(p.figures_path)
        if f.name.endswith(("_dir", "_checkpoint")) and isinstance(v, str) and v:
            v = str(repo_path(v).resolve())
        out[f.name] = v
    return out


def test_notebooks_opened_by_hand_run_what_the_default_profile_runs():
    """The notebooks' defaults are the default profile's values: notebook 01/02 with no parameter do what the
    pipeline's data and teacher jobs do, and notebook 03 with only ``config``/``seed`` set trains and evaluates
    exactly what the pipeline's student job of that configuration and seed does."""
    from matting_lib.params import params_from_dict
    from matting_lib.paths import DEFAULT_RUNS
    from matting_lib.pipeline.plan import plan_jobs
    from matting_lib.pipeline.profiles import load_profile

    prof = load_profile("default")
    jobs = plan_jobs("default", prof, runs_root=DEFAULT_RUNS, threads=prof["distill"]["threads"])
    students = [j for j in jobs if j.stage == "distill"]
    assert len(students) == len(prof["distill"]["configs"]) * prof["distill"]["seeds"]
    by_stage = {"data": DataParams, "teacher": TeacherParams}
    for job in jobs:
        if job.stage in by_stage:
            cls = by_stage[job.stage]
            assert _normalised(params_from_dict(cls, job.params)) == _normalised(cls()), job.key
        elif job.stage == "distill":
            planned = params_from_dict(DistillRunParams, job.params)
            by_hand = DistillRunParams(config=job.params["config"], seed=job.params["seed"])
            assert _normalised(planned) == _normalised(by_hand), job.key
            assert planned.run_name == by_hand.run_name == job.key


def test_a_profile_given_alone_to_a_notebook_is_refused_naming_what_to_do():
    values = {f.name: f.default for f in dataclasses.fields(DistillRunParams)}
    with pytest.raises(ValueError, match=r"profile='smoke' was given, but .*runs_dir.*--profile smoke --only"):
        params_from_globals(DistillRunParams, {**values, "profile": "smoke"})
    own = {**values, "profile": "smoke", "runs_dir": "runs/smoke/students", "figures_dir": "figures/smoke",
           "teacher_checkpoint": "runs/smoke/teacher/teacher.pt", "width": 0.125}
    assert params_from_globals(DistillRunParams, own).width == 0.125  # the folders given too: the user means it
    with pytest.raises(ValueError, match="run_dir"):
        params_from_globals(TeacherParams, {**{f.name: f.default for f in dataclasses.fields(TeacherParams)},
                                            "profile": "smoke"})
