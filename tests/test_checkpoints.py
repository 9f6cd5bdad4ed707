"""Own checkpoints (atomic, weights_only) and the safe importer of DIM-PyTorch's public checkpoint."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from matting_lib.files import DiskFullError
from matting_lib.networks import checkpoints as ck
from matting_lib.networks.models import build_student, build_teacher

# Stand-in for DIM-PyTorch's models.py (same module/class names and state-dict structure, channels / 16) so the
# tests can write a checkpoint in the original form: a pickled DataParallel(models.DIMModel) + pickled optimizer.
STAND_IN_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def c(n):
        return max(4, n // 16)

    class conv2DBatchNormRelu(nn.Module):
        def __init__(self, cin, cout, k, relu=True):
            super().__init__()
            mods = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=True), nn.BatchNorm2d(cout)]
            self.cbr_unit = nn.Sequential(*(mods + [nn.ReLU(inplace=True)] if relu else mods))

        def forward(self, x):
            return self.cbr_unit(x)

    class segnetDown2(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1 = conv2DBatchNormRelu(cin, cout, 3)
            self.conv2 = conv2DBatchNormRelu(cout, cout, 3)
            self.maxpool_with_argmax = nn.MaxPool2d(2, 2, return_indices=True)

        def forward(self, x):
            x = self.conv2(self.conv1(x))
            s = x.size()
            x, i = self.maxpool_with_argmax(x)
            return x, i, s

    class segnetDown3(segnetDown2):
        def __init__(self, cin, cout):
            super().__init__(cin, cout)
            self.conv3 = conv2DBatchNormRelu(cout, cout, 3)

        def forward(self, x):
            x = self.conv3(self.conv2(self.conv1(x)))
            s = x.size()
            x, i = self.maxpool_with_argmax(x)
            return x, i, s

    class segnetUp1(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.unpool = nn.MaxUnpool2d(2, 2)
            self.conv = conv2DBatchNormRelu(cin, cout, 5, relu=False)

        def forward(self, x, i, s):
            return self.conv(self.unpool(input=x, indices=i, output_size=s))

    class DIMModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1, self.down2 = segnetDown2(4, c(64)), segnetDown2(c(64), c(128))
            self.down3, self.down4 = segnetDown3(c(128), c(256)), segnetDown3(c(256), c(512))
            self.down5 = segnetDown3(c(512), c(512))
            self.up5, self.up4 = segnetUp1(c(512), c(512)), segnetUp1(c(512), c(256))
            self.up3, self.up2, self.up1 = segnetUp1(c(256), c(128)), segnetUp1(c(128), c(64)), segnetUp1(c(64), 1)
            self.sigmoid = nn.Sigmoid()

        def forward(self, x):
            d1, i1, s1 = self.down1(x)
            d2, i2, s2 = self.down2(d1)
            d3, i3, s3 = self.down3(d2)
            d4, i4, s4 = self.down4(d3)
            d5, i5, s5 = self.down5(d4)
            u = self.up1(self.up2(self.up3(self.up4(self.up5(d5, i5, s5), i4, s4), i3, s3), i2, s2), i1, s1)
            return self.sigmoid(torch.squeeze(u, dim=1))
""")

BUILDER = textwrap.dedent("""
    import os, sys
    import torch
    from torch import nn
    out, marker_a, marker_b = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, os.path.join(out, "orig"))
    import models
    torch.manual_seed(0)
    net = models.DIMModel()
    dp = nn.DataParallel(net)
    opt = torch.optim.Adam(dp.parameters(), lr=1e-3)
    x = torch.randn(2, 4, 64, 64)
    dp(x).mean().backward()
    opt.step()
    net.eval()
    with torch.no_grad():
        y = net(x)
    state = {"epoch": 3, "epochs_since_improvement": 0, "loss": 0.05, "model": dp, "optimizer": opt}
    torch.save(state, os.path.join(out, "BEST_checkpoint.tar"))
    torch.save(state, os.path.join(out, "legacy.tar"), _use_new_zipfile_serialization=False)
    torch.save({"x": x, "y": y}, os.path.join(out, "expected.pt"))

    class Payload:
        def __init__(self, marker):
            self.marker = marker
        def __reduce__(self):
            return (os.system, ("touch " + self.marker,))

    torch.save({"epoch": 1, "model": Payload(marker_a)}, os.path.join(out, "evil.tar"))
    torch.save({"epoch": 1, "model": Payload(marker_b)}, os.path.join(out, "evil_control.tar"))
""")

LOADER = textwrap.dedent("""
    import importlib.util, json, os, sys
    import torch
    from matting_lib.networks.checkpoints import UnsafeCheckpointError, load_dim_pytorch
    from matting_lib.networks.models import build_teacher
    out, marker_a, marker_b = sys.argv[1], sys.argv[2], sys.argv[3]
    assert importlib.util.find_spec("models") is None, "the original classes must not be importable here"
    exp = torch.load(os.path.join(out, "expected.pt"), weights_only=True)
    res = {}
    for name in ("BEST_checkpoint.tar", "legacy.tar"):
        sd = load_dim_pytorch(os.path.join(out, name))
        net = build_teacher(1 / 16)
        net.load_state_dict(sd, strict=True)
        net.eval()
        with torch.no_grad():
            y = net(exp["x"])[:, 0]
        res[name] = {"keys": list(sd), "max_diff": float((y - exp["y"]).abs().max())}
    try:
        load_dim_pytorch(os.path.join(out, "evil.tar"))
        res["evil"] = "loaded"
    except UnsafeCheckpointError as err:
        res["evil"] = str(err)
    res["marker_a"] = os.path.exists(marker_a)
    torch.load(os.path.join(out, "evil_control.tar"), weights_only=False)  # control: the payload is real
    res["marker_b"] = os.path.exists(marker_b)
    print(json.dumps(res))
""")


@pytest.mark.slow
def test_public_checkpoint_loads_in_fresh_process_and_payload_is_refused(tmp_path):
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "models.py").write_text(STAND_IN_MODELS)
    marker_a, marker_b = tmp_path / "pwned_a", tmp_path / "pwned_b"
    args = [str(tmp_path), str(marker_a), str(marker_b)]
    env_cmd = dict(capture_output=True, text=True, timeout=120, cwd=tmp_path)
    built = subprocess.run([sys.executable, "-c", BUILDER, *args], **env_cmd)
    assert built.returncode == 0, built.stderr
    loaded = subprocess.run([sys.executable, "-c", LOADER, *args], **env_cmd)
    assert loaded.returncode == 0, loaded.stderr
    res = json.loads(loaded.stdout.strip().splitlines()[-1])
    want = list(build_teacher().state_dict())
    for name in ("BEST_checkpoint.tar", "legacy.tar"):
        assert res[name]["keys"] == want, name
        assert res[name]["max_diff"] < 1e-6, name
    assert "system" in res["evil"] and "refused" in res["evil"], res["evil"]
    assert res["marker_a"] is False, "the refused payload ran"
    assert res["marker_b"] is True, "control: torch.load(weights_only=False) should have run the payload"


def test_plain_state_dicts_with_and_without_module_prefix(tmp_path):
    net = build_teacher(1 / 16)
    plain, prefixed = tmp_path / "plain.pt", tmp_path / "prefixed.pt"
    torch.save(net.state_dict(), plain)
    torch.save(torch.nn.DataParallel(net).state_dict(), prefixed)
    torch.save({"state_dict": net.state_dict(), "epoch": 2}, tmp_path / "wrapped.pt")
    for path in (plain, prefixed, tmp_path / "wrapped.pt"):
        sd = ck.load_dim_pytorch(path)
        assert list(sd) == list(net.state_dict())
        assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())


def test_import_teacher_rejects_wrong_shapes(tmp_path):
    path = tmp_path / "small.pt"
    torch.save(build_teacher(1 / 16).state_dict(), path)
    with pytest.raises(ck.CheckpointError, match="other shapes"):
        ck.import_dim_pytorch_teacher(path)


def test_unsafe_global_in_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "eval.pt"
    torch.save({"w": torch.ones(2), "x": eval}, path)  # a builtin function outside the allow-list
    with pytest.raises(ck.UnsafeCheckpointError, match=r"(__builtin__|builtins)\.eval"):
        ck.load_dim_pytorch(path)


def test_own_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_student(0.125)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(2, 4, 32, 32)).mean().backward()
    opt.step()
    path = ck.save_checkpoint(tmp_path / "run" / "last.pt", model=torch.nn.DataParallel(model), optimizer=opt,
                              config={"lr": 0.01, "steps": 5, "grad_clamp": None}, epoch=1, step=5,
                              metrics={"val_loss": 0.5}, extra={"rng": torch.get_rng_state()})
    raw = torch.load(path, weights_only=True)  # must not need weights_only=False
    assert raw["format"] == ck.FORMAT and raw["step"] == 5 and raw["config"]["lr"] == 0.01
    assert list(raw["model"]) == list(model.state_dict())  # DataParallel unwrapped
    restored = ck.load_model(path)
    assert restored.arch == model.arch and not restored.training
    x = torch.randn(1, 4, 40, 36)
    model.eval()
    assert torch.equal(restored(x), model(x))
    opt2 = torch.optim.Adam(restored.parameters(), lr=0.01)
    opt2.load_state_dict(ck.load_checkpoint(path)["optimizer"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = build_student(0.125)
    path = ck.save_checkpoint(tmp_path / "last.pt", model=model, config={}, epoch=0, step=1, metrics={})
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, model=model, config={}, epoch=0, step=2, metrics={})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_not_a_checkpoint_and_non_plain_config(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(ck.CheckpointError, match="not a matting_lib checkpoint"):
        ck.load_model(bad)
    sd = tmp_path / "sd.pt"
    torch.save(build_student(0.125).state_dict(), sd)
    with pytest.raises(ck.CheckpointError, match="load_dim_pytorch"):
        ck.load_model(sd)
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="not plain data"):
        ck.save_checkpoint(tmp_path / "x.pt", model=build_student(0.125), config={"f": print}, epoch=0, step=0,
                           metrics={})


def test_manifest_records_and_checks_the_hash(tmp_path):
    path = ck.save_checkpoint(tmp_path / "teacher-x.pt", model=build_student(0.125), config={}, epoch=0, step=3,
                              metrics={"sad": 1.5})
    ck.write_manifest(path, steps=3, metrics={"sad": 1.5})
    manifest = ck.check_manifest(path)
    assert manifest["steps"] == 3 and manifest["sha256"] == ck.sha256_file(path)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ck.CheckpointError, match="differs"):
        ck.check_manifest(path)
    with pytest.raises(ck.CheckpointError, match="no provenance manifest"):
        ck.check_manifest(tmp_path / "other.pt")


def test_ship_checkpoint_copies_with_manifest_and_never_overwrites(tmp_path, capsys):
    src = ck.save_checkpoint(tmp_path / "run" / "teacher.pt", model=build_student(0.125), config={}, epoch=0,
                             step=3, metrics={"sad": 1.5})
    ck.write_manifest(src, steps=3, metrics={"official": {"sad": 1.5}})
    dst = tmp_path / "assets" / "teacher-x.pt"
    assert ck.main(["ship", str(src), str(dst), "--note", "./run_all.sh --only teacher"]) == 0
    shipped = ck.check_manifest(dst)
    assert shipped["file"] == "teacher-x.pt" and shipped["steps"] == 3 and shipped["metrics"]["official"]["sad"] == 1.5
    assert shipped["note"] == "./run_all.sh --only teacher" and shipped["shipped_from"] == str(src)
    assert dst.read_bytes() == src.read_bytes()
    before = ck.manifest_path(dst).read_text()
    assert ck.main(["ship", str(src), str(dst)]) == 1 and "--force" in capsys.readouterr().err
    assert ck.manifest_path(dst).read_text() == before  # nothing written is lost
    with open(src, "ab") as fh:  # a source that no longer matches its manifest is not shipped
        fh.write(b"\0")
    with pytest.raises(ck.CheckpointError, match="differs"):
        ck.ship_checkpoint(src, dst, force=True)
    assert ck.check_manifest(dst)["sha256"] == shipped["sha256"]


def test_import_teacher_at_full_width(tmp_path):
    torch.manual_seed(0)
    teacher = build_teacher(1.0)
    path = tmp_path / "teacher_state.pt"
    torch.save(torch.nn.DataParallel(teacher).state_dict(), path)  # keys with "module."
    imported = ck.import_dim_pytorch_teacher(path)
    assert not imported.training and imported.arch["kind"] == "teacher"
    assert all(torch.equal(a, b) for a, b in zip(imported.state_dict().values(), teacher.state_dict().values()))


# ------------------------------------------------------------------------------------------ bad files
# A TorchScript module whose __setstate__ writes a file: torch.load(weights_only=False) hands such an archive to
# torch.jit.load, which runs it. torch.from_file(shared=True) creates the file and fill_ writes "AAAAAA" into it.
EVIL_TORCHSCRIPT = textwrap.dedent("""
    from typing import Tuple

    import torch


    class Evil(torch.nn.Module):
        marker: str

        def __init__(self, marker: str):
            super().__init__()
            self.marker = marker
            self.w = torch.nn.Parameter(torch.ones(2))
            self.buf = torch.zeros(1, dtype=torch.uint8)

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
            return (self.marker, self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
            self.marker = state[0]
            self.w = state[1]
            self.training = state[2]
            written = torch.from_file(self.marker, shared=True, size=6, dtype=torch.uint8)
            written.fill_(65)
            self.buf = written
""")


@pytest.fixture
def torchscript_archive(tmp_path):
    """(archive named like DIM-PyTorch's checkpoint, the file its __setstate__ would write)."""
    import importlib.util

    src = tmp_path / "evil_module.py"
    src.write_text(EVIL_TORCHSCRIPT)
    spec = importlib.util.spec_from_file_location("evil_module", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # from a file, so torch.jit.script can read the source
    marker = tmp_path / "pwned"
    path = tmp_path / "BEST_checkpoint.tar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in recent torch
        torch.jit.save(torch.jit.script(mod.Evil(str(marker))), str(path))
    assert not marker.exists()
    return path, marker


def _loaders():
    return {
        "load_checkpoint": ck.load_checkpoint,
        "load_model": ck.load_model,
        "load_dim_pytorch": ck.load_dim_pytorch,
        "import_dim_pytorch_teacher": ck.import_dim_pytorch_teacher,
        "check_checkpoint_file": ck.check_checkpoint_file,
        "load_any_model": ck.load_any_model,
    }


def test_torchscript_archive_is_refused_by_every_loader_before_torch_sees_it(torchscript_archive, tmp_path,
                                                                               monkeypatch, capsys):
    from matting_lib.inference import predict

    path, marker = torchscript_archive
    real_load, real_jit_load = torch.load, torch.jit.load
    seen = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append("torch.load") or real_load(*a, **k))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: seen.append("torch.jit.load") or real_jit_load(*a, **k))
    for name, load in _loaders().items():
        with pytest.raises(ck.UnsafeCheckpointError, match=r"BEST_checkpoint.tar is a TorchScript archive") as err:
            load(path)
        assert isinstance(err.value, ck.CheckpointError), name  # callers catching CheckpointError see it too
        assert not marker.exists(), f"{name} ran the archive's code"
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    cv2.imwrite(str(tmp_path / "tri.png"), np.full((40, 40), 128, np.uint8))
    rc = predict.main([str(tmp_path / "photo.png"), str(tmp_path / "tri.png"), "--checkpoint", str(path),
                       "--out", str(tmp_path / "a.png"), "--device", "cpu"])
    assert rc == 1 and "TorchScript archive" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "a.png").exists()
    assert seen == [], f"torch was handed the archive: {seen}"
    monkeypatch.undo()
    with warnings.catch_warnings():  # control: the payload is real
        warnings.simplefilter("ignore")
        torch.load(path, weights_only=False)
    assert marker.read_bytes() == b"AAAAAA"


def _truncated(tmp_path, kind: str):
    model = build_student(0.125)
    if kind == "empty":
        (tmp_path / "empty.pt").write_bytes(b"")
        return tmp_path / "empty.pt"
    if kind == "text":
        (tmp_path / "notes.pt").write_text("not a checkpoint\n")
        return tmp_path / "notes.pt"
    full = tmp_path / "full.pt"
    if kind == "zip":
        ck.save_checkpoint(full, model=model, config={}, epoch=0, step=1, metrics={})
    else:  # legacy pickle format (DIM-PyTorch's era)
        torch.save(model.state_dict(), full, _use_new_zipfile_serialization=False)
    cut = tmp_path / f"cut-{kind}.pt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("kind", ["empty", "text", "zip", "legacy"])
def test_empty_and_truncated_files_get_a_clear_error_from_every_loader(tmp_path, kind):
    path = _truncated(tmp_path, kind)
    for name, load in _loaders().items():
        if name == "check_checkpoint_file" and kind == "legacy":
            continue  # a cut legacy file keeps its header: only reading it finds the cut
        with pytest.raises(ck.CheckpointError, match="truncated or not a checkpoint") as err:
            load(path)
        assert path.name in str(err.value), name


def test_zip_without_torch_layout_and_folders_are_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.pt", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ck.CheckpointError, match="not one torch.save wrote"):
        ck.load_dim_pytorch(tmp_path / "other.pt")
    with pytest.raises(ck.CheckpointError, match="is a folder"):
        ck.load_model(tmp_path)


def test_non_finite_weights_are_refused_at_load(tmp_path):
    model = build_student(0.125)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = ck.save_checkpoint(tmp_path / "nan.pt", model=model, config={}, epoch=0, step=1, metrics={})
    with pytest.raises(ck.CheckpointError, match=r"nan.pt: 1 weight tensor\(s\) hold NaN or inf"):
        ck.load_model(path)
    teacher = build_teacher(1.0).state_dict()
    teacher["up1.conv.cbr_unit.1.running_var"][0] = float("inf")
    torch.save(teacher, tmp_path / "inf.pt")
    with pytest.raises(ck.CheckpointError, match="inf.pt: .*NaN or inf.*running_var"):
        ck.import_dim_pytorch_teacher(tmp_path / "inf.pt")


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4096 vs 4034"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_disk_full_during_save_says_so_and_keeps_the_previous_file(tmp_path, monkeypatch, failure):
    model = build_student(0.125)
    path = ck.save_checkpoint(tmp_path / "last.pt", model=model, config={}, epoch=0, step=1, metrics={})
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half")
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFullError, match=r"the disk is full: could not write .*last.pt") as err:
        ck.save_checkpoint(path, model=model, config={}, epoch=0, step=2, metrics={})
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left


def _shippable(tmp_path):
    src = ck.save_checkpoint(tmp_path / "run" / "teacher.pt", model=build_student(0.125), config={}, epoch=0,
                             step=3, metrics={})
    ck.write_manifest(src, steps=3)
    return src


def test_ship_refuses_destinations_that_would_lose_data(tmp_path, capsys):
    src = _shippable(tmp_path)
    before, manifest_before = src.read_bytes(), ck.manifest_path(src).read_text()
    (tmp_path / "assets").mkdir()
    cases = {
        str(tmp_path / "assets" / "DST.json"): "must end in .pt",   # would be overwritten by its own manifest
        str(tmp_path / "assets" / "teacher.bin"): "must end in .pt",
        str(tmp_path / "assets"): "is a folder; give the checkpoint's file name",
        str(src): "is the source",
        str(tmp_path / "run" / "." / "teacher.pt"): "is the source",
    }
    for dst, message in cases.items():
        assert ck.main(["ship", str(src), dst, "--force"]) == 1, dst
        assert message in capsys.readouterr().err, dst
    assert ck.main(["ship", str(ck.manifest_path(src)), str(tmp_path / "x.pt")]) == 1
    assert "is a manifest" in capsys.readouterr().err
    assert src.read_bytes() == before and ck.manifest_path(src).read_text() == manifest_before
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == []


def test_ship_with_a_corrupt_manifest_names_it(tmp_path, capsys):
    src = _shippable(tmp_path)
    ck.manifest_path(src).write_text('{"sha256": "abc", ')  # cut short
    assert ck.main(["ship", str(src), str(tmp_path / "out.pt")]) == 1
    out = capsys.readouterr().err
    assert "teacher.json is not valid JSON" in out and not (tmp_path / "out.pt").exists()
    ck.manifest_path(src).write_bytes(b"\xff\xfe[]")
    with pytest.raises(ck.CheckpointError, match="teacher.json is not valid JSON"):
        ck.check_manifest(src)
    ck.manifest_path(src).write_text("[1, 2]")
    with pytest.raises(ck.CheckpointError, match="not a JSON object"):
        ck.check_manifest(src)


def _student_run(runs, config: str, seed: int, val: float | None, sad: float = 1.0, *, folder: str | None = None):
    """A finished student run as notebook 03 leaves it (``best.pt``, ``run.json`` with the run's identity,
    ``metrics.json``; no ``metrics.json`` when ``val`` is None: unfinished), in ``folder`` (default: its own name)."""
    import json

    from matting_lib.distillation import distill

    run = runs / "students" / (folder or f"kd-{config}-seed{seed}")
    run.mkdir(parents=True)
    torch.manual_seed(seed)
    ck.save_checkpoint(run / "best.pt", model=build_student(0.0625), config={}, epoch=0, step=5, metrics={})
    identity = {"kind": "student", "code": "c", "params": {"seed": seed, "width": 0.0625},
                "distill": distill.PAPER_CONFIGS[config].to_dict()}
    (run / "run.json").write_text(json.dumps({"identity": identity}))
    if val is not None:
        (run / "metrics.json").write_text(json.dumps({"config": config, "seed": seed, "best_val_loss": val,
                                                      "distill": identity["distill"],
                                                      "metrics": {"official": {"sad": sad}}}))
    return run


def test_ship_student_takes_the_lowest_validation_loss_and_predict_uses_it_by_default(tmp_path, monkeypatch):
    """ship-student chooses among a configuration's seeds by validation loss, never by test score; predict without
    --checkpoint uses the shipped student, and says what to do when none ships."""

    import cv2
    import numpy as np

    from matting_lib.inference import predict
    from matting_lib.networks import checkpoints

    for seed, val, sad in ((0, 0.30, 1.0), (1, 0.20, 9.0), (2, None, 0.5)):  # seed 2 unfinished
        _student_run(tmp_path / "runs", "spatial+channel", seed, val, sad)
    out = tmp_path / "assets" / "student-default.pt"
    assert checkpoints.main(["ship-student", str(tmp_path / "runs"), str(out)]) == 0
    man = checkpoints.check_manifest(out)
    assert man["run"] == "kd-spatial+channel-seed1" and man["best_val_loss"] == 0.20  # not seed 0's better test SAD
    assert man["candidates"] == {"kd-spatial+channel-seed0": 0.30, "kd-spatial+channel-seed1": 0.20}
    assert checkpoints.main(["ship-student", str(tmp_path / "runs"), str(out)]) == 1  # exists: --force to replace
    assert checkpoints.main(["ship-student", str(tmp_path / "none"), str(tmp_path / "x.pt")]) == 1

    img = np.full((40, 40, 3), 128, np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    cv2.imwrite(str(tmp_path / "photo.png"), img)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    args = [str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "a.png")]
    monkeypatch.setattr(predict, "SHIPPED_STUDENT", out)
    assert predict.main(args) == 0 and cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_GRAYSCALE).shape == (40, 40)
    monkeypatch.setattr(predict, "SHIPPED_STUDENT", tmp_path / "missing.pt")
    assert predict.main(args[:-1] + [str(tmp_path / "b.png")]) == 2 and not (tmp_path / "b.png").exists()


def test_ship_student_checks_every_run_before_writing_and_keeps_a_shipped_student(tmp_path, capsys, monkeypatch):
    """ship-student reads and checks every candidate (its identity, its record, a finite validation loss) and the
    configuration name before it writes; on any refusal or failure an existing shipped student and its manifest
    stay byte for byte as they were, --force or not."""
    import json

    from matting_lib import files

    runs = tmp_path / "runs"
    for seed, val in ((0, 0.3), (1, 0.2)):
        _student_run(runs, "spatial+channel", seed, val)
    dst = tmp_path / "assets" / "student-default.pt"
    assert ck.main(["ship-student", str(runs), str(dst)]) == 0
    shipped = {p: p.read_bytes() for p in (dst, ck.manifest_path(dst))}

    def refused(*args) -> str:
        assert ck.main(["ship-student", str(runs), str(dst), "--force", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("python -m matting_lib.checkpoints ship-student: error: ") and "Traceback" not in err
        assert {p: p.read_bytes() for p in shipped} == shipped, "the shipped student was changed"
        return err

    _student_run(runs, "spatial", 0, 0.4)
    err = refused("--config", "spatail")
    assert (f"--config 'spatail': {runs / 'students'} holds no run of that configuration (did you mean 'spatial'?); "
            f"the configurations there: spatial, spatial+channel") in err
    assert "run the profile first" not in err
    shutil.rmtree(runs / "students" / "kd-spatial-seed0")

    run1 = runs / "students" / "kd-spatial+channel-seed1"
    (run1 / "run.json").rename(tmp_path / "run.json")  # no identity: refused before anything is written
    assert f"{run1 / 'run.json'} is missing: the run's identity is unknown" in refused()
    (tmp_path / "run.json").rename(run1 / "run.json")

    record = json.loads((run1 / "metrics.json").read_text())
    (run1 / "metrics.json").write_text(json.dumps({**record, "best_val_loss": float("nan")}))
    assert f"{run1 / 'metrics.json'}: best_val_loss is nan, not a finite number" in refused()
    (run1 / "metrics.json").write_text('{"config": "spatial+channel", ')  # cut short
    assert f"{run1 / 'metrics.json'} is not valid JSON" in refused()
    (run1 / "metrics.json").write_text(json.dumps(record))

    spatial = _student_run(runs, "spatial", 2, 0.1, folder="kd-spatial+channel-seed2")  # a kd-spatial run, renamed
    err = refused()
    assert "kd-spatial+channel-seed2/metrics.json records configuration 'spatial' seed 2, but the folder name " \
           "kd-spatial+channel-seed2 says 'spatial+channel' seed 2: a run folder was copied or renamed" in err
    shutil.copyfile(run1 / "metrics.json", spatial / "metrics.json")  # a record from another run beside its run.json
    record = {**json.loads((spatial / "metrics.json").read_text()), "seed": 2}
    (spatial / "metrics.json").write_text(json.dumps(record))
    err = refused()
    assert "kd-spatial+channel-seed2/run.json records the training of seed 2 with distillation types ['spatial']" in err
    assert "metrics.json records seed 2 with types ['spatial', 'channel']" in err
    shutil.rmtree(spatial)

    real_replace = os.replace

    def fail_on_the_checkpoint(src, target, *a, **k):  # the new manifest is in place, the checkpoint's rename fails
        if Path(target) == dst:
            raise OSError(28, "No space left on device")
        return real_replace(src, target, *a, **k)

    monkeypatch.setattr(files.os, "replace", fail_on_the_checkpoint)
    assert "the disk is full" in refused()
    monkeypatch.undo()

    def fail_in_torch_save(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 42 vs 41")

    monkeypatch.setattr(ck.torch, "save", fail_in_torch_save)
    assert "the disk is full" in refused()
    monkeypatch.undo()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["student-default.json", "student-default.pt"]
    _student_run(runs, "spatial+channel", 3, 0.05)
    assert ck.main(["ship-student", str(runs), str(dst), "--force"]) == 0  # the pair replaced together
    assert ck.check_manifest(dst)["run"] == "kd-spatial+channel-seed3"
