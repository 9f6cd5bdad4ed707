"""A run folder is resumed only by the same training: other settings, another teacher or other data move it aside."""

from __future__ import annotations

import json

import pytest
import torch

from matting_lib import provenance
from matting_lib.networks import checkpoints
from matting_lib.networks.checkpoints import save_checkpoint
from matting_lib.networks.models import build_student, build_teacher
from matting_lib.training import run_identity
from matting_lib.training.student import DistillRunParams


def _teacher(path, seed):
    torch.manual_seed(seed)
    return save_checkpoint(path, model=build_teacher(0.0625), config={}, epoch=0, step=0, metrics={})


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "manifest.json").write_text('{"seed": 0, "files": {"a.png": "11"}}')  # a generated dataset's manifest
    return root


def test_weights_fingerprint_follows_the_weights_not_the_file(tmp_path):
    a = _teacher(tmp_path / "a" / "teacher.pt", 0)
    b = _teacher(tmp_path / "b" / "teacher.pt", 0)
    assert a.read_bytes() != b.read_bytes()  # torch names the archive after the temporary file
    assert checkpoints.weights_fingerprint(a) == checkpoints.weights_fingerprint(b)
    assert checkpoints.weights_fingerprint(_teacher(tmp_path / "c.pt", 1)) != checkpoints.weights_fingerprint(a)


def _student(p, teacher, data):
    return run_identity.identity_of("student", p, data_dir=data, distill=p.distill_config, teacher_checkpoint=teacher)


def test_student_identity_covers_what_is_trained(tmp_path, data):
    teacher, other = _teacher(tmp_path / "t.pt", 0), _teacher(tmp_path / "u.pt", 1)
    p = DistillRunParams(config="spatial", steps=5)
    ident = _student(p, teacher, data)
    assert ident["kind"] == "student" and ident["teacher"] and ident["dataset"].startswith("files:")
    assert ident["distill"]["types"] == ["spatial"] and ident["target"] == {"steps": 5}
    assert ident["code"] == provenance.group_digests("training", "distillation", "kd:spatial")
    assert ident["extendable"] is False  # 5 steps, validated every 100: the last step is not a regular one
    assert "config" not in ident["params"] and "runs_dir" not in ident["params"]  # the resolved config counts
    same = DistillRunParams(config="spatial", steps=5, threads=2, num_workers=3, max_test_images=1,
                            figures_dir="elsewhere", runs_dir="elsewhere", teacher_checkpoint="x")
    assert _student(same, teacher, data) == ident  # outputs and threads do not matter
    assert _student(DistillRunParams(config="spatial", steps=6), teacher, data) != ident
    assert _student(p, other, data) != ident  # another teacher
    (data / "manifest.json").write_text('{"seed": 0, "files": {"a.png": "12"}}')  # one file's contents changed
    assert _student(p, teacher, data) != ident  # other data
    plain = DistillRunParams(config="student")
    assert _student(plain, teacher, data) == _student(plain, other, data)
    assert _student(plain, teacher, data)["teacher"] is None  # no KD: the teacher is unused


def _train_files(run):
    torch.manual_seed(0)
    for name in ("best.pt", "last.pt"):
        save_checkpoint(run / name, model=build_student(0.0625), config={}, epoch=0, step=3, metrics={})
    (run / "log.csv").write_text("step,loss\n1,0.5\n")
    (run / "metrics.json").write_text("{}")


def test_prepare_run_dir_resumes_the_same_training_and_moves_others_aside(tmp_path):
    run = tmp_path / "kd-spatial-seed0"
    ident = {"kind": "student", "params": {"steps": 5}, "teacher": "t1", "dataset": "d1"}
    log = []
    assert run_identity.prepare_run_dir(run, ident, log=log.append) == "new"
    assert json.loads((run / "run.json").read_text())["identity"] == ident
    _train_files(run)
    assert run_identity.prepare_run_dir(run, ident, log=log.append) == "resume"
    assert (run / "last.pt").is_file()

    changed = {**ident, "teacher": "t2"}
    assert run_identity.prepare_run_dir(run, changed, log=log.append) == "stale"
    aside = list(tmp_path.glob("kd-spatial-seed0.stale-*"))
    assert len(aside) == 1 and (aside[0] / "last.pt").is_file() and (aside[0] / "metrics.json").is_file()
    assert json.loads((aside[0] / "run.json").read_text())["identity"] == ident  # kept whole, never deleted
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    assert json.loads((run / "run.json").read_text())["identity"] == changed
    assert "not the same training (teacher: t1 -> t2)" in log[-1] and aside[0].name in log[-1]

    _train_files(run)  # a second change within the same second gets its own folder
    assert run_identity.prepare_run_dir(run, {**changed, "params": {"steps": 6}}, log=log.append) == "stale"
    assert len(list(tmp_path.glob("kd-spatial-seed0.stale-*"))) == 2
    assert "steps: 5 -> 6" in log[-1]


def test_prepare_run_dir_refuses_unknown_or_damaged_runs(tmp_path):
    ident = {"kind": "student", "params": {}, "teacher": None, "dataset": "d"}
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    _train_files(legacy)  # trained before run.json existed: its teacher and settings are unknown
    log = []
    assert run_identity.prepare_run_dir(legacy, ident, log=log.append) == "stale"
    assert "no run.json" in log[-1]

    damaged = tmp_path / "damaged"
    run_identity.prepare_run_dir(damaged, ident)
    _train_files(damaged)
    data = (damaged / "best.pt").read_bytes()
    (damaged / "best.pt").write_bytes(data[: len(data) // 3])  # truncated: the folder cannot be resumed
    assert run_identity.prepare_run_dir(damaged, ident, log=log.append) == "stale"
    assert "best.pt does not load" in log[-1]

    figures_only = tmp_path / "only-outputs"
    (figures_only / "predictions").mkdir(parents=True)
    assert run_identity.prepare_run_dir(figures_only, ident) == "new"  # nothing trained: nothing to keep apart
    assert (figures_only / "predictions").is_dir() and not list(tmp_path.glob("only-outputs.stale-*"))


def test_identity_fields_are_marked_on_the_settings_dataclass():
    from matting_lib.settings import TrainSettings
    from matting_lib.training.run_identity import identity_values

    same, target = identity_values(DistillRunParams())
    assert target == {"steps": 500}
    assert {"width", "crop_size", "batch_size", "lr", "lr_decay", "seed", "split_seed", "val_every"} <= set(same)
    assert not {"threads", "num_workers", "profile", "data_dir", "runs_dir", "teacher_checkpoint"} & set(same)
    # every TrainSettings field is marked (a new hyperparameter cannot be forgotten by the identity)
    assert all("identity" in f.metadata for f in TrainSettings.__dataclass_fields__.values())


def test_a_larger_target_continues_a_run_and_a_smaller_one_trains_afresh(tmp_path):
    run = tmp_path / "kd-student-seed0"
    ident = {"kind": "student", "params": {"lr": 0.01}, "target": {"steps": 5}, "extendable": True, "code": "c"}
    log = []
    assert run_identity.prepare_run_dir(run, ident, log=log.append) == "new"
    _train_files(run)
    longer = {**ident, "target": {"steps": 8}}
    assert run_identity.prepare_run_dir(run, longer, log=log.append) == "resume"
    assert "continuing it" in log[-1] and json.loads((run / "run.json").read_text())["identity"] == longer
    assert run_identity.prepare_run_dir(run, ident, log=log.append) == "stale"  # 8 -> 5: not the same training
    assert "steps: 8 -> 5" in log[-1]
    _train_files(run)
    fixed = {**ident, "extendable": False}  # a schedule that depends on the total: a new target trains afresh
    run_identity.prepare_run_dir(tmp_path / "b", fixed)
    _train_files(tmp_path / "b")
    assert run_identity.prepare_run_dir(tmp_path / "b", {**fixed, "target": {"steps": 8}}, log=log.append) == "stale"


def test_code_digest_ignores_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    src = 'def loss(x):\n    """Spatial loss."""\n    return 2 * x  # doubled\n'
    (pkg / "kd_losses.py").write_text(src)
    monkeypatch.setattr(provenance, "PACKAGE", pkg)
    monkeypatch.setattr(provenance, "CODE", {"g": ("kd_losses.py",)})
    base = provenance.code_digest("g")
    (pkg / "kd_losses.py").write_text(src.replace("Spatial loss.", "The spatial loss, see docs.")
                                      .replace("# doubled", "# twice").replace("return 2", "return  2"))
    assert provenance.code_digest("g") == base  # docstring, comment and spacing edits do not count
    (pkg / "kd_losses.py").write_text(src.replace("2 * x", "4 * x"))
    assert provenance.code_digest("g") != base  # a changed loss does
    (pkg / "kd_losses.py").unlink()
    assert provenance.code_digest("g") != base


def test_code_groups_name_existing_code():
    units = sorted({u for g in [*provenance.CODE, "kd:spatial"] for u in provenance.group_units(g)})
    missing = [u for u in units if provenance.unit_digest(u) == "missing"]
    assert not missing, f"provenance.CODE names files that do not exist: {missing}"


def test_the_distillation_group_covers_what_the_objective_takes_from_the_loss_module():
    """distill.py calls the loss module outside its registry (the OFD margins, the term context): those definitions
    are in the group every student depends on, the registry's entries in one group per type."""
    import ast

    tree = ast.parse((provenance.PACKAGE / "distillation" / "distill.py").read_text(encoding="utf-8"))
    taken = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module ==
             "matting_lib.distillation.kd_losses" for a in n.names} - {"KD_LOSSES"}
    named = {u.partition(":")[2] for u in provenance.CODE["distillation"] if u.startswith(provenance.KD_MODULE)}
    assert taken == named, "provenance.CODE['distillation']: list what distill.py imports from kd_losses"
    assert set(provenance.training_groups(("channel", "spatial"))) == {"training", "distillation", "kd:spatial",
                                                                        "kd:channel"}


_LOSSES = """
import torch


def _check(f):
    if f.dim() != 4:
        raise ValueError(f)


def similarity(kind, s, t):
    _check(s)
    return (s - t).square().mean() * (2 if kind == "spatial" else 1)


def _spatial(fs, ft):
    return sum(similarity("spatial", s, t) for s, t in zip(fs, ft))


def at_loss(s, t):
    return (s.pow(2).mean(1) - t.pow(2).mean(1)).square().mean()


def ofd_margin(w):
    return torch.zeros_like(w)


REGISTRY = {
    "batch": lambda fs, ft: sum(similarity("batch", s, t) for s, t in zip(fs, ft)),  # Tung & Mori
    "spatial": _spatial,
    "at": lambda fs, ft: sum(at_loss(s, t) for s, t in zip(fs, ft)),
}
"""


def test_a_registry_entry_counts_only_the_code_it_reaches(tmp_path, monkeypatch):
    """kd:<type> is that entry of the registry and the top-level definitions it uses: an edit of the spatial term
    changes kd:spatial alone, an edit of a helper every similarity uses changes each entry that reaches it, an edit
    outside the registry's reach (ofd_margin, a new function, a comment) changes none."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "kd.py").write_text(_LOSSES)
    monkeypatch.setattr(provenance, "PACKAGE", pkg)
    monkeypatch.setattr(provenance, "KD_REGISTRY", "kd.py:REGISTRY")
    monkeypatch.setattr(provenance, "CODE", {"shared": ("kd.py:ofd_margin",)})
    groups = ("kd:batch", "kd:spatial", "kd:at", "shared")

    def edited(old, new):
        (pkg / "kd.py").write_text(_LOSSES.replace(old, new, 1))
        after = provenance.group_digests(*groups)
        return sorted(g for g in groups if after[g] != base[g])

    base = provenance.group_digests(*groups)
    assert edited("zip(fs, ft))\n\n\ndef at", "zip(fs, ft)) * 1.0\n\n\ndef at") == ["kd:spatial"]  # _spatial
    assert edited("2 if kind", "3 if kind") == ["kd:batch", "kd:spatial"]  # the shared similarity
    assert edited("raise ValueError(f)", "raise TypeError(f)") == ["kd:batch", "kd:spatial"]  # reached through it
    assert edited("square().mean()\n\n\ndef ofd", "abs().mean()\n\n\ndef ofd") == ["kd:at"]
    assert edited("torch.zeros_like(w)", "torch.ones_like(w)") == ["shared"]
    assert edited("REGISTRY = {", "def unused():\n    return 1\n\n\nREGISTRY = {") == []
    assert edited("# Tung & Mori", "# batch similarity") == []
    with pytest.raises(KeyError, match="REGISTRY has no entry 'spatail'; it has batch, spatial, at"):
        provenance.group_digests("kd:spatail")


def test_protocol_settings_and_the_noise_table():
    from matting_lib.studies import protocol_study as ps

    step = ps.protocol_settings("step-x2", seed=3)
    assert (step.steps, step.lr_decay, step.seed, step.lr_schedule) == (1000, "800", 3, "step")
    assert ps.protocol_settings("ema").ema_decay == 0.98 and ps.protocol_settings("cosine").lr_schedule == "cosine"
    rows = [
        {"protocol": "a", "seed": s, "steps": 500, "val_sad": v, "train_s": 100.0} for s, v in enumerate((5, 7))
    ] + [{"protocol": "b", "seed": s, "steps": 1000, "val_sad": v, "train_s": 200.0} for s, v in enumerate((5, 6))]
    a, b = ps.noise_table(rows)
    assert (
        a["val_sad"] == 6
        and a["val_sad_std"] == pytest.approx(2**0.5)
        and a["noise_at_equal_cost"] == pytest.approx(2**0.5)
    )
    assert b["noise_at_equal_cost"] == pytest.approx(0.5 ** 0.5 * 2 ** 0.5)  # half the seeds for the same steps
    assert "| b | 1000 | 2 |" in ps.table_markdown([a, b])


def test_protocol_paired_table_is_scipys_t_interval_on_the_per_seed_log_ratios():
    import math

    from scipy import stats

    from matting_lib.studies import protocol_study as ps

    students = [{"protocol": "a", "seed": s, "val_sad": v} for s, v in enumerate((5.0, 8.0, 6.0, 7.0))]
    kd = [{"protocol": "a", "seed": s, "val_sad": v} for s, v in enumerate((4.0, 6.0, 5.4))]  # seed 3 unfinished
    (row,) = ps.paired_table(students, kd)
    d = [math.log(4 / 5), math.log(6 / 8), math.log(5.4 / 6)]
    mean = sum(d) / 3
    lo, hi = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(d))
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(math.exp(mean) - 1)
    assert (row["low"], row["high"]) == pytest.approx((math.exp(lo) - 1, math.exp(hi) - 1))
    assert row["half_width"] == pytest.approx((hi - lo) / 2)
    assert row["std"] == pytest.approx(stats.tstd([4 / 5, 6 / 8, 5.4 / 6]))  # what the protocol rules compare
    # symmetric: the reverse pairing gives the reciprocal ratio and the mirrored interval
    (back,) = ps.paired_table(kd, [r for r in students if r["seed"] < 3])
    assert (back["mean"] + 1) * (row["mean"] + 1) == pytest.approx(1)
    assert (back["low"] + 1) * (row["high"] + 1) == pytest.approx(1)
    assert f"| a | 3 | {100 * (math.exp(mean) - 1):+.1f} % [" in ps.paired_markdown([row], "spatial+channel")
    assert "| protocol | seeds | spatial+channel vs spatial: change [95 % interval, log ratio] |" in ps.paired_markdown(
        [row], "spatial+channel", "spatial")


def test_protocol_study_tables_in_the_docs_are_the_commands_output_on_the_committed_runs():
    """docs/calibration.md shows what python -m matting_lib.protocol_study prints for the per-run CSV files it
    wrote: docs/protocol_study.csv (the no-KD student), docs/protocol_study_kd.csv (spatial+channel) and
    docs/protocol_study_kd_spatial.csv (spatial), each distilled one paired with the no-KD runs of the same protocol
    and seed, and spatial+channel paired with spatial."""
    from conftest import REPO

    from matting_lib.studies import protocol_study as ps

    page = (REPO / "docs" / "calibration.md").read_text(encoding="utf-8")
    for name in ("protocol_study.csv", "protocol_study_kd.csv", "protocol_study_kd_spatial.csv"):
        rows = ps.read_rows(REPO / "docs" / name)
        table = ps.noise_table(rows)
        same = [t["protocol"] for t in table if t["steps"] == ps.BASE.steps]
        text = ps.table_markdown(table) + "\n" + ps.seed_effect_sentence(ps.seed_effect(rows, same))
        if rows[0].get("config", "student") != "student":
            students = ps.read_rows(REPO / "docs" / "protocol_study.csv")
            text += "\n" + ps.paired_markdown(ps.paired_table(students, rows), rows[0]["config"])
        assert text in page, f"docs/calibration.md: regenerate the table of docs/{name}"
    spatial, both = (ps.read_rows(REPO / "docs" / f"protocol_study_kd{x}.csv") for x in ("_spatial", ""))
    pair = ps.paired_markdown(ps.paired_table(spatial, both), "spatial+channel", "spatial")
    assert pair in page, "docs/calibration.md: regenerate the spatial+channel vs spatial table"
    assert "--config spatial+channel --against spatial" in page
