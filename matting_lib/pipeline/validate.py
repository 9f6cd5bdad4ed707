"""Validating a profile (after ``--set``) before anything runs: every key, its type and the configuration names.

Two levels, both raising :class:`~matting_lib.pipeline.common.ProfileError` (exit code 2) that lists every problem with
the key, the value and the valid choices:

* ``full=False`` — standard library only (``run_all.sh --check-args``, before the environment is set up, in well
  under a second): the pipeline's own keys (``distill.configs`` a list of names, ``seeds``/``jobs`` positive
  integers, the time limits positive numbers), keys the pipeline derives itself (``distill.seed``,
  ``teacher.run_dir``, ...), and every other key against the parameters the stage's notebook declares, with their
  types (:func:`declared_parameters`, papermill's reading of the ``parameters`` cell).
* ``full=True`` — additionally the configuration names against :data:`matting_lib.distillation.distill.CONFIGS`
  (which needs torch).

:func:`check_jobs` then refuses any planned job parameter its notebook does not declare (papermill itself only
warns "Passed unknown parameter"), builds each planned job's parameter dataclass (notebook 01 ``DataParams``,
02 ``TeacherParams``, 03 ``DistillRunParams``: values out of range, unknown modes, spatial modes, layers or decay
steps), and refuses students whose width differs from their teacher's — all before the first notebook runs.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matting_lib.paths import REPO
from matting_lib.pipeline.common import NOTEBOOKS, PIPELINE_KEYS, STAGES, TIMEOUT_KEYS, Job, ProfileError

#: Parameters the pipeline sets itself, per stage (a profile or --set value would be overwritten silently).
DERIVED = {
    "data": {"profile", "figures_dir"},
    "teacher": {"profile", "figures_dir", "data_dir", "run_dir"},
    "distill": {"profile", "figures_dir", "data_dir", "config", "seed", "teacher_checkpoint", "runs_dir"},
    "calibrate": {"profile", "figures_dir", "data_dir", "runs_dir"},
    "results": {"profile", "figures_dir", "data_dir", "runs_dir", "configs", "seeds", "first_seed"},
    "explorer": {"profile", "data_dir", "runs_dir"},
}
#: The way to set a derived parameter instead, for the message.
INSTEAD = {"first_seed": "distill.first_seed",
           "seed": "--seeds N", "config": "distill.configs", "configs": "distill.configs", "seeds": "--seeds N",
           "figures_dir": "--figures-dir", "runs_dir": "--runs-dir", "run_dir": "--runs-dir",
           "teacher_checkpoint": "teacher.mode / --public-teacher", "data_dir": "data.data_dir",
           "threads": "-j N", "profile": "--profile"}
# Notebook-03 overrides that would rename the student runs (kd-<label>-seed<n>): notebook 04 finds runs by
# configuration name, so the pipeline cannot apply them to every configuration.
RENAMING = ("types", "layers", "weights", "teacher_alpha_weight")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number_ok(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and v > 0 and v < float("inf")


def _pipeline_key_problems(stage: str, table: dict[str, Any]) -> list[str]:
    out = []
    for key in TIMEOUT_KEYS:
        if key in table and not _number_ok(table[key]):
            out.append(f"{stage}.{key} = {table[key]!r}: expected a positive number of seconds, e.g. "
                       f"--set {stage}.{key}=3600")
    if stage != "distill":
        return out
    for key in ("seeds", "jobs"):
        if key in table and not (_is_int(table[key]) and table[key] >= 1):
            out.append(f"distill.{key} = {table[key]!r}: expected an integer >= 1, e.g. --set distill.{key}=2")
    if "first_seed" in table and not (_is_int(table["first_seed"]) and table["first_seed"] >= 0):
        out.append(f"distill.first_seed = {table['first_seed']!r}: expected an integer >= 0 (the first seed of every "
                   f"configuration), e.g. --set distill.first_seed=7")
    if "shared_caches" in table and not isinstance(table["shared_caches"], bool):
        out.append(f"distill.shared_caches = {table['shared_caches']!r}: expected true or false, e.g. "
                   f"--set distill.shared_caches=false")
    if "configs" in table:
        cfgs = table["configs"]
        if not isinstance(cfgs, list) or not cfgs or not all(isinstance(c, str) for c in cfgs):
            out.append(f"distill.configs = {cfgs!r}: expected a non-empty list of configuration names, e.g. "
                       f"--set 'distill.configs=[\"student\",\"spatial\"]'")
        elif len(set(cfgs)) != len(cfgs):
            out.append(f"distill.configs = {cfgs!r}: a configuration is listed twice")
    for key in RENAMING:
        if key in table and table[key] not in ("", -1, -1.0):
            out.append(f"distill.{key} = {table[key]!r}: the pipeline runs the paper's configurations by name "
                       f"(distill.configs) and notebook 04 finds their runs by that name; run notebook 03 directly "
                       f"for a {key} override (see its parameters cell)")
    return out


@functools.cache
def declared_parameters(notebook: Path) -> dict[str, dict]:
    """A notebook's ``parameters`` cell as papermill reads it (``papermill.inspect_notebook``), with the standard
    library only, so that ``run_all.sh --check-args`` checks every ``--set`` key and type before the environment
    is set up: name -> {name, inferred_type_name, default, help}, each line ``name: type = default  # help``."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    lines = source.splitlines()
    out = {}
    for stmt in ast.parse(source).body:
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else \
            stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if not isinstance(target, ast.Name) or stmt.value is None:
            continue
        last = lines[stmt.end_lineno - 1]
        comment = last[stmt.end_col_offset:].partition("#")[2].strip() if stmt.end_lineno == stmt.lineno else ""
        default = "".join(ln.strip() for ln in ast.get_source_segment(source, stmt.value).splitlines())  # as papermill
        out[target.id] = {"name": target.id, "default": default,
                          "inferred_type_name": ast.unparse(stmt.annotation) if isinstance(stmt, ast.AnnAssign)
                          else "None", "help": comment}
    return out


def _matches_declared(value: Any, type_name: str | None) -> bool:
    if type_name == "int":
        return _is_int(value)
    if type_name == "float":
        return _is_int(value) or isinstance(value, float)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "str":
        return isinstance(value, str)
    return True  # no annotation: nothing to check


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _notebook_key_problems(stage: str, table: dict[str, Any]) -> list[str]:
    nb = REPO / "notebooks" / NOTEBOOKS[stage]
    declared = declared_parameters(nb)
    own = PIPELINE_KEYS[stage]
    out = []
    for key, value in table.items():
        if key in own or key in DERIVED[stage]:
            continue
        if key not in declared:
            valid = sorted((set(declared) - DERIVED[stage]) | own)
            out.append(f"{stage}.{key}: unknown key{_suggest(key, valid)}; {nb.name} declares "
                       f"{', '.join(sorted(set(declared) - DERIVED[stage]))}; the pipeline's own keys for "
                       f"[{stage}]: {', '.join(sorted(own))}")
            continue
        type_name = declared[key].get("inferred_type_name")
        if not _matches_declared(value, type_name):
            hint = f" (quote it: --set '{stage}.{key}=\"{value}\"')" if type_name == "str" else ""
            out.append(f"{stage}.{key} = {value!r} ({type(value).__name__}): {nb.name} declares {key}: {type_name}"
                       f" (default {declared[key].get('default')}){hint}")
    return out


def _config_problems(configs: list[str]) -> list[str]:
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.distillation.distill import CONFIGS

    return [f"distill.configs: unknown configuration {c!r}{_suggest(c, CONFIGS)}; valid names: "
            f"{', '.join(CONFIGS)}" for c in configs if c not in CONFIGS]


def validate_profile(prof: dict[str, Any], *, full: bool) -> None:
    """Raise :class:`ProfileError` listing every problem of ``prof`` (see the module docstring)."""
    problems = []
    for stage in STAGES:
        table = prof.get(stage, {})
        if not isinstance(table, dict):
            problems.append(f"[{stage}] must be a table of keys, got {table!r}")
            continue
        problems += _pipeline_key_problems(stage, table)
        for key in sorted(set(table) & DERIVED[stage]):  # (data.data_dir is the profile's: not derived there)
            problems.append(f"{stage}.{key} = {table[key]!r}: set by the pipeline for every job; use "
                            f"{INSTEAD.get(key, 'the command-line options')} instead")
        problems += _notebook_key_problems(stage, table)
    cfgs = prof.get("distill", {}).get("configs", [])
    if full and isinstance(cfgs, list) and all(isinstance(c, str) for c in cfgs):
        problems += _config_problems(cfgs)
    if problems:
        raise ProfileError("the profile is not usable (nothing was run):\n  - " + "\n  - ".join(problems))


def _params_class(stage: str):
    """The dataclass that validates a stage's notebook parameters (None: the notebook has none yet)."""
    if stage == "data":
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.data.dataset_report import DataParams
        return DataParams
    if stage == "teacher":
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.training.teacher import TeacherParams
        return TeacherParams
    if stage == "distill":
        # imported here: the pipeline loads only the standard library up front
        from matting_lib.training.student import DistillRunParams
        return DistillRunParams
    return None


def _teacher_width(teacher) -> tuple[float, str] | None:
    """(width, where it comes from) of the teacher the students distil from, known before anything runs."""
    if teacher.mode == "import":
        return 1.0, "the DIM-PyTorch teacher (import mode)"
    if teacher.mode == "load":
        manifest = teacher.shipped_path.with_suffix(".json")
        try:
            return float(json.loads(manifest.read_text())["width"]), f"the shipped teacher ({manifest.name})"
        except (OSError, ValueError, KeyError, TypeError):
            return None  # notebook 02 reports a missing or unreadable shipped teacher itself
    return teacher.width, "teacher.width"


def check_jobs(jobs: list[Job]) -> None:
    """Refuse, for every job at once: parameters a job's notebook does not declare (papermill would only warn),
    values its parameter dataclass rejects, and students whose width is not their teacher's."""
    # imported here: the pipeline loads only the standard library up front
    from matting_lib.params import params_from_dict

    problems, built = [], {}
    for job in jobs:
        declared = declared_parameters(job.notebook)
        extra = sorted(set(job.params) - set(declared))
        if extra:
            problems.append(f"{job.notebook.name} does not declare parameter(s) {extra} given for job {job.key!r}; "
                            f"it declares: {', '.join(sorted(declared))}. Fix the profile or the notebook.")
            continue
        cls = _params_class(job.stage)
        if cls is None:
            continue
        try:
            built[job.key] = params_from_dict(cls, job.params, where=f"job {job.key!r} ({job.notebook.name})")
        except ValueError as err:
            problems.append(f"job {job.key!r} ({job.notebook.name}): {err}")
    teacher = built.get("teacher")
    known = _teacher_width(teacher) if teacher is not None else None
    if known is not None:
        width, source = known
        students = [p for p in built.values() if hasattr(p, "distill_config")]  # notebook 03's parameters
        wrong = sorted({p.width for p in students if p.distill_config.uses_teacher and p.width != width})
        if wrong:
            problems.append(f"distill.width = {wrong[0]} but {source} has width {width}: the paper's student is the "
                            f"teacher's half at equal width; set distill.width = {width} (--set distill.width={width})")
    if problems:
        raise ProfileError("the planned jobs are not usable (nothing was run):\n  - " + "\n  - ".join(problems))
