"""One-call evaluation of a checkpoint on a Composition-1k-layout folder (``python -m matting_lib.evaluation``),
and the synthetic generator's test split written alone."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from fixtures_adobe import make_tiny_adobe

from matting_lib.data.compositing import list_test_items
from matting_lib.data.layout import DatasetLayout, read_rgb, read_trimap
from matting_lib.data.synthetic import generate_dataset
from matting_lib.inference import evaluation as ev
from matting_lib.metrics import evaluate_alpha
from matting_lib.networks.checkpoints import save_checkpoint
from matting_lib.networks.models import build_student


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_student(0.125).eval()


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt", model=model, config={}, epoch=0, step=0,
                           metrics={})


@pytest.fixture(scope="module")
def test_only(tmp_path_factory):
    """The smoke preset's test split alone: 3 foregrounds (hair, hair, net) × 2 backgrounds."""
    return generate_dataset(tmp_path_factory.mktemp("syn") / "smoke-test", seed=0, preset="smoke", progress=False,
                            splits=("test",))


def test_test_split_alone_is_the_full_dataset_s_test_split(test_only, tmp_path):
    full = generate_dataset(tmp_path / "full", seed=0, preset="smoke", progress=False)
    full_files = json.loads((full / "manifest.json").read_text())["files"]
    man = json.loads((test_only / "manifest.json").read_text())
    assert man["splits"] == ["test"] and man["complete"]
    assert "splits" not in json.loads((full / "manifest.json").read_text())  # the full manifest is unchanged
    expected = {rel: d for rel, d in full_files.items() if "Training_set" not in rel and "train2014" not in rel}
    assert man["files"] == expected  # same files, same bytes, and no training file
    assert not (test_only / "train2014").exists()
    # the same folder asked for the full dataset is another dataset: refused, naming the difference
    with pytest.raises(ValueError, match="splits"):
        generate_dataset(test_only, seed=0, preset="smoke", progress=False)
    with pytest.raises(ValueError, match="splits"):
        generate_dataset(tmp_path / "bad", seed=0, preset="smoke", progress=False, splits=("val",))


def test_cli_scores_a_folder_with_a_per_category_breakdown(test_only, ckpt, model, tmp_path, capsys):
    out = tmp_path / "res" / "metrics.csv"
    assert ev.main(["--checkpoint", str(ckpt), "--data", str(test_only), "--out", str(out), "--device", "cpu",
                    "--workers", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    summary = json.loads(out.with_name("metrics.csv.summary.json").read_text())
    assert len(rows) == 6 and summary["count"] == 6  # the composites were built on the way
    assert {r["category"] for r in rows} == {"hair", "net"}
    assert summary["categories"]["hair"]["count"] == 4 and summary["categories"]["net"]["count"] == 2
    for cat, group in summary["categories"].items():
        assert group["sad"] == pytest.approx(np.mean([float(r["sad"]) for r in rows if r["category"] == cat]))
    assert "hair" in printed and "net" in printed and "all" in printed
    # one image scored independently: prediction in memory, the per-image metric
    item = list_test_items(DatasetLayout.for_root(test_only))[0]
    pred = ev.predict_alpha(model, read_rgb(item.image_path), read_trimap(item.trimap_path))
    direct = evaluate_alpha(pred, read_trimap(item.alpha_path), read_trimap(item.trimap_path))
    row = next(r for r in rows if r["name"] == f"{item.name}.png")
    assert float(row["sad"]) == pytest.approx(direct["sad"], rel=1e-6)
    assert float(row["conn"]) == pytest.approx(direct["conn"], rel=1e-6)


def test_existing_outputs_are_never_replaced_without_force(test_only, ckpt, tmp_path, capsys):
    out = tmp_path / "metrics.csv"
    out.write_text("earlier results\n")
    args = ["--checkpoint", str(ckpt), "--data", str(test_only), "--out", str(out), "--device", "cpu", "--workers",
            "0", "--no-progress"]
    assert ev.main(args) == 1
    assert "exists" in capsys.readouterr().err and out.read_text() == "earlier results\n"
    # a predictions folder need not be empty: other files are kept and not scored
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "notes.png").write_bytes(b"not a prediction of this set")
    assert ev.main([*args, "--force", "--pred-dir", str(preds)]) == 0
    assert len(list(preds.glob("*!*.png"))) == 6 and (preds / "notes.png").read_bytes().startswith(b"not")
    assert json.loads(out.with_name("metrics.csv.summary.json").read_text())["count"] == 6
    # the same predictions again need --force
    assert ev.main([a for a in args if a != "--out" and a != str(out)] + ["--pred-dir", str(preds)]) == 1
    assert "already holds 6 prediction(s)" in capsys.readouterr().err


def test_official_adobe_names_give_categories_and_bad_input_is_named(ckpt, tmp_path, capsys):
    root = make_tiny_adobe(tmp_path / "adobe", n_test_fg=3)  # lace, glass (ball), hair (beach) by the kinds table
    res = ev.evaluate_checkpoint(ckpt, root, device="cpu", workers=0, progress=False)
    assert res["count"] == 6 and set(res["categories"]) == {"lace", "glass", "hair"}
    assert ev.foreground_categories(["my_photo.png", "other.png"]) is None  # no name gives one: no breakdown
    assert ev.main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(root)]) == 1
    assert "missing.pt" in capsys.readouterr().err
    assert ev.main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "matting_lib.evaluation", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--checkpoint" in out.stdout and "--data" in out.stdout


def test_an_onnx_export_scores_like_its_checkpoint(test_only, ckpt, model, tmp_path):
    from matting_lib.inference.export import export_onnx

    onnx_path = export_onnx(model, tmp_path / "student.onnx")
    a = ev.evaluate_checkpoint(ckpt, test_only, device="cpu", workers=0, progress=False)
    b = ev.evaluate_checkpoint(onnx_path, test_only, workers=0, progress=False)
    assert b["count"] == 6
    for key in ("sad", "mse", "grad", "conn"):
        assert b["mean"][key] == pytest.approx(a["mean"][key], abs=1e-4)


def test_an_altered_test_composite_is_named_and_never_scored(ckpt, tmp_path, capsys):
    """merged/manifest.json records each composite's SHA-256: a composite changed afterwards is refused by name
    before the checkpoint is loaded, and nothing of the dataset is touched; deleted, it is composited again."""
    import cv2

    from matting_lib.data.compositing import build_test_set

    data = generate_dataset(tmp_path / "data", seed=0, preset="smoke", progress=False, splits=("test",))
    items = build_test_set(DatasetLayout.for_root(data), progress=False)
    altered = items[1].image_path
    pixels = cv2.imread(str(altered))
    pixels[0, 0] = 255 - pixels[0, 0]  # one pixel retouched, saved losslessly
    cv2.imwrite(str(altered), pixels)
    before = {p: p.read_bytes() for p in altered.parent.iterdir()}
    args = ["--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "scores.csv"), "--device", "cpu",
            "--workers", "0", "--no-progress"]
    assert ev.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"python -m matting_lib.evaluation: error: 1 of 6 test composite(s) in {altered.parent} are "
                          f"not the ones composited from this dataset (their SHA-256 differs from manifest.json): "
                          f"{altered.name}. They were changed afterwards, so their scores would not be the test "
                          f"set's; nothing was scored. Delete them to have them composited again")
    assert {p: p.read_bytes() for p in altered.parent.iterdir()} == before  # nothing of the dataset changed
    assert not (tmp_path / "scores.csv").exists()
    altered.unlink()  # as the message says: composited again, then scored
    assert ev.main(args) == 0
    assert altered.read_bytes() != before[altered] and len(list(csv.DictReader((tmp_path / "scores.csv").open()))) == 6
    (altered.parent / "manifest.json").unlink()  # composites made by other code, one of them missing
    altered.unlink()
    assert ev.main([*args, "--force"]) == 1
    err = capsys.readouterr().err
    assert (f"{altered.parent} holds 5 of the 6 test composites but no manifest.json (they were made by other code) "
            f"and lacks 1 (e.g. {altered.name}); nothing is composited into it") in err
    assert "overwrite=True" not in err and not altered.exists()


def test_cli_names_its_options_and_prints_its_errors_and_warnings_on_one_line(ckpt, test_only, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ev.main(["--checkpoint", str(ckpt), "--data", str(test_only), "--workers", "-1"])
    assert exit_.value.code == 2
    assert "python -m matting_lib.evaluation: error: argument --workers: must be 0 or more (0 or 1: in this " \
           "process), got -1" in capsys.readouterr().err
    pred = tmp_path / "pred"
    pred.mkdir()
    items = list_test_items(DatasetLayout.for_root(test_only))
    (pred / f"{items[0].name}.png").write_bytes(b"earlier prediction")
    assert ev.main(["--checkpoint", str(ckpt), "--data", str(test_only), "--pred-dir", str(pred)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m matting_lib.evaluation: error: ") and "pass --force (force=True) to replace" in err
    assert "force=True (--force)" not in err
