"""Where a profile's dataset, runs and figures are, for a notebook opened by hand (04, 05).

The pipeline passes every path to the notebooks it executes. A notebook opened in JupyterLab has only its
``parameters`` cell, so its paths derive from one ``profile`` parameter, as the pipeline's do (``runs/<profile>``,
the profile's ``data_dir``, ``figures/<profile>``); an explicit path wins. A missing run is an error that names
it, the command that makes it and the profiles whose runs do exist::

    paths = run_paths.for_profile("smoke")
    teacher = paths.require(paths.layout.teacher_checkpoint, "the teacher")

Standard library only, like :mod:`matting_lib.pipeline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from matting_lib.paths import DEFAULT_RUNS, REPO, RunLayout
from matting_lib.pipeline.profiles import figures_dir_for, load_profile


@dataclass(frozen=True)
class ProfilePaths:
    """Absolute paths of one profile's run; ``configs`` and seeds ``first_seed .. first_seed + seeds - 1`` are its
    distillation runs."""

    profile: str
    data: Path
    runs: Path  # <runs-dir>/<profile>: teacher/, students/, notebooks/
    figures: Path
    configs: tuple[str, ...]
    seeds: int
    first_seed: int = 0

    @property
    def layout(self) -> RunLayout:
        """The folders of these runs (teacher, students, caches)."""
        return RunLayout(self.runs)

    @property
    def command(self) -> str:
        """The pipeline command that makes these runs."""
        other = "" if self.runs.parent == DEFAULT_RUNS.resolve() else f" --runs-dir {self.runs.parent}"
        return f"./run_all.sh --profile {self.profile}{other}"

    def require(self, path: str | os.PathLike, what: str) -> Path:
        """``Path(path)`` if it exists; else ``FileNotFoundError`` naming it, ``what`` it is, the command that
        makes it and the profiles that have runs (so a notebook opened with the wrong profile says which to set)."""
        path = Path(path)
        if path.exists():
            return path
        done = sorted(t.parent.name for t in self.runs.parent.glob(f"*/{self.layout.teacher.name}")
                      if t.is_dir() and t.parent.name != self.profile)
        hint = (
            f' Runs exist for profile(s) {", ".join(done)} in {self.runs.parent}: set e.g. profile = "{done[0]}" in '
            f"the parameters cell, or open the executed copies in {self.runs.parent / done[0] / 'notebooks'}/."
            if done
            else ""
        )
        raise FileNotFoundError(f"{path} does not exist: {what} of profile {self.profile!r} has not been made yet. "
                                f"Make it with `{self.command}`, then rerun this notebook.{hint}")


def _resolve(path: str | os.PathLike) -> Path:
    """Repository-relative paths, as the pipeline's, resolved against the repository (not the kernel's cwd)."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else REPO / path).resolve()


def for_profile(profile: str, *, data_dir: str = "", runs_dir: str = "", figures_dir: str = "") -> ProfilePaths:
    """The paths the pipeline would give a notebook of ``profile`` (``profiles/<profile>.toml``); a non-empty
    ``data_dir`` / ``runs_dir`` (the profile's folder, holding ``teacher/``) / ``figures_dir`` wins. An unknown
    profile raises :class:`matting_lib.pipeline.common.ProfileError` listing the valid ones."""
    prof = load_profile(profile)
    runs = _resolve(runs_dir) if runs_dir else (DEFAULT_RUNS / profile).resolve()
    data = _resolve(data_dir or prof.get("data", {}).get("data_dir", f"data/{profile}"))
    figures = _resolve(figures_dir) if figures_dir else figures_dir_for(profile, runs.parent)
    distill = prof.get("distill", {})
    return ProfilePaths(profile, data, runs, figures, tuple(distill.get("configs", ())), int(distill.get("seeds", 1)),
                        int(distill.get("first_seed", 0)))
