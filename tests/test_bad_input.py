"""Nothing a user gives is lost: outputs never land in a dataset's inputs, on a command's inputs or over an existing
file without --force (``matting_lib.data.output_safety``); a checkpoint of the wrong kind is refused where a teacher or
a student is expected; bad values, full disks and read-only folders end in one clear message, no traceback. The
messages listed in docs/bad_input.md are checked against the real ones here (:func:`test_docs_list_the_messages`)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO

from matting_lib import cpu_env
from matting_lib.data.layout import LayoutError, check_image_pixels
from matting_lib.data.output_safety import ProtectedOutputError, check_output, check_output_folder, explain_os_error
from matting_lib.distillation import distill
from matting_lib.inference import evaluation, predict
from matting_lib.metrics import MetricsInputError
from matting_lib.metrics import folder as metrics_folder
from matting_lib.networks import checkpoints
from matting_lib.networks.checkpoints import CheckpointError, save_checkpoint
from matting_lib.networks.models import build_student, build_teacher
from matting_lib.pipeline import cli as pipeline
from matting_lib.pipeline.runlock import RunLock
from matting_lib.reporting import explorer
from matting_lib.studies import calibration
from matting_lib.training.run import load_teacher
from matting_lib.training.student import DistillRunParams

DOC = (REPO / "docs" / "bad_input.md").read_text(encoding="utf-8")


def _fake_dataset(root):
    """The folders of an Adobe-layout dataset (enough for the output rule), with one file in each."""
    paths = {"alpha": root / "Combined_Dataset" / "Test_set" / "Adobe-licensed images" / "alpha" / "a.png",
             "merged": root / "Composition-1k" / "merged" / "bg!a!0!0.png",
             "bg": root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "bg.jpg", "manifest": root / "manifest.json"}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"the only copy")
    return paths


def _normalise(message: str, **names) -> str:
    """``message`` with each path given replaced by its placeholder (longest first), as docs/bad_input.md writes it."""
    for placeholder, path in sorted(names.items(), key=lambda kv: -len(str(kv[1]))):
        message = message.replace(str(path), placeholder)
    return message


def _message(call, *args, **kwargs) -> str:
    with pytest.raises(Exception) as err:
        call(*args, **kwargs)
    return str(err.value)


# ------------------------------------------------------------------------------------------ the output rule
def test_nothing_is_written_into_a_dataset_or_onto_an_input_force_or_not(tmp_path):
    data = tmp_path / "data"
    files = _fake_dataset(data)
    for target in (files["alpha"], files["merged"], files["alpha"].parent / "new.csv", files["bg"], files["manifest"]):
        for force in (False, True):  # the dataset is found above the output, and also when given as --data
            with pytest.raises(ProtectedOutputError, match="nothing is written into a dataset's inputs"):
                check_output(target, force=force)
            with pytest.raises(ProtectedOutputError, match="nothing is written into a dataset's inputs"):
                check_output(target, datasets=[data], force=force)
    with pytest.raises(ProtectedOutputError, match="merged, the test composites of the dataset"):
        check_output_folder(files["merged"].parent)
    check_output(data / "results" / "m.csv")  # beside the inputs is fine
    check_output_folder(data / "predictions")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"photo")
    gt = tmp_path / "G"
    gt.mkdir()
    (gt / "im0.png").write_bytes(b"gt")
    with pytest.raises(ProtectedOutputError, match="is the input"):
        check_output(tmp_path / "." / "photo.png", inputs=[photo], force=True)
    with pytest.raises(ProtectedOutputError, match="is inside the input folder"):
        check_output(gt / "im0.png", inputs=[gt], force=True)
    with pytest.raises(FileExistsError, match=r"exists; pass --force \(force=True\) to replace it"):
        check_output(photo)
    assert check_output(photo, force=True) == photo  # not an input here: replaced with force
    assert [p.read_bytes() for p in files.values()] == [b"the only copy"] * 4


def test_metrics_never_writes_into_its_inputs_and_needs_force_for_an_existing_csv(tmp_path, capsys):
    tri = np.zeros((8, 8), np.uint8)
    tri[2:6, 2:6] = 128
    for d in ("P", "G", "T"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "im0.png"), tri)
    gt_bytes = (tmp_path / "G" / "im0.png").read_bytes()
    base = ["--pred", str(tmp_path / "P"), "--gt", str(tmp_path / "G"), "--trimap", str(tmp_path / "T"),
            "--no-progress", "--workers", "0"]
    assert metrics_folder.main([*base, "--out", str(tmp_path / "G" / "im0.png"), "--force"]) == 2
    assert "is inside the input folder" in capsys.readouterr().err
    assert (tmp_path / "G" / "im0.png").read_bytes() == gt_bytes
    (tmp_path / "old.csv").write_text("earlier results\n")
    assert metrics_folder.main([*base, "--out", str(tmp_path / "old.csv")]) == 2
    assert "old.csv exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "old.csv").read_text() == "earlier results\n"
    assert metrics_folder.main([*base, "--out", str(tmp_path / "old.csv"), "--force"]) == 0
    assert next(csv.DictReader((tmp_path / "old.csv").open()))["name"] == "im0.png"
    assert metrics_folder.main(["--pred", str(tmp_path / "G"), "--gt", str(tmp_path / "G"), "--trimap",
                                str(tmp_path / "T"), "--no-progress"]) == 2
    assert "is the ground-truth folder" in capsys.readouterr().err


def test_metrics_speaks_in_its_options_and_prints_warnings_on_one_line(tmp_path, capsys):
    tri = np.zeros((8, 8), np.uint8)
    tri[2:6, 2:6] = 128
    for d in ("P", "G", "T"):
        (tmp_path / d).mkdir()
        for name in ("im0.png", "im1.png") if d != "P" else ("im0.png",):
            cv2.imwrite(str(tmp_path / d / name), tri)
    base = ["--pred", str(tmp_path / "P"), "--gt", str(tmp_path / "G"), "--trimap", str(tmp_path / "T"),
            "--no-progress"]
    assert metrics_folder.main([*base, "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert err == ("python -m matting_lib.metrics: warning: 1 ground-truth file(s) have no prediction (e.g. im1); the "
                   "means cover the 1 predictions only\n")  # one line: no file:line, no category, no source line
    assert metrics_folder.main([*base, "--workers", "0", "--layout", "composition1k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m matting_lib.metrics: error: ") and "use --layout same_name" in err
    with pytest.raises(SystemExit) as exit_:
        metrics_folder.main([*base, "--workers", "-1"])
    assert exit_.value.code == 2
    assert "argument --workers: must be 0 or more (0 or 1: in this process), got -1" in capsys.readouterr().err


def test_evaluation_refuses_the_dataset_s_composites_as_prediction_folder(tmp_path, capsys):
    files = _fake_dataset(tmp_path / "data")
    for extra in ([], ["--force"]):  # refused before the checkpoint is even looked at
        assert evaluation.main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path / "data"),
                                "--pred-dir", str(files["merged"].parent), *extra]) == 1
        assert "the test composites of the dataset" in capsys.readouterr().err
    assert files["merged"].read_bytes() == b"the only copy"


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "student.pt", model=build_student(0.125), config={},
                           epoch=0, step=0, metrics={})


def test_ship_and_export_follow_the_same_rule(tmp_path, student_ckpt, capsys):
    from matting_lib.inference import export

    files = _fake_dataset(tmp_path / "data")
    checkpoints.write_manifest(student_ckpt, steps=0)
    assert checkpoints.main(["ship", str(student_ckpt), str(files["alpha"].with_suffix(".pt")), "--force"]) == 1
    assert "nothing is written into a dataset's inputs" in capsys.readouterr().err
    assert export.main(["--checkpoint", str(student_ckpt), "--out", str(files["merged"].parent / "m.onnx")]) == 1
    assert "nothing is written into a dataset's inputs" in capsys.readouterr().err
    assert export.main(["--checkpoint", str(student_ckpt), "--out", str(student_ckpt), "--force"]) == 1
    assert "is the input" in capsys.readouterr().err
    assert not (files["alpha"].with_suffix(".pt")).exists() and not (files["merged"].parent / "m.onnx").exists()


# ------------------------------------------------------------------------------------------ checkpoint kinds
def test_a_student_is_refused_where_a_teacher_is_expected(tmp_path, student_ckpt):
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.training.teacher import TeacherParams, get_teacher

    with pytest.raises(CheckpointError, match=rf"{re.escape(str(student_ckpt))} holds a student network "
                                              r"\(76,991 parameters at width 0.125\), but a teacher is expected"):
        checkpoints.load_model(student_ckpt, kind="teacher")
    with pytest.raises(CheckpointError, match="but a teacher is expected"):  # notebook 02, load mode
        get_teacher(TeacherParams(mode="load", shipped_checkpoint=str(student_ckpt)), DatasetLayout(tmp_path))
    with pytest.raises(CheckpointError, match="but a teacher is expected"):  # notebooks 04 and 05
        explorer.load_models({"teacher": student_ckpt})
    student, teacher = build_student(0.125), build_teacher(0.125)
    with pytest.raises(CheckpointError, match="DistillObjective's teacher holds a student network"):
        distill.DistillObjective(build_student(0.125), student, distill.PAPER_CONFIGS["spatial"])
    with pytest.raises(CheckpointError, match="DistillObjective's student holds a teacher network"):
        distill.DistillObjective(teacher, build_teacher(0.125), distill.PAPER_CONFIGS["spatial"])
    teacher_ckpt = save_checkpoint(tmp_path / "t.pt", model=teacher, config={}, epoch=0, step=0, metrics={})
    with pytest.raises(CheckpointError, match="holds a teacher network .* but a student is expected"):
        checkpoints.load_model(teacher_ckpt, kind="student")
    assert checkpoints.load_model(teacher_ckpt, kind="teacher").arch["kind"] == "teacher"
    with pytest.raises(CheckpointError, match="but a teacher is expected"):  # notebook 03, through build_training
        load_teacher(student_ckpt, distill.PAPER_CONFIGS["spatial"])


class _Payload:
    """Pickles as a call of os.system: loading it unsafely would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_asks_to_run_code_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "model": _Payload(marker)}, evil)
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "tri.png"), np.full((40, 40), 128, np.uint8))
    assert predict.main([str(tmp_path / "photo.png"), str(tmp_path / "tri.png"), "--checkpoint", str(evil),
                         "--out", str(tmp_path / "a.png"), "--device", "cpu"]) == 1
    messages = {"predict": capsys.readouterr().err}
    for name, load in (
        ("load_any_model", checkpoints.load_any_model),
        ("load_dim_pytorch", checkpoints.load_dim_pytorch),
        ("load_checkpoint", checkpoints.load_checkpoint),
    ):
        with pytest.raises(CheckpointError) as err:
            load(evil)
        messages[name] = str(err.value)
    for name, text in messages.items():
        assert "posix.system" in text or "os.system" in text, name
        assert "weights_only" not in text and "weights_only=False" not in text, name  # torch's advice, not repeated
        assert "trust" not in text and "Re-running" not in text, name
    assert "would run code" in messages["predict"] and "nothing in it was called" in messages["predict"]
    assert "nothing in it ran" in messages["load_checkpoint"]
    assert not marker.exists() and not (tmp_path / "a.png").exists()


def test_negative_seeds_are_refused_by_the_parameter_checks():
    from matting_lib.data.dataset_report import DataParams
    from matting_lib.training.teacher import TeacherParams

    for cls, name in ((DistillRunParams, "seed"), (DistillRunParams, "split_seed"),
                      (TeacherParams, "seed"), (DataParams, "seed")):
        with pytest.raises(ValueError, match=f"^{name} must be >= 0, got -3$"):
            cls(**{name: -3})


# ------------------------------------------------------------------------------------------ predict
@pytest.fixture
def photo(tmp_path, student_ckpt):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    for name, value in (("empty", 0), ("full", 255)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((40, 48), value, np.uint8))

    def run(*extra):
        return predict.main([str(tmp_path / "photo.png"), *map(str, extra), "--checkpoint", str(student_ckpt),
                             "--device", "cpu"])
    return run


def test_predict_warns_that_an_empty_or_full_mask_gives_a_constant_matte(photo, tmp_path, capsys):
    for mask, value, words in (("empty", 0, "marks no foreground pixel (all 0)"),
                               ("full", 255, "marks every pixel as foreground")):
        out = tmp_path / f"alpha-{mask}.png"
        assert photo("--mask", tmp_path / f"{mask}.png", "--out", out) == 0
        err = capsys.readouterr().err
        assert f"warning: --mask {tmp_path / f'{mask}.png'} {words}" in err
        assert f"the matte will be all {value}" in err
        assert (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) == value).all()  # what the warning said


def test_predict_refuses_a_photo_above_the_pixel_limit_before_decoding(photo, tmp_path, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imread", never)
    monkeypatch.setattr(cv2, "imdecode", never)
    assert photo(tmp_path / "full.png", "--out", tmp_path / "a.png", "--max-pixels", 1000) == 1
    err = capsys.readouterr().err
    assert "photo.png is 48×40 = 1,920 pixels, above the limit of 1,000 (--max-pixels); it was not decoded" in err
    assert not (tmp_path / "a.png").exists()
    # the default limit: a valid 12,000 × 12,000 PNG (a header that says so is all the check reads)
    huge = tmp_path / "huge.png"
    ok, buf = cv2.imencode(".png", np.zeros((1, 1), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = (12000).to_bytes(4, "big") * 2  # IHDR width and height
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    huge.write_bytes(bytes(data))
    with pytest.raises(LayoutError, match=r"is 12000×12000 = 144,000,000 pixels, above the limit of 40,000,000"):
        check_image_pixels(huge, predict.DEFAULT_MAX_PIXELS, what="photo")
    assert "--max-pixels N" in predict.build_parser().format_help()


@pytest.fixture
def matte(tmp_path, student_ckpt):
    """A photo (40×48), its trimap and binary mask; ``run(image, *args)`` calls predict on ``tmp_path/image``."""
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    tri = np.zeros((40, 48), np.uint8)
    tri[8:32, 10:38] = 128
    tri[14:26, 16:32] = 255
    mask = np.where(tri == 255, 255, 0).astype(np.uint8)
    mask[8:32, 10:38] = 255
    cv2.imwrite(str(tmp_path / "tri.png"), tri)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)

    def run(image, *extra):
        return predict.main([str(tmp_path / image), *map(str, extra), "--checkpoint", str(student_ckpt),
                             "--device", "cpu"])
    return run, tri, mask


def test_predict_refuses_a_truncated_or_damaged_photo_trimap_or_mask(matte, tmp_path, capfd):
    run, tri, mask = matte
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.imread(str(tmp_path / "photo.png")))
    for cut, whole in (("cut.jpg", "photo.jpg"), ("cut.png", "photo.png"), ("cut-tri.png", "tri.png"),
                       ("cut-mask.png", "mask.png")):
        data = (tmp_path / whole).read_bytes()
        (tmp_path / cut).write_bytes(data[:len(data) * 2 // 3])
    flipped = bytearray((tmp_path / "photo.png").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # one damaged byte inside the image data: the chunk's checksum fails
    (tmp_path / "flipped.png").write_bytes(bytes(flipped))
    cases = {("cut.jpg", "tri.png"): "photo {} is truncated or damaged: the JPEG file cannot be decoded to its end",
             ("cut.png", "tri.png"): "photo {} is truncated or damaged: the PNG file cannot be decoded to its end",
             ("flipped.png", "tri.png"): "photo {} is truncated or damaged",
             ("photo.png", "cut-tri.png"): "trimap {} is truncated or damaged"}
    for (image, trimap), words in cases.items():
        assert run(image, tmp_path / trimap, "--out", tmp_path / "a.png") == 1
        err = capfd.readouterr().err
        bad = tmp_path / (trimap if trimap.startswith("cut") else image)
        assert words.format(bad) in err and "Copy or export it again" in err, err
        assert "Premature end of JPEG file" not in err and "libpng" not in err  # OpenCV never decoded it
    assert run("photo.png", "--mask", tmp_path / "cut-mask.png", "--out", tmp_path / "a.png") == 1
    assert f"mask {tmp_path / 'cut-mask.png'} is truncated or damaged" in capfd.readouterr().err
    assert not (tmp_path / "a.png").exists()
    assert run("photo.jpg", tmp_path / "tri.png", "--out", tmp_path / "a.png") == 0  # the intact JPEG is matted


def test_predict_reads_a_soft_or_noisy_mask_at_half_and_says_so(matte, tmp_path, capsys):
    run, tri, mask = matte
    assert run("photo.png", "--mask", tmp_path / "mask.png", "--out", tmp_path / "clean.png") == 0
    assert "warning" not in capsys.readouterr().err
    clean = cv2.imread(str(tmp_path / "clean.png"), cv2.IMREAD_UNCHANGED)
    noise = np.random.default_rng(0).integers(0, 3, mask.shape)  # 0-2 levels, as a JPEG leaves them
    noisy = np.where(mask == 255, 255 - noise, noise).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noisy.png"), noisy)
    assert run("photo.png", "--mask", tmp_path / "noisy.png", "--out", tmp_path / "noisy-a.png") == 0
    err = capsys.readouterr().err
    share = ((noisy > 0) & (noisy < 255)).mean()
    assert (f"warning: --mask {tmp_path / 'noisy.png'} is not binary: {share:.1%} of its pixels lie between 0 and "
            f"255 (values 1 to 254: soft edges or noise, e.g. from JPEG); it was read as foreground where it is 128 "
            f"or more") in err
    assert (cv2.imread(str(tmp_path / "noisy-a.png"), cv2.IMREAD_UNCHANGED) == clean).all()  # not 83 % unknown
    cv2.imwrite(str(tmp_path / "mask01.png"), (mask > 0).astype(np.uint8))  # a 0/1 mask is binary
    assert run("photo.png", "--mask", tmp_path / "mask01.png", "--out", tmp_path / "m01.png") == 0
    assert "warning" not in capsys.readouterr().err
    assert (cv2.imread(str(tmp_path / "m01.png"), cv2.IMREAD_UNCHANGED) == clean).all()
    assert run("photo.png", "--mask", tmp_path / "tri.png", "--out", tmp_path / "t.png") == 1
    assert (f"--mask {tmp_path / 'tri.png'} holds exactly 0, 128 and 255: it is a trimap, not a mask; give it as the "
            f"second argument (TRIMAP) instead of --mask") in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()


def test_predict_reads_a_0_1_2_label_trimap_and_refuses_a_0_1_mask_as_trimap(matte, tmp_path, capsys):
    run, tri, mask = matte
    assert run("photo.png", tmp_path / "tri.png", "--out", tmp_path / "ref.png") == 0
    ref = cv2.imread(str(tmp_path / "ref.png"), cv2.IMREAD_UNCHANGED)
    capsys.readouterr()
    for unknown, fg in ((1, 2), (2, 1)):  # either order of the labels: the one along the background is unknown
        labels = np.select([tri == 128, tri == 255], [unknown, fg], 0).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "labels.png"), labels)
        out = tmp_path / f"labels-{unknown}.png"
        assert run("photo.png", tmp_path / "labels.png", "--out", out) == 0
        assert (f"warning: trimap {tmp_path / 'labels.png'} holds the labels 0, 1 and 2, not 0 / 128 / 255; it was "
                f"read as 0 = background, {unknown} = unknown (the label along the background), {fg} = foreground") \
            in capsys.readouterr().err
        assert (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) == ref).all()
    cv2.imwrite(str(tmp_path / "mask01.png"), (mask > 0).astype(np.uint8))
    assert run("photo.png", tmp_path / "mask01.png", "--out", tmp_path / "x.png") == 1
    assert (f"trimap {tmp_path / 'mask01.png'} holds only 0 and 1: a binary mask, not a trimap (0 = background, "
            f"128 = unknown, 255 = foreground); give it as --mask {tmp_path / 'mask01.png'}") in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_predict_refuses_a_fifo_without_opening_it_and_before_importing_torch(matte, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # no writer: opening it for reading would block forever
    code = ("import sys; from matting_lib.inference import predict; "
            "rc = predict.main(sys.argv[1:]); print(rc, 'torch' in sys.modules)")
    for args in (
        [tmp_path / "pipe.png", tmp_path / "tri.png"],
        [tmp_path / "photo.png", tmp_path / "pipe.png"],
        [tmp_path / "photo.png", "--mask", tmp_path / "pipe.png"],
        [tmp_path / "nope.png", tmp_path / "tri.png"],
        [tmp_path / "photo.png", tmp_path / "tri.png", "--checkpoint", tmp_path / "pipe.png"],
    ):
        res = subprocess.run([sys.executable, "-c", code, *map(str, args), "--out", str(tmp_path / "a.png")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
        assert res.stdout.split() == ["1", "False"], (args, res.stdout, res.stderr)  # refused, torch never loaded
        assert res.stderr.startswith("python -m matting_lib.predict: error: ")
        assert ("pipe.png is a named pipe (FIFO), not a regular file; it was not opened" in res.stderr
                or "nope.png: file is missing" in res.stderr), res.stderr
    assert not (tmp_path / "a.png").exists()


def test_predict_refuses_a_photo_too_large_for_the_memory_before_decoding(matte, tmp_path, capsys, monkeypatch,
                                                                          student_ckpt):
    run, *_ = matte
    arch = checkpoints.load_model(student_ckpt).arch

    def never(*a, **k):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(predict, "available_memory", lambda: 100_000_000)
    monkeypatch.setattr(cv2, "imread", never)
    monkeypatch.setattr(cv2, "imdecode", never)
    assert run("photo.png", tmp_path / "tri.png", "--out", tmp_path / "a.png") == 1
    need = predict.memory_needed(arch, 48 * 40)
    assert (f"photo {tmp_path / 'photo.png'} has 1,920 pixels: the student network (width 0.125) needs about "
            f"{need / 1e9:.1f} GB of memory for it, but 0.1 GB is available; it was not decoded. Downscale it to at "
            f"most about 0 pixels, or free memory") in capsys.readouterr().err
    monkeypatch.undo()
    from matting_lib.inference import evaluation as ev

    def exhausted(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] . DefaultCPUAllocator: not enough memory: you tried "
                           "to allocate 11000000000 bytes.")

    monkeypatch.setattr(ev, "predict_alpha", exhausted)  # the estimate fell short: still one message
    assert run("photo.png", tmp_path / "tri.png", "--out", tmp_path / "a.png") == 1
    err = capsys.readouterr().err
    assert f"ran out of memory while matting {tmp_path / 'photo.png'}" in err and "downscale the photo" in err
    assert "Traceback" not in err and not (tmp_path / "a.png").exists()
    with pytest.raises(SystemExit) as exit_:  # above what OpenCV decodes: refused by the option itself
        predict.main([str(tmp_path / "photo.png"), str(tmp_path / "tri.png"), "--out", str(tmp_path / "a.png"),
                      "--max-pixels", str(2**31)])
    assert exit_.value.code == 2
    assert "argument --max-pixels: must be at most 1,073,741,824 (the most OpenCV decodes" in capsys.readouterr().err
    shipped = checkpoints.load_model(predict.SHIPPED_STUDENT).arch  # measured 0.15-0.19 GB per million pixels
    assert 0.15e9 < predict.memory_needed(shipped, 10**6) - predict.MEMORY_FIXED < 0.3e9


# ------------------------------------------------------------------------------------------ evaluation
def test_an_unreadable_ground_truth_keeps_the_scored_rows(tmp_path, student_ckpt):
    from matting_lib.data.compositing import build_test_set, list_test_items
    from matting_lib.data.layout import DatasetLayout
    from matting_lib.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", seed=0, preset="smoke", progress=False, splits=("test",))
    layout = DatasetLayout.for_root(data)
    build_test_set(layout, progress=False)
    bad = list_test_items(layout)[0].alpha_path  # one foreground's alpha: its 2 composites cannot be scored
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "res" / "metrics.csv"
    with pytest.raises(MetricsInputError) as err:
        evaluation.evaluate_checkpoint(student_ckpt, data, out_csv=out, device="cpu", workers=0, progress=False)
    assert f"2 of 6 image(s) could not be evaluated; the 4 scored row(s) are in {out}" in str(err.value)
    assert len(list(csv.DictReader(out.open()))) == 4
    summary = json.loads(out.with_name("metrics.csv.summary.json").read_text())
    assert summary["count"] == 4 and len(summary["failed"]) == 2 and bad.name in summary["failed"][0]["error"]
    with pytest.raises(MetricsInputError) as err:  # no --out: a kept file, not the deleted temporary folder
        evaluation.evaluate_checkpoint(student_ckpt, data, device="cpu", workers=0, progress=False)
    kept = Path(re.search(r"are in (\S+\.csv) \(pass --out", str(err.value))[1])
    assert kept.name.startswith("matting-eval-partial-") and len(list(csv.DictReader(kept.open()))) == 4
    kept.unlink()
    assert _normalise(str(err.value).splitlines()[0], CSV=kept) in DOC


# ------------------------------------------------------------------------------------------ pipeline and calibration
def test_pipeline_full_disk_read_only_and_file_runs_dir_end_in_one_message(tmp_path, capsys, monkeypatch,
                                                                          read_only_dir):
    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "run_job", disk_full)
    assert pipeline.main(["--profile", "smoke", "--runs-dir", str(tmp_path / "runs"), "--only", "results"]) == 1
    err = capsys.readouterr().err
    assert "run_all.sh: error: the disk is full: a write under" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("x")
    assert pipeline.main(["--profile", "smoke", "--runs-dir", str(tmp_path / "afile"), "--only", "results"]) == 2
    assert f"--runs-dir folder {tmp_path / 'afile' / 'smoke'} cannot be created: {tmp_path / 'afile'} is a file" in \
        capsys.readouterr().err
    assert pipeline.main(["--profile", "smoke", "--runs-dir", str(read_only_dir), "--only", "results"]) == 2
    assert f"the folder {read_only_dir} is read-only for this user" in capsys.readouterr().err
    assert not (read_only_dir / "smoke").exists()


def test_a_lock_file_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    from matting_lib.pipeline import runlock

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "pipeline.lock"))

    monkeypatch.setattr(runlock.os, "open", read_only)
    with pytest.raises(pipeline.PipelineError, match=r"cannot lock .*: Read-only file system .*give another "
                                                     r"--runs-dir"):
        RunLock(tmp_path).acquire()


def test_explain_os_error_says_what_to_do(tmp_path):
    full = explain_os_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.ipynb")), tmp_path)
    assert full.startswith(f"the disk is full: could not write {tmp_path / 'x.ipynb'} (") and "Free some space" in full
    assert "read-only file system" in explain_os_error(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert "permission denied" in explain_os_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path)


def _names_only_dataset(root):
    train = root / "Combined_Dataset" / "Training_set"
    train.mkdir(parents=True)
    (train / "training_fg_names.txt").write_text("a.png\n")
    (train / "training_bg_names.txt").write_text("b.jpg\n")
    return root


def test_calibration_bad_arguments_end_in_a_message(tmp_path, capsys):
    data = _names_only_dataset(tmp_path / "data")
    cases = {("curve", "--data", data, "--run-dir", tmp_path / "nowhere"): f"run folder {tmp_path / 'nowhere'} "
             f"does not exist",
             ("train", "--data", data, "--run-dir", tmp_path / "r", "--seed", "-3"): "seed must be >= 0, got -3",
             ("train", "--data", data, "--run-dir", tmp_path / "r", "--width", "-1"): "width and lr must be > 0",
             ("train", "--data", tmp_path / "none", "--run-dir", tmp_path / "r"): "training_fg_names.txt is missing",
             ("ship", "--data", data, "--run-dir", tmp_path / "nowhere", "--step", "1", "--out", tmp_path / "t.pt"):
             "does not exist"}
    for args, message in cases.items():
        assert calibration.main([str(a) for a in args]) == 1, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, args
    assert not (tmp_path / "r").exists()  # nothing written for a bad value


def test_protocol_study_checks_its_inputs_and_outputs_before_any_worker_starts(tmp_path, capsys):
    """protocol_study --out never writes into a dataset (its alpha PNG would become the figure) nor over a file
    without --force; --runs-dir never lies in a dataset; a missing dataset or teacher is named before any worker
    starts. Exit 1, one line, the user's files untouched."""
    from matting_lib.studies import protocol_study

    data = _names_only_dataset(tmp_path / "data")
    alpha = data / "Combined_Dataset" / "Training_set" / "Adobe-licensed images" / "alpha" / "a.png"
    alpha.parent.mkdir(parents=True)
    alpha.write_bytes(b"the only copy")
    (tmp_path / "old.csv").write_text("kept\n")
    base = ["--data", data, "--runs-dir", tmp_path / "runs", "--seeds", "2", "--protocols", "constant"]
    cases = [
        (["--out", alpha.with_suffix("")], f"--out {alpha.with_suffix('.csv')} is inside {data / 'Combined_Dataset'}"),
        (["--out", tmp_path / "old"], f"--out {tmp_path / 'old.csv'} exists; pass --force"),
        (["--runs-dir", data / "Combined_Dataset" / "runs"], f"--runs-dir {data / 'Combined_Dataset' / 'runs'} is "
                                                               f"inside {data / 'Combined_Dataset'}"),
        (["--data", tmp_path / "none"], "training_fg_names.txt is missing"),
        (["--config", "spatial", "--teacher", tmp_path / "none.pt"], f"checkpoint {tmp_path / 'none.pt'} does not "
                                                                       f"exist"),
    ]
    for extra, message in cases:
        assert protocol_study.main([str(a) for a in base + extra]) == 1, extra
        err = capsys.readouterr().err
        assert err.startswith("python -m matting_lib.protocol_study: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert alpha.read_bytes() == b"the only copy" and (tmp_path / "old.csv").read_text() == "kept\n"
    assert not (tmp_path / "runs").exists() and not (data / "Combined_Dataset" / "runs").exists()


def test_protocol_study_a_failing_worker_gives_one_message_and_leaves_no_half_made_run(tmp_path, capsys,
                                                                                       monkeypatch):
    """An error raised in a worker process (here after run.json was written, as a training that fails on its first
    step): one line naming the run, no chained tracebacks; the run folder it started holds nothing a rerun would
    take for a started run."""
    from matting_lib.studies import protocol_study

    def fails(data_dir, run, settings, progress=False):
        Path(run).mkdir(parents=True)
        (Path(run) / "run.json").write_text("{}")
        raise OSError(f"cannot read {data_dir}/fg/f0.png")

    monkeypatch.setattr(protocol_study, "train_run", fails)  # the workers are forked: they train with it
    data = _names_only_dataset(tmp_path / "data")
    rc = protocol_study.main([str(a) for a in ("--data", data, "--runs-dir", tmp_path / "runs", "--seeds", "2",
                                               "--protocols", "constant", "-j", "1")])
    err = capsys.readouterr().err
    run = tmp_path / "runs" / "constant-seed0"
    assert rc == 1 and err == (f"python -m matting_lib.protocol_study: error: run {run}"
                               f" failed: cannot read {data}/fg/f0.png; fix that and rerun the same command (finished "
                               f"runs are read back, interrupted ones resume)\n"), err
    assert not run.exists()


# ------------------------------------------------------------------------------------------ the CPU pin
def test_the_opencv_switch_is_pinned_only_where_the_cpu_has_avx512(monkeypatch):
    """OpenCV prints "Trying to disable unavailable CPU feature ... 'AVX512-SKX'" on every import where the CPU lacks
    AVX-512: there the pin leaves OPENCV_CPU_DISABLE out (nothing to disable); with AVX-512 it is set."""
    avx2 = {"sse4_2", "avx", "avx2", "fma"}
    monkeypatch.setattr(cpu_env, "cpu_flags", lambda: avx2)
    env: dict[str, str] = {}
    cpu_env.pin(env)
    assert "OPENCV_CPU_DISABLE" not in env and env["ATEN_CPU_CAPABILITY"] == "avx2" and cpu_env.is_pinned(env)
    monkeypatch.setattr(cpu_env, "cpu_flags", lambda: avx2 | set(cpu_env.OPENCV_AVX512_FLAGS))
    env = {}
    cpu_env.pin(env)
    assert env["OPENCV_CPU_DISABLE"] == "AVX512-SKX" and cpu_env.is_pinned(env)
    del env["OPENCV_CPU_DISABLE"]
    assert not cpu_env.is_pinned(env)


@pytest.mark.skipif(not cpu_env.supported(), reason="needs an x86-64 CPU with AVX2")
def test_opencv_under_the_pin_prints_nothing_on_import():
    env = {k: v for k, v in os.environ.items() if k not in cpu_env.PINNED_ENV}
    cpu_env.pin(env)
    out = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.getCPUFeaturesLine())"], env=env,
                         capture_output=True, text=True, check=True)
    assert "OPENCV" not in out.stderr, out.stderr  # no "Trying to disable unavailable CPU feature"
    if set(cpu_env.OPENCV_AVX512_FLAGS) <= cpu_env.cpu_flags():
        assert "AVX512-SKX?" in out.stdout, out.stdout  # OpenCV marks the feature it was told to leave unused


# ------------------------------------------------------------------------------------------ notebooks
@pytest.mark.slow
def test_notebook_03_refuses_a_negative_seed_and_a_student_teacher_before_writing(tmp_path, student_ckpt):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from matting_lib.data.synthetic import generate_dataset

    nb = REPO / "notebooks" / "03_distill.ipynb"
    common = {"runs_dir": str(tmp_path / "students"), "figures_dir": str(tmp_path / "figs"), "width": 0.125}
    with pytest.raises(PapermillExecutionError, match="seed must be >= 0, got -3"):
        pm.execute_notebook(str(nb), str(tmp_path / "a.ipynb"), cwd=str(REPO), kernel_name="python3",
                            progress_bar=False, parameters={**common, "seed": -3})
    assert not (tmp_path / "students").exists()
    data = generate_dataset(tmp_path / "data", seed=0, preset="smoke", progress=False)
    with pytest.raises(PapermillExecutionError, match=rf"{re.escape(str(student_ckpt))} holds a student network"):
        pm.execute_notebook(str(nb), str(tmp_path / "b.ipynb"), cwd=str(REPO), kernel_name="python3",
                            progress_bar=False, parameters={**common, "data_dir": str(data), "config": "at",
                                                            "teacher_checkpoint": str(student_ckpt), "crop_size": 64})
    assert not list((tmp_path / "students").rglob("run.json"))


# ------------------------------------------------------------------------------------------ the documented messages
def test_docs_list_the_messages(tmp_path, student_ckpt):
    """Each new message of docs/bad_input.md, as the code words it today (paths replaced by placeholders)."""
    from matting_lib.inference import export

    data = tmp_path / "data"
    files = _fake_dataset(data)
    gt = tmp_path / "G"
    gt.mkdir()
    names = {"DATA": data, "G": gt, "CKPT": student_ckpt, "X": tmp_path / "x.csv"}
    (tmp_path / "x.csv").write_text("")
    trimap0 = np.zeros((4, 4), np.uint8)
    labels = np.zeros((8, 8), np.uint8)
    labels[1:7, 1:7], labels[3:5, 3:5] = 1, 2
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    found = {
        "dataset": _message(check_output, files["alpha"].parent / "m.csv", force=True, what="--out"),
        "composites": _message(check_output_folder, files["merged"].parent, what="--pred-dir"),
        "input": _message(check_output, student_ckpt, inputs=[student_ckpt], force=True, what="--out"),
        "input folder": _message(check_output, gt / "im0.png", inputs=[gt], force=True, what="--out"),
        "exists": _message(check_output, tmp_path / "x.csv", what="--out"),
        "kind": _message(checkpoints.load_model, student_ckpt, kind="teacher"),
        "seed": _message(DistillRunParams, seed=-3),
        "mask empty": predict.known_region_warning(trimap0, mask="M", force_known=True),
        "mask full": predict.known_region_warning(trimap0 + 255, mask="M", force_known=True),
        "trimap no unknown": predict.known_region_warning(trimap0, mask=None, force_known=True),
        "disk full": explain_os_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path),
        "label trimap": predict.label_trimap(labels, "T")[1],
        "trimap as mask": _message(predict.mask_foreground, np.array([[0, 128, 255]], np.uint8), "M"),
        "mask as trimap": _message(predict.label_trimap, np.array([[0, 1]], np.uint8), "T"),
        "fifo": _message(predict.check_input_file, fifo, "photo").replace(str(fifo), "X"),
        "opset": _message(export.check_opset, 3),
        "interrupted": "run_all.sh: " + pipeline.interrupted_message({"teacher": "02_teacher.ipynb"}),
    }
    found = {k: _normalise(v, **names) for k, v in found.items()}
    found["disk full"] = re.sub(r"\d+ MiB free on \S+;", "N MiB free on D;", found["disk full"].replace(
        str(tmp_path), "D"))
    missing = {k: v for k, v in found.items() if v not in DOC}
    assert not missing, f"docs/bad_input.md does not hold these messages as the code words them: {missing}"
    assert "issue " not in DOC.lower()
