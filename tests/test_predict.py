"""Prediction of single images and folders, and the ``python -m matting_lib.predict`` command line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from matting_lib.data.datasets import make_input
from matting_lib.inference import evaluation as ev
from matting_lib.inference import predict
from matting_lib.networks import checkpoints
from matting_lib.networks.checkpoints import save_checkpoint
from matting_lib.networks.models import build_student


@dataclass
class Item:
    name: str
    image_path: Path
    alpha_path: Path
    trimap_path: Path


def _scene(h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    trimap = np.zeros((h, w), np.uint8)
    trimap[8:32, 10:40] = 128
    trimap[14:26, 18:32] = 255
    return image, trimap


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_student(0.125).eval()


def test_predict_alpha_forces_known_regions(model):
    image, trimap = _scene()
    alpha = ev.predict_alpha(model, image, trimap)
    assert alpha.dtype == np.uint8 and alpha.shape == trimap.shape
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 255).all()
    raw = ev.predict_alpha(model, image, trimap, force_known=False)
    assert (raw[trimap == 128] == alpha[trimap == 128]).all()
    assert not (raw[trimap == 0] == 0).all()  # a random network does not output exact zeros
    x = make_input(image, trimap)[None]
    with torch.no_grad():
        direct = np.round(model(x)[0, 0].numpy() * 255).astype(np.uint8)
    assert (raw == direct).all()
    model.train()
    ev.predict_alpha(model, image, trimap)
    assert model.training  # mode restored
    model.eval()
    with pytest.raises(ValueError, match="trimap must be"):
        ev.predict_alpha(model, image, trimap[:-1])


def test_predict_folder_writes_and_skips(model, tmp_path):
    items = []
    for i in range(2):
        image, trimap = _scene(seed=i)
        paths = [tmp_path / "in" / f"{kind}{i}.png" for kind in ("img", "alpha", "tri")]
        paths[0].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(paths[0]), image[..., ::-1])
        cv2.imwrite(str(paths[1]), (trimap > 0).astype(np.uint8) * 255)
        cv2.imwrite(str(paths[2]), trimap)
        items.append(Item(f"bg{i}!fg!0!{i}", *paths))
    out = ev.predict_folder(model, items, tmp_path / "pred", progress=False)
    assert [p.name for p in out] == ["bg0!fg!0!0.png", "bg1!fg!0!1.png"]
    first = cv2.imread(str(out[0]), cv2.IMREAD_UNCHANGED)
    assert first.dtype == np.uint8 and first.ndim == 2
    assert (first == ev.predict_alpha(model, *_scene(seed=0))).all()
    cv2.imwrite(str(out[0]), np.zeros_like(first))  # an existing file is kept ...
    ev.predict_folder(model, items, tmp_path / "pred", progress=False)
    assert cv2.imread(str(out[0]), cv2.IMREAD_UNCHANGED).max() == 0
    ev.predict_folder(model, items, tmp_path / "pred", overwrite=True, progress=False)  # ... unless overwrite
    assert (cv2.imread(str(out[0]), cv2.IMREAD_UNCHANGED) == first).all()
    samples = ev.qualitative_samples(items, tmp_path / "pred", [items[1].name])
    assert set(samples[0]) == {"image", "trimap", "gt", "pred", "error"} and samples[0]["image"].shape == (40, 48, 3)


def test_cli_trimap_and_mask(model, tmp_path):
    ckpt = save_checkpoint(tmp_path / "student.pt", model=model, config={}, epoch=0, step=0, metrics={})
    image, trimap = _scene()
    cv2.imwrite(str(tmp_path / "photo.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(tmp_path / "trimap.png"), trimap)
    rc = predict.main([str(tmp_path / "photo.jpg"), str(tmp_path / "trimap.png"), "--checkpoint", str(ckpt),
                       "--out", str(tmp_path / "alpha.png"), "--device", "cpu"])
    assert rc == 0
    alpha = cv2.imread(str(tmp_path / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == trimap.shape and (alpha[trimap == 255] == 255).all()
    mask = np.zeros_like(trimap)
    mask[12:28, 15:35] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    rc = predict.main([str(tmp_path / "photo.jpg"), "--mask", str(tmp_path / "mask.png"), "--band", "3",
                       "--checkpoint", str(ckpt), "--out", str(tmp_path / "alpha_mask.png")])
    assert rc == 0
    am = cv2.imread(str(tmp_path / "alpha_mask.png"), cv2.IMREAD_UNCHANGED)
    assert am[20, 25] == 255 and am[0, 0] == 0 and 0 < (~np.isin(am, (0, 255))).sum()


def test_cli_errors(model, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "s.pt", model=model, config={}, epoch=0, step=0, metrics={})
    image, trimap = _scene()
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    cv2.imwrite(str(tmp_path / "small.png"), trimap[:20])
    base = ["--checkpoint", str(ckpt), "--out", str(tmp_path / "a.png")]
    assert predict.main([str(tmp_path / "photo.png"), *base]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert predict.main([str(tmp_path / "photo.png"), str(tmp_path / "small.png"), *base]) == 1
    assert "same size" in capsys.readouterr().err
    assert predict.main([str(tmp_path / "nope.png"), str(tmp_path / "small.png"), *base]) == 1
    assert "nope.png" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("junk")
    cv2.imwrite(str(tmp_path / "tri.png"), trimap)
    assert predict.main([str(tmp_path / "photo.png"), str(tmp_path / "tri.png"), "--checkpoint",
                         str(tmp_path / "junk.pt"), "--out", str(tmp_path / "a.png")]) == 1
    assert "DIM-PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "matting_lib.predict", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--checkpoint" in out.stdout and "--mask" in out.stdout


def test_evaluate_model_scores_a_composition1k_folder(model, tmp_path):
    alpha_dir, tri_dir, img_dir = (tmp_path / d for d in ("alpha", "trimaps", "merged"))
    for d in (alpha_dir, tri_dir, img_dir):
        d.mkdir()
    image, trimap = _scene()
    gt = np.where(trimap == 255, 255, np.where(trimap == 128, 100, 0)).astype(np.uint8)
    cv2.imwrite(str(alpha_dir / "fgA.png"), gt)
    items = []
    for b in range(2):
        cv2.imwrite(str(tri_dir / f"fgA_{b}.png"), trimap)
        name = f"bg{b}!fgA!0!{b}"
        cv2.imwrite(str(img_dir / f"{name}.png"), image[..., ::-1])
        items.append(Item(name, img_dir / f"{name}.png", alpha_dir / "fgA.png", tri_dir / f"fgA_{b}.png"))
    res = ev.evaluate_model(model, items, tmp_path / "run" / "pred", conventions=("official",), workers=0,
                            progress=False)
    official = res["official"]
    assert official["count"] == 2 and (tmp_path / "run" / "metrics_official.csv").is_file()
    pred = cv2.imread(str(tmp_path / "run" / "pred" / f"{items[0].name}.png"), cv2.IMREAD_GRAYSCALE)
    sad = np.abs(pred.astype(float) - gt)[trimap == 128].sum() / 255 / 1000  # official SAD (unknown region)
    assert official["mean"]["sad"] == pytest.approx(sad, rel=1e-6)
    cv2.imwrite(str(tmp_path / "run" / "pred" / "stray.png"), pred)
    with pytest.raises(ValueError, match="not in this test set"):
        ev.evaluate_model(model, items, tmp_path / "run" / "pred", conventions=("official",), progress=False)


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def cli(model, tmp_path):
    """Files for one CLI call and a runner: run(*extra, out=...) -> (exit code, stderr)."""
    ckpt = save_checkpoint(tmp_path / "s.pt", model=model, config={}, epoch=0, step=0, metrics={})
    image, trimap = _scene()
    cv2.imwrite(str(tmp_path / "photo.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "tri.png"), trimap)

    def run(*extra, out, trimap_path=tmp_path / "tri.png", checkpoint=ckpt):
        return predict.main([str(tmp_path / "photo.png"), str(trimap_path), "--checkpoint", str(checkpoint),
                             "--out", str(out), "--device", "cpu", *extra])

    return run, image, trimap, ckpt


def test_cli_never_overwrites_an_input_and_needs_force_for_an_existing_output(cli, tmp_path, capsys):
    run, *_ = cli
    photo, tri = (tmp_path / "photo.png").read_bytes(), (tmp_path / "tri.png").read_bytes()
    for target in (tmp_path / "photo.png", tmp_path / "tri.png", tmp_path / "." / "photo.png"):
        for force in ([], ["--force"]):
            assert run(*force, out=target) == 1
            assert "is the input" in capsys.readouterr().err
    assert (tmp_path / "photo.png").read_bytes() == photo and (tmp_path / "tri.png").read_bytes() == tri
    (tmp_path / "old.png").write_bytes(b"keep me")
    assert run(out=tmp_path / "old.png") == 1
    assert "exists; pass --force" in capsys.readouterr().err and (tmp_path / "old.png").read_bytes() == b"keep me"
    assert run("--force", out=tmp_path / "old.png") == 0
    assert cv2.imread(str(tmp_path / "old.png"), cv2.IMREAD_UNCHANGED).shape == (40, 48)


def test_cli_writes_the_suffix_s_format_and_refuses_lossy_ones(cli, tmp_path, capsys):
    run, *_ = cli
    assert run(out=tmp_path / "a.png") == 0
    png = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    for suffix, magic in ((".bmp", b"BM"), (".tif", b"II*\0")):
        assert run(out=tmp_path / f"a{suffix}") == 0
        assert (tmp_path / f"a{suffix}").read_bytes()[:len(magic)] == magic
        assert (cv2.imread(str(tmp_path / f"a{suffix}"), cv2.IMREAD_UNCHANGED) == png).all()  # lossless
    for name in ("a.jpg", "a.JPEG", "a.webp", "a"):
        assert run(out=tmp_path / name) == 1
        err = capsys.readouterr().err
        assert name in err and ("lossy" in err or "unsupported suffix" in err) and ".png" in err
        assert not (tmp_path / name).exists()


def test_cli_checks_the_output_path_before_computing(cli, tmp_path, capsys, monkeypatch, read_only_dir):
    run, *_ = cli

    def never(*a, **k):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(checkpoints, "load_any_model", never)
    (tmp_path / "outdir").mkdir()
    assert run(out=tmp_path / "outdir") == 1
    assert "outdir is a folder" in capsys.readouterr().err
    ro = read_only_dir
    assert run(out=ro / "a.png") == 1
    assert f"{ro} is read-only" in capsys.readouterr().err


def test_cli_colour_trimaps_grey_ones_pass_coloured_ones_are_refused(cli, tmp_path, capsys):
    run, image, trimap, _ = cli
    assert run(out=tmp_path / "grey.png") == 0
    cv2.imwrite(str(tmp_path / "tri3.png"), np.dstack([trimap] * 3))  # grey saved as RGB
    assert run(out=tmp_path / "rgb.png", trimap_path=tmp_path / "tri3.png") == 0
    assert (cv2.imread(str(tmp_path / "rgb.png"), -1) == cv2.imread(str(tmp_path / "grey.png"), -1)).all()
    colour = np.dstack([trimap, trimap, np.where(trimap == 128, 0, trimap)]).astype(np.uint8)  # red unknown
    cv2.imwrite(str(tmp_path / "tricol.png"), colour)
    assert run(out=tmp_path / "col.png", trimap_path=tmp_path / "tricol.png") == 1
    assert "trimap" in (err := capsys.readouterr().err) and "tricol.png is a colour image" in err
    assert not (tmp_path / "col.png").exists()


def test_cli_refuses_nan_weights_and_nan_outputs(cli, model, tmp_path, capsys):
    run, image, trimap, _ = cli
    broken = build_student(0.125)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    nan_ckpt = save_checkpoint(tmp_path / "nan.pt", model=broken, config={}, epoch=0, step=0, metrics={})
    assert run(out=tmp_path / "a.png", checkpoint=nan_ckpt) == 1
    err = capsys.readouterr().err
    assert "nan.pt" in err and "NaN or inf" in err and not (tmp_path / "a.png").exists()

    class NaNNet(torch.nn.Module):  # finite weights, non-finite output (e.g. an overflow)
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x[:, :1] * self.w + float("nan")

    with pytest.raises(ValueError, match=r"output holds 1920 NaN/inf value\(s\)"):
        ev.predict_alpha(NaNNet(), image, trimap)


def test_write_png_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="give a .png name"):
        ev.write_png(tmp_path / "x.jpg", np.zeros((4, 4), np.uint8))
    assert not (tmp_path / "x.jpg").exists()
