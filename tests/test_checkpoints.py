"""Own checkpoints (atomic, weights_only) and the safe importer of DIM-PyTorch's public checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from matting_lib import checkpoints as ck
from matting_lib.models import build_student, build_teacher

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
    from matting_lib.checkpoints import UnsafeCheckpointError, load_dim_pytorch
    from matting_lib.models import build_teacher
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
    assert ck.main(["ship", str(src), str(dst)]) == 1 and "--force" in capsys.readouterr().out
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
