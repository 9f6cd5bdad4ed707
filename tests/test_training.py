"""Training loop: losses, resume after an interruption equals an uninterrupted run bit for bit, logs, config."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from matting_lib.networks.checkpoints import load_checkpoint, load_evaluated_model
from matting_lib.networks.losses import alpha_loss, unknown_mask
from matting_lib.networks.models import build_student
from matting_lib.settings import REMOVED_FIELDS, TrainConfig
from matting_lib.training.log import EVENTS_DIR, RunLog
from matting_lib.training.loop import AlphaObjective, train, validate


class TinyMatting(Dataset):
    """``n`` in-memory samples with the contract's keys; content depends on (seed, epoch, index) like the real set."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0):
        self.n, self.size, self.seed, self.epoch = n, size, seed, 0
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1_009 + i)
        s = self.size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        r = 0.3 + 0.4 * torch.rand((), generator=g)
        alpha = torch.sigmoid((r - (xx ** 2 + yy ** 2).sqrt()) * 12)[None]  # (1, s, s) soft disc
        trimap = torch.where(alpha > 0.97, 1.0, torch.where(alpha < 0.03, 0.0, 128 / 255))
        fg, bg = torch.rand(3, 1, 1, generator=g).expand(3, s, s), torch.rand(3, s, s, generator=g)
        image = alpha * fg + (1 - alpha) * bg
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        x = torch.cat([(image - mean) / std, trimap], 0)
        return {"input": x.float(), "alpha": alpha.float(), "trimap": trimap.float(), "image": image.float(),
                "fg": fg.float().contiguous(), "bg": bg.float()}


def _run(run_dir, *, model_seed=0, **overrides):
    torch.manual_seed(model_seed)
    model = build_student(0.125)
    cfg = dict(lr=0.01, batch_size=2, steps=7, val_every=3, seed=3, progress=False)
    cfg.update(overrides)
    train_set, val_set = TinyMatting(8, seed=1), TinyMatting(4, seed=2)
    result = train(model, AlphaObjective(), train_set, val_set, TrainConfig(**cfg), run_dir)
    return model, result, train_set


def _log_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_alpha_loss_by_hand():
    pred = torch.tensor([0.5, 0.2, 0.9, 0.1]).view(1, 1, 2, 2)
    target = torch.tensor([0.0, 0.2, 0.0, 0.4]).view(1, 1, 2, 2)
    trimap = torch.tensor([128 / 255, 128 / 255, 1.0, 0.0]).view(1, 1, 2, 2)
    mask = unknown_mask(trimap)
    assert mask.flatten().tolist() == [1, 1, 0, 0]
    # Σ sqrt(d² + 1e-12) over all 4 pixels (masked ones contribute 1e-6 each) / (2 + 1e-6)
    expected = (0.5 + 3e-6) / (2 + 1e-6)
    assert alpha_loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    assert alpha_loss(target, target, mask).item() == pytest.approx(2e-6, rel=1e-3)


def test_alpha_objective_is_the_alpha_loss_on_the_unknown_region():
    batch = {k: v[None] for k, v in TinyMatting(2)[0].items()}
    constant = lambda x: torch.full_like(x[:, :1], 0.5)  # noqa: E731 - a "model" predicting 0.5 everywhere
    loss, logs = AlphaObjective()(constant, batch)
    expected = alpha_loss(torch.full_like(batch["alpha"], 0.5), batch["alpha"], unknown_mask(batch["trimap"]))
    assert logs == {"alpha": pytest.approx(expected.item())} and loss.item() == pytest.approx(expected.item())


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full_model, full, _ = _run(tmp_path / "full")
    assert (full.step, full.total_steps, full.interrupted) == (7, 7, False)
    # Interrupt after step 5 (mid-epoch 1, not a validation step), then resume with a fresh model of another seed.
    _, part, _ = _run(tmp_path / "resumed", stop_after_steps=5)
    assert part.interrupted and part.step == 5
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 5
    resumed_model, resumed, train_set = _run(tmp_path / "resumed", model_seed=99)
    assert resumed.step == 7 and not resumed.interrupted
    assert train_set.epochs_seen == [1]  # resumed inside epoch 1
    for (k, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(tmp_path / "full" / name), load_checkpoint(tmp_path / "resumed" / name)
        assert a["step"] == b["step"] and a["metrics"] == b["metrics"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert load_checkpoint(tmp_path / "full" / "best.pt")["optimizer"] is None  # best.pt = weights only
    assert full.best_val_loss == resumed.best_val_loss and full.best_step in (3, 6, 7)
    rows_full, rows_res = _log_rows(full.log_path), _log_rows(resumed.log_path)
    assert [r["step"] for r in rows_full] == [str(s) for s in range(1, 8)]
    assert [(r["step"], r["loss"], r["val_loss"]) for r in rows_full] == \
           [(r["step"], r["loss"], r["val_loss"]) for r in rows_res]
    val = [r["val_loss"] for r in rows_full]
    assert float(val[2]) == pytest.approx(validate_at_step_3(tmp_path))  # logged where validated
    assert val[5] != "" and val[0] == val[1] == val[3] == val[4] == ""


def validate_at_step_3(tmp_path):
    _run(tmp_path / "three", steps=3)
    from matting_lib.networks.checkpoints import load_model
    return validate(load_model(tmp_path / "three" / "last.pt").train(), TinyMatting(4, seed=2), batch_size=2)


def test_resume_checks_settings_and_finished_run_returns(tmp_path):
    _run(tmp_path / "r", steps=2, val_every=0)
    before = (tmp_path / "r" / "log.csv").read_text()
    _, again, _ = _run(tmp_path / "r", steps=2, val_every=0)  # already finished: nothing to do
    assert again.step == 2 and (tmp_path / "r" / "log.csv").read_text() == before
    with pytest.raises(ValueError, match="other settings"):
        _run(tmp_path / "r", steps=2, lr=0.5)
    _, longer, _ = _run(tmp_path / "r", steps=4, val_every=0)  # more steps may be added
    assert longer.step == 4 and len(_log_rows(longer.log_path)) == 4


def test_gradients_are_clamped_elementwise(tmp_path):
    seen = []
    torch.manual_seed(0)
    model = build_student(0.125)
    cfg = TrainConfig(lr=0.01, batch_size=2, steps=2, grad_clamp=1e-4, progress=False, val_every=0)
    train(model, AlphaObjective(), TinyMatting(4), None, cfg, tmp_path / "c",
          callbacks=[lambda step, m, logs: seen.append(max(p.grad.abs().max().item() for p in m.parameters()))])
    assert len(seen) == 2 and all(g == pytest.approx(1e-4) for g in seen)
    assert (tmp_path / "c" / "best.pt").is_file()  # no validation set: best = final weights


def test_workers_do_not_change_the_result(tmp_path):
    m0, _, _ = _run(tmp_path / "w0", steps=3, val_every=0)
    m2, _, _ = _run(tmp_path / "w2", steps=3, val_every=0, num_workers=2)
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m2.state_dict().values()))


def test_config_validation():
    with pytest.raises(TypeError, match="steps"):  # steps is required: every profile counts optimiser steps
        TrainConfig()
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(steps=3, batch_size=0)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        _run("unused", batch_size=16)


# The training config that checkpoints of an older format store (the keys and values of the calibration teacher
# run's runs/calibrate/teacher-w0.25-c160/last.pt, which must still resume).
OLD_STYLE_CONFIG = {"lr": 0.01, "lr_decay_steps": [], "lr_gamma": 0.1, "batch_size": 2, "steps": 7, "epochs": None,
                    "grad_clamp": 5.0, "weight_decay": 0.0, "val_every": 3, "val_batch_size": None,
                    "max_val_batches": None, "log_every": 1, "checkpoint_every": 0, "snapshot_every": 0, "seed": 3,
                    "num_workers": 0, "device": "auto", "progress": False, "stop_after_steps": None}


def test_old_style_config_with_default_removed_fields_loads_and_resumes(tmp_path):
    assert set(REMOVED_FIELDS) <= set(OLD_STYLE_CONFIG)
    cfg = TrainConfig.from_stored(OLD_STYLE_CONFIG)
    assert cfg == TrainConfig(lr=0.01, batch_size=2, steps=7, val_every=3, seed=3, progress=False)
    assert TrainConfig.from_stored({**OLD_STYLE_CONFIG, "val_batch_size": 2}) == cfg  # = batch_size: same run
    # A run interrupted under the old code (its last.pt carries the removed fields) resumes to the same weights.
    full_model, _, _ = _run(tmp_path / "full")
    _run(tmp_path / "old", stop_after_steps=5)
    last = tmp_path / "old" / "last.pt"
    raw = torch.load(last, weights_only=True)
    raw["config"] = {**OLD_STYLE_CONFIG, "stop_after_steps": 5}
    torch.save(raw, last)
    resumed_model, resumed, _ = _run(tmp_path / "old", model_seed=99)
    assert resumed.step == 7
    for (k, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("field, value", [("weight_decay", 1e-4), ("epochs", 30), ("val_batch_size", 1),
                                          ("max_val_batches", 4), ("log_every", 10)])
def test_old_style_config_with_a_removed_field_set_is_refused_naming_it(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field} = {value!r}.*cannot honour"):
        TrainConfig.from_stored({**OLD_STYLE_CONFIG, field: value}, source="old.pt")
    if field == "weight_decay":  # and so is resuming such a run: nothing is trained, last.pt is left as it was
        _run(tmp_path / "r", stop_after_steps=2)
        last = tmp_path / "r" / "last.pt"
        raw = torch.load(last, weights_only=True)
        raw["config"] = {**OLD_STYLE_CONFIG, field: value}
        torch.save(raw, last)
        before = last.read_bytes()
        with pytest.raises(ValueError, match=f"last.pt.*{field} = "):
            _run(tmp_path / "r")
        assert last.read_bytes() == before


def test_stored_config_without_steps_or_with_unknown_fields_is_refused():
    with pytest.raises(ValueError, match="steps = None"):  # the old 30-epoch default
        TrainConfig.from_stored({**OLD_STYLE_CONFIG, "steps": None}, source="old.pt")
    with pytest.raises(ValueError, match="old.pt: unknown training config field.*'momentum'"):
        TrainConfig.from_stored({**OLD_STYLE_CONFIG, "momentum": 0.9}, source="old.pt")


def test_shipped_teacher_checkpoint_still_loads():
    from matting_lib.networks.checkpoints import check_manifest, load_model
    from matting_lib.networks.models import count_parameters

    shipped = Path(__file__).resolve().parents[1] / "matting_lib" / "assets" / "teacher-default.pt"
    if not shipped.is_file():
        pytest.skip(f"{shipped} is not in this checkout (the shipped teacher is a committed asset)")
    manifest = check_manifest(shipped)  # intact (SHA-256)
    model, ckpt = load_model(shipped), load_checkpoint(shipped)
    assert count_parameters(model) == manifest["params"] and ckpt["step"] == manifest["steps"]
    if "grad_clamp" in ckpt["config"]:  # a snapshot of the training loop (calibration ship): its TrainConfig
        assert TrainConfig.from_stored(ckpt["config"], shipped).steps >= ckpt["step"]


def test_step_decay_schedule_logged_and_resumed_exactly(tmp_path):
    cfg = TrainConfig(steps=7, lr=0.01, lr_decay_steps=[2, 5], lr_gamma=0.5)
    assert cfg.lr_decay_steps == (2, 5)
    assert [cfg.lr_at(s) for s in (1, 2, 3, 5, 6)] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    for bad in ({"lr_decay_steps": (5, 2)}, {"lr_decay_steps": (0,)}, {"lr_gamma": 0.0}, {"lr_gamma": 2.0}):
        with pytest.raises(ValueError):
            TrainConfig(steps=7, **bad)
    schedule = dict(lr_decay_steps=(2, 5), lr_gamma=0.5)
    full_model, full, _ = _run(tmp_path / "full", **schedule)
    assert [float(r["lr"]) for r in _log_rows(full.log_path)] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.005,
                                                                                0.0025, 0.0025])
    _run(tmp_path / "resumed", stop_after_steps=4, **schedule)  # interrupted between the two decays
    resumed_model, resumed, _ = _run(tmp_path / "resumed", model_seed=99, **schedule)
    assert resumed.step == 7
    for (k, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    constant_model, _, _ = _run(tmp_path / "constant")
    assert not all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(),
                                                     constant_model.state_dict().values()))
    with pytest.raises(ValueError, match="lr_gamma"):  # the decay factor cannot change under a resumed run
        _run(tmp_path / "resumed", steps=9, lr_decay_steps=(2, 5), lr_gamma=0.25)


def test_snapshots_are_full_resumable_states_at_their_steps(tmp_path):
    from matting_lib.training.loop import list_snapshots, snapshot_path

    model, result, _ = _run(tmp_path / "s", snapshot_every=3)
    snaps = list_snapshots(tmp_path / "s")
    assert list(snaps) == [3, 6] and snaps[3] == snapshot_path(tmp_path / "s", 3)
    ckpt = load_checkpoint(snaps[6])
    assert ckpt["step"] == 6 and ckpt["optimizer"] is not None  # full state: a run can branch from it
    # Branching: the step-6 snapshot as last.pt of a new folder continues to the same step-7 weights.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "last.pt").write_bytes(snaps[6].read_bytes())
    branched, _, _ = _run(tmp_path / "b", model_seed=5, snapshot_every=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), branched.state_dict().values()))
    with pytest.raises(ValueError, match="snapshot_every"):
        TrainConfig(steps=7, snapshot_every=-1)


def test_cosine_schedule_is_torchs_closed_form():
    cfg = TrainConfig(steps=10, lr=0.01, lr_schedule="cosine")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.0)
    for step in range(1, 11):  # optimiser step k runs at the scheduler's epoch k - 1
        assert cfg.lr_at(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), step
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="one or the other"):
        TrainConfig(steps=10, lr_schedule="cosine", lr_decay_steps=(5,))
    with pytest.raises(ValueError, match="valid: step, cosine"):
        TrainConfig(steps=10, lr_schedule="linear")


def test_ema_weights_are_validated_kept_and_resumed_exactly(tmp_path):
    """ema_decay > 0: best.pt holds torch.optim.swa_utils' exponential moving average (the weights evaluated), the
    running average is part of last.pt, and an interrupted run resumes to the same averaged weights bit for bit."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    full_model, full, _ = _run(tmp_path / "full", ema_decay=0.9, val_every=7)
    best = load_checkpoint(tmp_path / "full" / "best.pt")
    assert best["step"] == 7 and best["extra"]["averaged"] == "ema"
    assert not all(torch.equal(best["model"][k], v) for k, v in full_model.state_dict().items())  # not the live weights
    averaged = AveragedModel(build_student(0.125), multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    averaged.load_state_dict(load_checkpoint(tmp_path / "full" / "last.pt")["averaged"])
    assert all(torch.equal(best["model"][k], v) for k, v in averaged.module.state_dict().items())
    _run(tmp_path / "resumed", ema_decay=0.9, val_every=7, stop_after_steps=4)
    _run(tmp_path / "resumed", ema_decay=0.9, val_every=7, model_seed=99)
    again = load_checkpoint(tmp_path / "resumed" / "best.pt")
    assert all(torch.equal(best["model"][k], again["model"][k]) for k in best["model"])
    # a snapshot or last.pt of an averaging run is scored with its averaged weights (the calibration curve)
    evaluated = load_evaluated_model(tmp_path / "full" / "last.pt").state_dict()
    assert all(torch.equal(best["model"][k], evaluated[k]) for k in best["model"])
    plain = load_evaluated_model(tmp_path / "full" / "best.pt").state_dict()  # no averaged state: the model's
    assert all(torch.equal(best["model"][k], plain[k]) for k in best["model"])


def test_a_finished_run_continued_to_more_steps_equals_a_longer_run(tmp_path):
    """What run_identity's 'target' marking relies on: a constant-lr run whose last step was a validation step,
    continued to a larger ``steps``, ends with the weights, best.pt and log of a run trained that long at once."""
    longer, _, _ = _run(tmp_path / "long", steps=9)
    _run(tmp_path / "extended", steps=6)
    extended, _, _ = _run(tmp_path / "extended", steps=9, model_seed=99)
    assert all(torch.equal(a, b) for a, b in zip(longer.state_dict().values(), extended.state_dict().values()))
    a, b = load_checkpoint(tmp_path / "long" / "best.pt"), load_checkpoint(tmp_path / "extended" / "best.pt")
    assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def _events(run_dir):
    """{tag: [(step, value)]} of the scalars and {tag: [step]} of the images in a run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / EVENTS_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    images = {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}
    return scalars, images


def test_the_loop_writes_tensorboard_events_that_a_resume_continues_exactly(tmp_path):
    """Every loss term, the lr and the validation loss as TensorBoard scalars, validation mattes as images, one
    value per step; a run interrupted at step 3 and resumed has the events of an uninterrupted one."""
    _run(tmp_path / "full", steps=6, val_every=2)
    scalars, images = _events(tmp_path / "full")
    assert {"train/loss", "train/alpha", "lr", "val/loss"} <= set(scalars)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars["val/loss"]] == [2, 4, 6]
    logged = _log_rows(tmp_path / "full" / "log.csv")
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([float(r["loss"]) for r in logged], rel=1e-6)
    assert images == {"val/image_trimap_truth_prediction": [2, 4, 6]}
    _run(tmp_path / "cut", steps=6, val_every=2, stop_after_steps=3)
    _run(tmp_path / "cut", steps=6, val_every=2)
    again, _ = _events(tmp_path / "cut")
    assert [s for s, _ in again["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert again["train/loss"] == scalars["train/loss"] and again["val/loss"] == scalars["val/loss"]


def test_resumed_log_csv_has_one_line_ending_and_the_same_values(tmp_path):
    """A resumed run's log.csv keeps its rows up to the resume step, text for text, and every line ends in "\\n"
    (the rewritten head as the rows appended after it), as an uninterrupted run's log does."""
    rows = [{"step": s, "epoch": 0, "time_s": 0.125 * s, "lr": 0.01, "loss": 1 / (s + 2), "val_loss": None if s % 2
             else 0.5 / s} for s in range(1, 7)]
    (tmp_path / "whole").mkdir()
    whole = RunLog(tmp_path / "whole", tensorboard=False)
    for r in rows:
        whole.step(r)
    whole.close()
    cut = tmp_path / "cut"
    cut.mkdir()
    first = RunLog(cut, tensorboard=False)
    for r in rows[:5]:  # interrupted after step 5, resumed from the checkpoint of step 3
        first.step(r)
    first.close()
    resumed = RunLog(cut, resume_step=3, tensorboard=False)
    for r in rows[3:]:
        resumed.step(r)
    resumed.close()
    data = (cut / "log.csv").read_bytes()
    assert b"\r" not in data and data.count(b"\n") == len(rows) + 1
    assert data == (tmp_path / "whole" / "log.csv").read_bytes()
