"""Where a training's curves go, in one place: ``log.csv`` (one row per step, read by the notebooks' figures) and
TensorBoard event files in the run folder (every loss term, the learning rate, the validation loss and a few
validation mattes), so that ``tensorboard --logdir runs/<profile>`` shows every run of a profile side by side.

On resume both continue from the resumed step: ``log.csv`` keeps its rows up to that step, and TensorBoard drops
the events written after it (``purge_step``), so a resumed run's curves equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from matting_lib.files import atomic_write_text

LOG_FILE = "log.csv"
#: Every line of ``log.csv`` ends so, whether written in one go or rewritten on resume and continued.
LINE_END = "\n"
#: The TensorBoard folder inside a run folder (``tensorboard --logdir`` over a runs folder names each run by it).
EVENTS_DIR = "tb"


class RunLog:
    """``log.csv`` and TensorBoard events of one run folder, from step ``resume_step`` on."""

    def __init__(self, run_dir: str | Path, resume_step: int = 0, *, tensorboard: bool = True):
        self.path = Path(run_dir) / LOG_FILE
        self.fields, self.fh, self.writer = None, None, None
        if self.path.is_file():
            with self.path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
                self.fields = list(rows[0]) if rows else None
            if rows:  # the kept rows as read (the same text), written as the rows that follow are
                buf = io.StringIO()
                writer = csv.DictWriter(buf, self.fields, lineterminator=LINE_END)
                writer.writeheader()
                writer.writerows(rows)
                atomic_write_text(self.path, buf.getvalue())
            else:
                self.path.unlink()
        self.events = (
            SummaryWriter(str(Path(run_dir) / EVENTS_DIR), purge_step=resume_step + 1 if resume_step else None)
            if tensorboard
            else None
        )

    def step(self, row: Mapping[str, float | int | None]) -> None:
        """One optimiser step: ``row`` holds ``step``, ``epoch``, ``time_s``, ``lr``, ``loss``, the objective's
        terms and ``val_loss`` (None between validations)."""
        if self.fh is None:
            self.fields = self.fields or list(row)
            new = not self.path.is_file()
            self.fh = self.path.open("a", newline="")
            self.writer = csv.DictWriter(self.fh, self.fields, extrasaction="ignore", lineterminator=LINE_END)
            if new:
                self.writer.writeheader()
        self.writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self.fh.flush()
        if self.events is not None:
            step = int(row["step"])
            for key, value in row.items():
                if value is None or key in ("step", "epoch", "time_s"):
                    continue
                tag = "val/loss" if key == "val_loss" else "lr" if key == "lr" else f"train/{key}"
                self.events.add_scalar(tag, float(value), step)

    def mattes(self, step: int, images: torch.Tensor | None) -> None:
        """A few validation samples at ``step``: ``images`` (N, 3, H, W) in [0, 1], each the image, its trimap, the
        ground truth and the prediction side by side (:func:`matting_lib.training.loop.validation_mattes`)."""
        if self.events is not None and images is not None:
            self.events.add_images("val/image_trimap_truth_prediction", images, step)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.events is not None:
            self.events.close()
