"""Profiles: ``profiles/<name>.toml`` read, ``--set stage.key=value`` applied, and where a run's tables go.

A profile holds one table per stage (:data:`~matting_lib.pipeline.common.STAGES`); every key in a stage's table
becomes a notebook parameter, except the pipeline's own keys (:data:`~matting_lib.pipeline.common.PIPELINE_KEYS`).
Standard library only.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from matting_lib.paths import DEFAULT_RUNS, REPO
from matting_lib.pipeline.common import STAGES, ProfileError


def profiles_dir() -> Path:
    return REPO / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    """Read ``profiles/<name>.toml``; raise naming the valid profiles on a typo."""
    path = profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}; valid profiles: {', '.join(available_profiles())} "
                           f"(files in {profiles_dir()})")
    try:
        with path.open("rb") as fh:
            prof = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:  # its message ends "(at line N, column M)"
        raise ProfileError(f"{path} is not valid TOML: {err}; fix that line (https://toml.io: tables as [stage], "
                           f"values as key = value, strings in quotes)") from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ProfileError(f"{path} is not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} on line {line}); "
                           f"save it as UTF-8") from None
    unknown = sorted(set(prof) - set(STAGES) - {"description"})
    if unknown:
        raise ProfileError(f"{path}: unknown table(s) {unknown}; valid tables: {', '.join(STAGES)}")
    return prof


def apply_overrides(profile: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set stage.key=value`` overrides (value parsed as TOML, else taken as a string; the profile is
    validated afterwards, so a string where a list or number belongs is reported, never split or guessed)."""
    prof = json.loads(json.dumps(profile))
    for item in overrides:
        key, sep, raw = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or stage not in STAGES or not name:
            raise ProfileError(f"--set {item!r}: expected STAGE.KEY=VALUE with STAGE one of {', '.join(STAGES)}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        prof.setdefault(stage, {})[name] = value
    return prof


def figures_dir_for(profile_name: str, runs_root: Path, figures_dir: str | os.PathLike | None = None) -> Path:
    """Where a run's tables and figures go: ``figures_dir`` if given; the repository's ``figures/<profile>`` for
    the default runs folder; else ``<runs-dir>/<profile>/figures`` (two runs folders never share tables)."""
    if figures_dir:
        return Path(figures_dir).expanduser().resolve()
    if Path(runs_root).resolve() == DEFAULT_RUNS.resolve():
        return REPO / "figures" / profile_name
    return Path(runs_root).resolve() / profile_name / "figures"
