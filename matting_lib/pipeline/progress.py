"""The pipeline's overall progress: ``[k/N]`` after every finished notebook run, the time elapsed and an estimate
of the time left. Standard library only.

The estimate: the remaining runs of each stage and configuration times the mean duration of that group's finished
runs; a configuration not yet seen takes the median of its stage's group means (a stage not yet seen, the mean over
all finished runs); student runs are divided by the number running in parallel. Grouping by configuration matters
in the default profile: the no-KD student of a seed runs first and composes the batches the other runs of its seed
read, so it takes about three times as long as a distilled run. The estimate improves as runs finish.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any


def _group(job: Any) -> tuple[str, Any]:
    """The runs whose durations are averaged together: one stage's runs of one configuration."""
    return job.stage, (job.params or {}).get("config")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds > 90 else f"{seconds:.0f} s"


class Progress:
    """Counts finished runs out of ``jobs`` (the runs that will execute) and prints one line per finished run.
    Thread-safe: parallel student runs report from their threads."""

    def __init__(self, jobs: Iterable[Any], *, parallel: int = 1, profile: str = "", start: float | None = None,
                 log: Callable[[str], None] = print, clock: Callable[[], float] = time.time):
        self.left: dict[Hashable, int] = {}
        for group in map(_group, jobs):
            self.left[group] = self.left.get(group, 0) + 1
        self.total, self.done = sum(self.left.values()), 0
        self.parallel, self.profile, self.log, self.clock = max(1, parallel), profile, log, clock
        self.start = clock() if start is None else start
        self.walls: dict[Hashable, list[float]] = {}
        self._lock = threading.Lock()

    def estimate_left(self) -> float | None:
        """Seconds left by the stage means (see the module docstring); None before any run has finished."""
        every = [w for ws in self.walls.values() for w in ws]
        if not every:
            return None
        means = {group: statistics.fmean(ws) for group, ws in self.walls.items()}
        total = 0.0
        for (stage, config), n in self.left.items():
            if not n:
                continue
            same_stage = [m for (st, _), m in means.items() if st == stage]
            mean = means.get((stage, config)) or (statistics.median(same_stage) if same_stage
                                                  else statistics.fmean(every))
            total += n * mean / (self.parallel if stage == "distill" else 1)
        return total

    def finished(self, job: Any, wall: float) -> str:
        """Record that ``job`` finished after ``wall`` seconds; log and return the progress line."""
        with self._lock:
            self.done += 1
            group = _group(job)
            self.left[group] = max(0, self.left.get(group, 1) - 1)
            self.walls.setdefault(group, []).append(float(wall))
            left = self.estimate_left()
            line = (f"[{self.profile}] [{self.done}/{self.total}] {job.key} finished in {_minutes(wall)}; "
                    f"{_minutes(self.clock() - self.start)} elapsed"
                    + ("" if self.done == self.total or left is None else f", about {_minutes(left)} left"))
        self.log(line)
        return line

    def wrap(self, run_job: Callable[..., float]) -> Callable[..., float]:
        """``run_job`` that reports to this progress when it returns."""
        def tracked(job, *args, **kwargs) -> float:
            wall = run_job(job, *args, **kwargs)
            self.finished(job, wall)
            return wall
        return tracked
