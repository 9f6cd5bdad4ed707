"""ONNX export (matting_lib.export): onnxruntime parity at odd sizes, metadata, prediction from ``.onnx``, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import REPO
from onnx import TensorProto, helper

from matting_lib.inference import evaluation as ev
from matting_lib.inference import export as ex
from matting_lib.inference import predict
from matting_lib.networks import checkpoints
from matting_lib.networks.checkpoints import check_manifest, save_checkpoint
from matting_lib.networks.models import build_student, build_teacher, count_parameters

ODD_SIZES = [(2, 37, 53), (1, 64, 96), (1, 101, 77)]  # (N, H, W); none but 64 divisible by 32


def randomise_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BatchNorm affine parameters and running statistics (fresh ones are 0 / 1: an identity that would
    hide a wrongly exported normalisation), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {"student": randomise_bn(build_student(0.125), 1), "teacher": randomise_bn(build_teacher(0.0625), 2)}


@pytest.fixture(scope="module")
def exported(nets, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return {kind: ex.export_onnx(net, out / f"{kind}.onnx") for kind, net in nets.items()}


def _scene(h=45, w=67, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    trimap = np.zeros((h, w), np.uint8)
    trimap[6:40, 8:60] = 128
    trimap[15:30, 20:45] = 255
    return image, trimap


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_onnxruntime_matches_pytorch_at_odd_sizes(kind, nets, exported):
    net, session = nets[kind], ex.onnx_session(exported[kind], threads=1)
    graph = onnx.load(str(exported[kind])).graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (graph.input[0],
                                                                                         graph.output[0])]
    assert dims == [["N", 4, "H", "W"], ["N", 1, "H", "W"]]
    for n, h, w in ODD_SIZES:
        x = torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            ref = net(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (n, 1, h, w)
        assert np.abs(got - ref).max() <= 1e-4, (kind, h, w)
        assert ref.std() > 1e-3  # not a saturated network, whose outputs would agree trivially


def test_metadata_describes_input_output_and_network(nets, exported):
    meta = ex.read_metadata(exported["student"])
    assert tuple(k for k in meta if k.startswith("matting_lib.")) == ex.METADATA_KEYS
    assert meta["matting_lib.format"] == ex.FORMAT and meta["matting_lib.kind"] == "student"
    assert float(meta["matting_lib.width"]) == 0.125
    assert int(meta["matting_lib.parameters"]) == count_parameters(nets["student"])
    assert json.loads(meta["matting_lib.arch"]) == nets["student"].arch
    assert json.loads(meta["matting_lib.imagenet_mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["matting_lib.imagenet_std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta["matting_lib.trimap_values"]) == pytest.approx([0, 128 / 255, 1])
    assert "RGB" in meta["matting_lib.input"] and "128/255" in meta["matting_lib.input"]
    assert "opset 18" in meta["matting_lib.exporter"] and "dynamo=True" in meta["matting_lib.exporter"]
    assert onnx.load(str(exported["student"])).opset_import[0].version == ex.DEFAULT_OPSET


def test_predict_png_from_onnx_equals_png_from_checkpoint(nets, tmp_path):
    ckpt = save_checkpoint(tmp_path / "student.pt", model=nets["student"], config={}, epoch=0, step=0, metrics={})
    onnx_path = ex.export_checkpoint(ckpt, tmp_path / "student.onnx")
    assert ex.read_metadata(onnx_path)["matting_lib.source"] == "student.pt"
    diffs = []
    for seed, (h, w) in enumerate([(45, 67), (64, 96), (101, 77)]):
        image, trimap = _scene(h, w, seed)
        cv2.imwrite(str(tmp_path / "photo.png"), image[..., ::-1])
        cv2.imwrite(str(tmp_path / "trimap.png"), trimap)
        pngs = {}
        for model in (ckpt, onnx_path):
            out = tmp_path / f"alpha_{model.suffix[1:]}_{seed}.png"  # a new file: predict never overwrites
            assert predict.main([str(tmp_path / "photo.png"), str(tmp_path / "trimap.png"), "--checkpoint",
                                 str(model), "--out", str(out), "--device", "cpu"]) == 0
            pngs[model.suffix] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(int)
        assert len(np.unique(pngs[".pt"][trimap == 128])) > 3  # the unknown region holds a real prediction
        diffs.append(np.abs(pngs[".pt"] - pngs[".onnx"]))
    # |Δα| ~ 1e-7, so round(α·255) can differ by one grey level only where α·255 lies within ~1e-5 of x.5
    assert max(d.max() for d in diffs) <= 1
    assert sum((d > 0).sum() for d in diffs) <= 2
    # the library path too: predict_alpha with the onnxruntime model and no device argument
    image, trimap = _scene()
    onnx_model = ex.OnnxMatting(onnx_path, threads=1)
    assert onnx_model.arch == nets["student"].arch
    a, b = ev.predict_alpha(onnx_model, image, trimap), ev.predict_alpha(nets["student"], image, trimap)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_shipped_teacher_exports_with_its_provenance(tmp_path, capsys):
    shipped = REPO / "matting_lib" / "assets" / "teacher-default.pt"
    assert ex.main(["--checkpoint", str(shipped), "--out", str(tmp_path / "teacher.onnx")]) == 0
    assert "teacher, width 0.25" in capsys.readouterr().out
    meta = ex.read_metadata(tmp_path / "teacher.onnx")
    assert meta["matting_lib.source"] == "teacher-default.pt"
    assert meta["matting_lib.source_sha256"] == check_manifest(shipped)["sha256"]
    assert int(meta["matting_lib.parameters"]) == 1_602_563


@pytest.mark.slow
def test_dim_pytorch_checkpoint_exports_the_full_teacher(tmp_path):
    torch.manual_seed(0)
    teacher = randomise_bn(build_teacher(1.0), 3)
    path = tmp_path / "BEST_checkpoint.tar"  # DIM-PyTorch's container; its pickled-module form: test_checkpoints
    torch.save({"epoch": 3, "model": torch.nn.DataParallel(teacher).state_dict()}, path)
    out = ex.export_checkpoint(path, tmp_path / "dim.onnx")
    meta = ex.read_metadata(out)
    assert meta["matting_lib.kind"] == "teacher" and int(meta["matting_lib.parameters"]) == 25_582_595
    assert ex.max_abs_diff(teacher, ex.onnx_session(out, threads=1), (1, 4, 37, 53)) <= 1e-4


def test_existing_output_is_refused_without_force(nets, exported, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="--force"):
        ex.export_onnx(nets["student"], out)
    ckpt = save_checkpoint(tmp_path / "s.pt", model=nets["student"], config={}, epoch=0, step=0, metrics={})
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(out)]) == 1
    assert "model.onnx exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(out), "--force"]) == 0
    assert ex.read_metadata(out)["matting_lib.kind"] == "student"
    with pytest.raises(ex.ExportError, match=r"must end in \.onnx"):
        ex.export_onnx(nets["student"], tmp_path / "model.pt")


def test_failed_parity_or_opset_writes_nothing(nets, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    monkeypatch.setattr(ex, "max_abs_diff", lambda *a, **k: 0.5)
    with pytest.raises(ex.ExportError, match="differs from PyTorch by 5.00e-01"):
        ex.export_onnx(nets["student"], out, force=True)
    monkeypatch.undo()
    def kept_at_18(*a):
        raise ex.ExportError("torch could not convert the graph to opset 17 (it stays at 18)")

    monkeypatch.setattr(ex, "_to_onnx_proto", kept_at_18)
    with pytest.raises(ex.ExportError, match="it stays at 18"):  # the exporter's own failure writes nothing either
        ex.export_onnx(nets["student"], out, force=True)
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_opset_is_checked_against_the_true_range_before_anything_is_loaded(nets, tmp_path, capsys, monkeypatch):
    """Below opset 16 onnx's version converter cannot take these graphs (measured: 15 and below fail after the whole
    export, 16 and 17 work); above the installed onnx's newest nothing can be written. Both are refused at once."""
    low, high = ex.opset_range()
    assert (low, high) == (ex.MIN_OPSET, onnx.defs.onnx_opset_version()) and low == 16
    ckpt = save_checkpoint(tmp_path / "s.pt", model=nets["student"], config={}, epoch=0, step=0, metrics={})

    def never(*a, **k):
        raise AssertionError("the export started before the opset was checked")

    monkeypatch.setattr(ex, "_to_onnx_proto", never)
    monkeypatch.setattr(checkpoints, "load_any_model", never)
    for opset in (3, 15, high + 1, 0):
        assert ex.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--opset", str(opset)]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"python -m matting_lib.export: error: --opset {opset}: this exporter writes opsets 16 to {high} "
            f"(torch's exporter builds the graph at opset 18 and onnx's version converter cannot take it "
            f"below 16; the installed onnx knows up to {high}); use --opset 18 (the default) or another in "
            f"that range\n"
        )
    assert not (tmp_path / "m.onnx").exists()
    monkeypatch.undo()
    out = ex.export_onnx(nets["student"], tmp_path / "m16.onnx", opset=low)  # the oldest in the range does export
    assert onnx.load(str(out)).opset_import[0].version == low and ex.read_metadata(out)["matting_lib.exporter"] \
        .endswith(f"opset {low}")


def test_checkpoint_that_is_not_a_matting_network(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    for name in ("notes.pt", "linear.pt"):
        with pytest.raises(ex.ExportError, match=f"{name} is not a matting network"):
            ex.export_checkpoint(tmp_path / name, tmp_path / "out.onnx")
    assert ex.main(["--checkpoint", str(tmp_path / "linear.pt"), "--out", str(tmp_path / "out.onnx")]) == 1
    assert "does not hold the DIM teacher" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(ex.ExportError, match="DIMNet"):
        ex.export_onnx(torch.nn.Conv2d(4, 1, 3), tmp_path / "conv.onnx")
    with pytest.raises(ex.ExportError, match="on meta; export it from the CPU"):
        ex.export_onnx(build_student(0.125).to("meta"), tmp_path / "meta.onnx")


def test_onnx_file_that_is_not_ours(tmp_path, capsys):
    node = helper.make_node("Identity", ["input"], ["alpha"])
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4, "H", "W"]) for n in ("input", "alpha")]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [vi[0]], [vi[1]]), producer_name="someone"), foreign)
    with pytest.raises(ex.OnnxModelError, match="foreign.onnx is an ONNX model but not a matting network"):
        ex.OnnxMatting(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ex.OnnxModelError, match="junk.onnx is not a readable ONNX model"):
        ex.read_metadata(tmp_path / "junk.onnx")
    with pytest.raises(ex.OnnxModelError, match="does not exist"):
        ex.read_metadata(tmp_path / "missing.onnx")
    image, trimap = _scene()
    cv2.imwrite(str(tmp_path / "photo.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "trimap.png"), trimap)
    rc = predict.main([str(tmp_path / "photo.png"), str(tmp_path / "trimap.png"), "--checkpoint", str(foreign),
                       "--out", str(tmp_path / "alpha.png")])
    assert rc == 1 and "not a matting network exported by matting_lib" in capsys.readouterr().err
    assert not (tmp_path / "alpha.png").exists()


def test_onnx_model_checks_its_input(exported):
    model = ex.OnnxMatting(exported["student"], threads=1)
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 4, 31, 64))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        model(torch.zeros(1, 3, 64, 64))


def test_missing_optional_dependency_says_how_to_install(exported, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the 'onnx' extra were not installed
    with pytest.raises(ImportError, match=r"onnxruntime is not installed.*pip install -e '\.\[onnx\]'"):
        ex.OnnxMatting(exported["student"])
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    shipped = REPO / "matting_lib" / "assets" / "teacher-default.pt"
    assert ex.main(["--checkpoint", str(shipped), "--out", str(tmp_path / "t.onnx")]) == 1
    assert "onnxscript is not installed" in capsys.readouterr().err and not (tmp_path / "t.onnx").exists()


def test_module_help_states_the_input_layout():
    out = subprocess.run([sys.executable, "-m", "matting_lib.export", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for needle in ("--checkpoint", "--force", "--opset", "0.485", "0.229", "128/255", "matting_lib.kind", "RGB"):
        assert needle in out.stdout, needle


@pytest.mark.slow
def test_benchmark_quick_mode_runs(nets, tmp_path, capsys):
    """benchmarks/bench_export.py --quick: the latency table and test-set parity on tiny settings."""
    import importlib.util

    from fixtures_adobe import make_tiny_adobe

    from matting_lib.data.compositing import build_test_set
    from matting_lib.data.layout import DatasetLayout

    spec = importlib.util.spec_from_file_location("bench_export", REPO / "benchmarks" / "bench_export.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "latency.md"
    assert bench.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    table = out.read_text()
    assert "1 intra-op thread(s)" in table and "| PyTorch eager (ms) | onnxruntime (ms) |" in table
    assert [line.split("|")[1].strip() for line in table.splitlines()[4:]] == ["teacher", "student",
                                                                              "student / teacher"]
    with pytest.raises(SystemExit):  # an existing --out is refused without --force
        bench.main(["--quick", "--out", str(out)])
    assert "exists" in capsys.readouterr().err
    root = make_tiny_adobe(tmp_path / "adobe")
    build_test_set(DatasetLayout.for_root(root), progress=False)
    ckpt = save_checkpoint(tmp_path / "s.pt", model=nets["student"], config={}, epoch=0, step=0, metrics={})
    assert bench.main(["--quick", "--threads", "1", "--parity", str(ckpt), "--data", str(root)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split("|") for line in printed.splitlines() if line.startswith(f"| {ckpt} |")]
    assert [r[3].strip() for r in rows] == ["PyTorch", "onnxruntime"] and rows[0][4] == rows[1][4]  # SAD, 4 decimals
    assert "SAD equal to 4 decimals: yes" in printed
