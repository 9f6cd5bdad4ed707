"""The pipeline's overall progress: ``[k/N]`` after every finished notebook run, the time elapsed and an estimate
of the time left. Standard library only.

The estimate: each stage's remaining runs times the mean duration of that stage's finished runs (the mean over all
finished runs while a stage has none), student runs divided by the number running in parallel. It improves as
runs finish; the first student runs of the default profile set it to within a few minutes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds > 90 else f"{seconds:.0f} s"


class Progress:
    """Counts finished runs out of ``jobs`` (the runs that will execute) and prints one line per finished run.
    Thread-safe: parallel student runs report from their threads."""

    def __init__(self, jobs: Iterable[Any], *, parallel: int = 1, profile: str = "", start: float | None = None,
                 log: Callable[[str], None] = print, clock: Callable[[], float] = time.time):
        self.left = {}
        for job in jobs:
            self.left[job.stage] = self.left.get(job.stage, 0) + 1
        self.total, self.done = sum(self.left.values()), 0
        self.parallel, self.profile, self.log, self.clock = max(1, parallel), profile, log, clock
        self.start = clock() if start is None else start
        self.walls: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def estimate_left(self) -> float | None:
        """Seconds left by the stage means (see the module docstring); None before any run has finished."""
        every = [w for ws in self.walls.values() for w in ws]
        if not every:
            return None
        total = 0.0
        for stage, n in self.left.items():
            ws = self.walls.get(stage) or every
            total += n * sum(ws) / len(ws) / (self.parallel if stage == "distill" else 1)
        return total

    def finished(self, job: Any, wall: float) -> str:
        """Record that ``job`` finished after ``wall`` seconds; log and return the progress line."""
        with self._lock:
            self.done += 1
            self.left[job.stage] = max(0, self.left.get(job.stage, 1) - 1)
            self.walls.setdefault(job.stage, []).append(float(wall))
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
