"""Distillation losses (matting_lib.distillation.kd_losses) and the student objective
(matting_lib.distillation.distill).

Pure-tensor invariants on random features, the exact low-memory spatial form against the explicit one
(values and gradients), and a few optimisation steps of every paper configuration on tiny networks.
"""

from __future__ import annotations

import math

import pytest
import torch

from matting_lib.distillation import distill, kd_losses
from matting_lib.distillation.distill import (
    PAPER_CONFIGS,
    DistillConfig,
    DistillObjective,
    config_label,
    make_config,
    parse_layers,
    parse_types,
    parse_weights,
    run_name,
)
from matting_lib.distillation.kd_losses import (
    KD_LOSSES,
    at_loss,
    attention_map,
    fsp_loss,
    fsp_matrix,
    ofd_loss,
    ofd_margin,
    similarity_loss,
    similarity_matrix,
    spatial_loss_efficient,
)
from matting_lib.networks.models import build_student, build_teacher, count_parameters
from matting_lib.training.student import DistillRunParams

KINDS = ("batch", "spatial", "channel")


def _feats(*shape, seed=0, dtype=torch.float64, relu=False):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(*shape, generator=g, dtype=dtype)
    return f.clamp_min(0) if relu else f


# ------------------------------------------------------------------------------------------- similarity
def test_similarity_matrix_shapes_and_definitions():
    f = _feats(3, 5, 4, 2)
    assert similarity_matrix("batch", f).shape == (3, 3)
    assert similarity_matrix("spatial", f).shape == (3, 8, 8)
    assert similarity_matrix("channel", f).shape == (3, 5, 5)
    # batch: Gram of flattened features, rows divided by their L2 norm (Tung & Mori)
    flat = f.reshape(3, -1)
    q = flat @ flat.T
    torch.testing.assert_close(similarity_matrix("batch", f), q / q.norm(dim=1, keepdim=True))
    # spatial: cosine similarity of positions (eps 1e-7 on the norm); diagonal 1 for non-zero positions
    v = f.reshape(3, 5, 8)
    u = v / (v.norm(dim=1, keepdim=True) + 1e-7)
    torch.testing.assert_close(similarity_matrix("spatial", f), u.transpose(1, 2) @ u)
    assert torch.allclose(
        torch.diagonal(similarity_matrix("spatial", f), dim1=1, dim2=2), torch.ones(3, 8, dtype=f.dtype)
    )
    # channel: cosine similarity of channels
    w = v / (v.norm(dim=2, keepdim=True) + 1e-7)
    torch.testing.assert_close(similarity_matrix("channel", f), w @ w.transpose(1, 2))


def test_similarity_registry_maps_each_kind_to_its_function():
    assert kd_losses.SIMILARITIES == {"batch": kd_losses.batch_similarity, "spatial": kd_losses.spatial_similarity,
                                      "channel": kd_losses.channel_similarity}
    assert kd_losses.SIMILARITY_KINDS == ("batch", "spatial", "channel")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["explicit", "efficient"])
def test_similarity_loss_zero_for_equal_features(kind, mode):
    f = _feats(2, 6, 5, 4, relu=True)  # post-ReLU-like: some zero positions
    assert similarity_loss(kind, f, f.clone(), spatial_mode=mode).abs().item() < 1e-12


def test_similarity_loss_positive_for_different_features():
    a, b = _feats(2, 6, 5, 4, seed=1), _feats(2, 6, 5, 4, seed=2)
    for kind in KINDS:
        assert similarity_loss(kind, a, b).item() > 1e-3


def test_similarity_loss_is_mean_over_every_element():
    a, b = _feats(2, 3, 2, 2, seed=1), _feats(2, 3, 2, 2, seed=2)
    for kind, n in (("batch", 2 * 2), ("spatial", 2 * 4 * 4), ("channel", 2 * 3 * 3)):
        diff = similarity_matrix(kind, a) - similarity_matrix(kind, b)
        assert diff.numel() == n
        torch.testing.assert_close(similarity_loss(kind, a, b, spatial_mode="explicit"), diff.square().sum() / n)


def test_spatial_invariant_to_rescaling_a_position():
    s, t = _feats(2, 6, 4, 4, seed=3), _feats(2, 9, 4, 4, seed=4)
    scaled = s.clone()
    scaled[0, :, 1, 2] *= 7.5  # one position's C-vector
    scaled[1, :, 3, 0] *= 0.2
    for mode in ("explicit", "efficient"):
        base = similarity_loss("spatial", s, t, spatial_mode=mode)
        torch.testing.assert_close(similarity_loss("spatial", scaled, t, spatial_mode=mode), base, rtol=1e-6, atol=0)
    # but not to rescaling a channel
    ch = s.clone()
    ch[:, 2] *= 5.0
    assert not torch.allclose(similarity_loss("spatial", ch, t), similarity_loss("spatial", s, t), rtol=1e-3)


def test_channel_invariant_to_rescaling_a_channel():
    s, t = _feats(2, 6, 4, 4, seed=5), _feats(2, 6, 4, 4, seed=6)
    scaled = s.clone()
    scaled[0, 3] *= 9.0  # one channel's HW-vector
    scaled[1, 0] *= 0.1
    torch.testing.assert_close(similarity_loss("channel", scaled, t), similarity_loss("channel", s, t),
                               rtol=1e-6, atol=0)
    pos = s.clone()
    pos[:, :, 0, 0] *= 5.0
    assert not torch.allclose(similarity_loss("channel", pos, t), similarity_loss("channel", s, t), rtol=1e-3)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_spatial_efficient_equals_explicit_value_and_gradient(dtype, rtol):
    # different channel counts (student 6, teacher 10), some all-zero positions (post-ReLU features)
    s0 = _feats(3, 6, 9, 7, seed=7, dtype=dtype, relu=True)
    s0[0, :, 0, 0] = 0
    t = _feats(3, 10, 9, 7, seed=8, dtype=dtype, relu=True)
    values, grads = [], []
    for mode in ("explicit", "efficient"):
        s = s0.clone().requires_grad_(True)
        loss = similarity_loss("spatial", s, t, spatial_mode=mode)
        loss.backward()
        values.append(loss.detach())
        grads.append(s.grad)
    assert values[0].item() > 1e-3
    torch.testing.assert_close(values[1], values[0], rtol=rtol, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=rtol, atol=rtol * grads[0].abs().max().item())


def test_spatial_auto_mode_choice():
    big_hw, small_hw = _feats(1, 4, 8, 8), _feats(1, 64, 2, 2)
    assert kd_losses.choose_spatial_mode(big_hw, big_hw) == "efficient"
    assert kd_losses.choose_spatial_mode(small_hw, small_hw) == "explicit"
    assert kd_losses.choose_spatial_mode(big_hw, big_hw, "explicit") == "explicit"
    with pytest.raises(ValueError, match="valid modes: auto, explicit, efficient"):
        kd_losses.choose_spatial_mode(big_hw, big_hw, "fast")


def test_spatial_efficient_keeps_half_precision_inputs_accurate():
    s, t = _feats(2, 8, 6, 6, seed=9, dtype=torch.float32), _feats(2, 8, 6, 6, seed=10, dtype=torch.float32)
    ref = similarity_loss("spatial", s, t, spatial_mode="explicit")
    half = spatial_loss_efficient(s.bfloat16(), t.bfloat16())
    assert half.dtype == torch.bfloat16
    assert abs(half.float().item() - ref.item()) < 0.05 * ref.item()


def test_similarity_errors_are_actionable():
    f = _feats(2, 4, 3, 3)
    with pytest.raises(KeyError, match="valid names: batch, spatial, channel"):
        similarity_matrix("spacial", f)
    with pytest.raises(ValueError, match="1×1 adapter"):
        similarity_loss("channel", f, _feats(2, 8, 3, 3))
    with pytest.raises(ValueError, match="spatial sizes differ"):
        similarity_loss("spatial", f, _feats(2, 4, 6, 6))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        similarity_matrix("batch", f[0])


# ------------------------------------------------------------------------------------------- baselines
def test_at_loss():
    s = _feats(2, 4, 6, 6, seed=11)
    assert at_loss(s, 3.0 * s).item() < 1e-12  # attention maps are normalised
    am = attention_map(s)
    assert am.shape == (2, 36)
    torch.testing.assert_close(am.norm(dim=1), torch.ones(2, dtype=am.dtype))
    torch.testing.assert_close(
        am, (s.square().sum(1).flatten(1)) / s.square().sum(1).flatten(1).norm(dim=1, keepdim=True)
    )
    t = _feats(2, 9, 12, 12, seed=12)  # different channels and size: pooled to 6×6
    assert at_loss(s, t).item() > 0
    pooled = torch.nn.functional.adaptive_avg_pool2d(t, (6, 6))
    torch.testing.assert_close(at_loss(s, t), (attention_map(s) - attention_map(pooled)).square().mean())


def test_fsp_matrix_and_loss():
    a, b = _feats(2, 3, 4, 4, seed=13), _feats(2, 5, 2, 2, seed=14)
    g = fsp_matrix(a, b)
    pooled = torch.nn.functional.avg_pool2d(a, 2)
    expected = torch.einsum("bihw,bjhw->bij", pooled, b) / 4
    torch.testing.assert_close(g, expected)
    feats = [a, b, _feats(2, 5, 1, 1, seed=15)]
    assert fsp_loss(feats, [f.clone() for f in feats]).item() == 0.0
    other = [f + 0.1 for f in feats]
    manual = sum(
        (fsp_matrix(feats[i], feats[i + 1]) - fsp_matrix(other[i], other[i + 1])).square().mean() for i in range(2)
    )
    torch.testing.assert_close(fsp_loss(feats, other), manual)
    with pytest.raises(ValueError, match="at least 2"):
        fsp_loss(feats[:1], feats[:1])


# ------------------------------------------------------------------------------------------- golden values
# Tiny features whose losses are worked out by hand in the comments (float64; the 1e-7 norm eps of the
# spatial/channel similarities moves them by ~1e-7, hence rel=1e-6).
def _t(rows) -> torch.Tensor:
    """A (B, C, 1, W) feature map from nested lists [sample][channel][position]."""
    return torch.tensor(rows, dtype=torch.float64)[:, :, None, :]


def test_batch_similarity_loss_golden():
    # samples (flattened) student s1 = (1, 0), s2 = (0, 1): Gram I, rows normalised: I.
    # teacher t1 = t2 = (1, 0): Gram all ones, rows normalised: all 1/√2.
    # squared differences: diagonal (1 − 1/√2)² twice, off-diagonal (1/√2)² = ½ twice; mean over 4 elements
    # = ((1 − 1/√2)² + ½) / 2 = (2 − √2) / 2 = 1 − 1/√2.
    student, teacher = _t([[[1, 0]], [[0, 1]]]), _t([[[1, 0]], [[1, 0]]])
    assert similarity_loss("batch", student, teacher).item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize("mode", ["explicit", "efficient"])
def test_spatial_similarity_loss_golden(mode):
    # one sample, 2 channels, 2 positions. Student positions (1, 0) and (0, 1): cosine matrix I.
    # Teacher positions (1, 0) and (2, 0): parallel, cosine matrix all ones. Differences: 0 on the diagonal,
    # 1 off it; mean over the 4 elements = 2/4 = ½.
    student, teacher = _t([[[1, 0], [0, 1]]]), _t([[[1, 2], [0, 0]]])
    assert similarity_loss("spatial", student, teacher, spatial_mode=mode).item() == pytest.approx(0.5, rel=1e-6)


def test_channel_similarity_loss_golden():
    # one sample, 2 channels over 2 positions. Student channels (1, 0) and (0, 1): cosine matrix I.
    # Teacher channels (1, 0) and (1, 1): cosine 1/√2 between them. Off-diagonal differences 1/√2 (squared ½)
    # twice, diagonal 0; mean over 4 = 1/4.
    student, teacher = _t([[[1, 0], [0, 1]]]), _t([[[1, 0], [1, 1]]])
    assert similarity_loss("channel", student, teacher).item() == pytest.approx(0.25, rel=1e-6)


def test_at_loss_golden():
    # student 2 channels (1, 0) and (0, 0): Σ_c F² per position = (1, 0), normalised (1, 0).
    # teacher 1 channel (1, 2): squares (1, 4), normalised (1, 4)/√17.
    # squared differences (1 − 1/√17)² + 16/17 = 2 − 2/√17; mean over 2 positions = 1 − 1/√17 ≈ 0.757464.
    student, teacher = _t([[[1, 0], [0, 0]]]), _t([[[1, 2]]])
    assert at_loss(student, teacher).item() == pytest.approx(1 - 1 / math.sqrt(17), rel=1e-12)


def test_fsp_loss_golden():
    # G = F1 F2ᵀ / N (N = 2 positions). Student layer 1 channels (1, 2), (0, 1); layer 2 channel (3, 4):
    # G_s = [(1·3 + 2·4)/2, (0·3 + 1·4)/2] = [5.5, 2]. Teacher layer 1 (1, 0), (0, 0); layer 2 (1, 1):
    # G_t = [0.5, 0]. Squared differences 25 and 4; mean over the (1, 2, 1) matrix = 14.5.
    s1, s2 = _t([[[1, 2], [0, 1]]]), _t([[[3, 4]]])
    t1, t2 = _t([[[1, 0], [0, 0]]]), _t([[[1, 1]]])
    assert fsp_matrix(s1, s2).flatten().tolist() == [5.5, 2.0]
    assert fsp_loss([s1, s2], [t1, t2]).item() == pytest.approx(14.5, rel=1e-12)


def test_ofd_margin_matches_the_gaussian_formula():
    m = ofd_margin(torch.tensor([1.0, 2.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 5.0, -1.0]))
    # E[x | x < 0] for x ~ N(beta, gamma^2): beta - gamma * phi(beta/gamma) / Phi(-beta/gamma)
    def phi(z):
        return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def Phi(z):  # noqa: N802 (the normal CDF's usual name)
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))
    expected = [-phi(0) / Phi(0), 1.0 - 2.0 * phi(0.5) / Phi(-0.5), -3.0, -1.0 - 0.5 * phi(-2.0) / Phi(2.0)]
    torch.testing.assert_close(m, torch.tensor(expected), rtol=1e-5, atol=1e-6)  # 3rd: Phi(-5) < 1e-3 -> -3|gamma|
    assert (m < 0).all()


def test_ofd_loss_partial_l2():
    margin = torch.tensor([-0.5, -1.0])
    t = torch.tensor([[[[0.0, 2.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2): post-ReLU teacher, zeros = negative pre-ReLU
    # student at or below the margin where the teacher is 0, equal where it is positive -> 0
    s = torch.tensor([[[[-0.7, 2.0]], [[-1.0, 1.0]]]])
    assert ofd_loss(s, t, margin).item() == 0.0
    # above the margin where the teacher is 0 -> (s - m)^2; positive teacher: full L2
    s2 = torch.tensor([[[[0.5, 1.0]], [[-2.0, 3.0]]]])
    assert ofd_loss(s2, t, margin).item() == pytest.approx((0.5 + 0.5) ** 2 + 1.0 + 0 + 4.0)
    # no ReLU (decoder layers): plain squared error, per sample
    assert ofd_loss(s2.repeat(2, 1, 1, 1), t.repeat(2, 1, 1, 1), None).item() == pytest.approx(
        ((s2 - t) ** 2).sum().item())


# ------------------------------------------------------------------------------------------- configs
def test_paper_configs_are_exactly_the_tables_rows():
    assert list(PAPER_CONFIGS) == ["student", "hinton", "at", "fsp", "ofd", "batch", "spatial", "channel",
                                   "spatial+channel", "batch+spatial+channel"]
    assert PAPER_CONFIGS["student"] == DistillConfig(teacher_alpha_weight=0.0)
    assert PAPER_CONFIGS["hinton"].types == () and PAPER_CONFIGS["hinton"].teacher_alpha_weight == 0.5
    assert PAPER_CONFIGS["ofd"].teacher_alpha_weight == 0.0 and PAPER_CONFIGS["ofd"].weights == (0.016,)
    sc = PAPER_CONFIGS["spatial+channel"]
    assert sc.types == ("spatial", "channel") and sc.weights == (1.0, 1.0) and sc.teacher_alpha_weight == 0.5
    assert all(c.layers == ("conv2", "conv3", "conv4", "conv5") for c in PAPER_CONFIGS.values())
    assert not PAPER_CONFIGS["student"].uses_teacher and PAPER_CONFIGS["hinton"].uses_teacher


def test_parsing_and_names():
    assert parse_types("spatial,channel") == parse_types("spatial+channel") == ("spatial", "channel")
    assert parse_weights("1, 0.5") == (1.0, 0.5)
    assert parse_layers("conv2-5") == ("conv2", "conv3", "conv4", "conv5")
    assert parse_layers("conv3-5,dconv5") == ("conv3", "conv4", "conv5", "dconv5")
    assert parse_layers("conv5+dconv5-3") == ("conv5", "dconv5", "dconv4", "dconv3")
    assert parse_layers("conv4-5+dconv5-4") == distill.LAYER_ABLATION["conv4-5+dconv5-4"]
    assert make_config("spatial+channel") == PAPER_CONFIGS["spatial+channel"]
    custom = make_config("spatial+channel", layers="conv3-5,dconv5")
    assert custom.layers == ("conv3", "conv4", "conv5", "dconv5") and custom.types == ("spatial", "channel")
    assert make_config(types="channel,spatial") != PAPER_CONFIGS["spatial+channel"]  # order = weight order
    assert config_label(make_config(types="spatial+channel")) == "spatial+channel"
    assert config_label(custom) == "spatial+channel-Lconv3.conv4.conv5.dconv5"
    assert config_label(make_config("spatial", weights="2")) == "spatial-w2"
    assert config_label(make_config("at", teacher_alpha_weight=0.0)) == "at-t0"
    assert make_config("at", teacher_alpha_weight=-1).teacher_alpha_weight == 0.5
    assert config_label(make_config("spatial", spatial_mode="explicit")) == "spatial"
    assert run_name(PAPER_CONFIGS["spatial+channel"], 0) == "kd-spatial+channel-seed0"
    assert run_name("student", 3) == "kd-student-seed3"
    assert make_config("ofd").to_dict()["types"] == ["ofd"]


def test_unknown_names_give_helpful_errors():
    with pytest.raises(KeyError, match="unknown configuration 'spacial'; valid names: student, hinton"):
        make_config("spacial")
    with pytest.raises(KeyError, match="unknown distillation type 'spacial'; valid names: batch, spatial"):
        DistillConfig(types=("spacial",), weights=(1.0,))
    with pytest.raises(KeyError, match="valid names: batch"):
        parse_types("spatial,chanel")
    with pytest.raises(KeyError, match="valid names: conv1"):
        parse_layers("conv2,conv9")
    with pytest.raises(KeyError, match="expected names like conv2"):
        parse_layers("stage2")
    with pytest.raises(ValueError, match="one weight per type"):
        DistillConfig(types=("spatial", "channel"), weights=(1.0,))
    with pytest.raises(ValueError, match="fsp needs at least two layers"):
        make_config("fsp", layers="conv5")
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_weights("1,x")
    with pytest.raises(ValueError, match="teacher_alpha_weight"):
        DistillConfig(teacher_alpha_weight=1.5)
    with pytest.raises(KeyError) as err:
        make_config("x")
    assert str(err.value).startswith("unknown configuration 'x'")  # no KeyError quoting


# ------------------------------------------------------------------------------------------- objective
def _tiny_batch(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    trimap = torch.full((n, 1, size, size), 128 / 255)
    trimap[:, :, : size // 4] = 0.0
    trimap[:, :, -size // 4:] = 1.0
    image = torch.randn(n, 3, size, size, generator=g)
    return {"input": torch.cat([image, trimap], 1), "alpha": torch.rand(n, 1, size, size, generator=g),
            "trimap": trimap}


def _tiny_pair(seed=0):
    torch.manual_seed(seed)
    return build_teacher(width=1 / 16), build_student(width=1 / 16)


def test_full_width_channel_adapters_have_the_papers_parameter_count():
    teacher, student = build_teacher(), build_student()
    assert count_parameters(DistillObjective(teacher, student, PAPER_CONFIGS["channel"])) == 304_512
    assert count_parameters(student) + 304_512 == 5_181_795
    assert count_parameters(DistillObjective(teacher, student, PAPER_CONFIGS["spatial"])) == 0


def test_teacher_is_frozen_and_not_registered():
    teacher, student = _tiny_pair()
    teacher.train()
    obj = DistillObjective(teacher, student, PAPER_CONFIGS["batch+spatial+channel"])
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    n_teacher = sum(1 for _ in teacher.parameters())
    assert len(list(obj.parameters())) == 8  # 4 adapters (weight, bias); no teacher parameter
    assert all(k.startswith("adapters.") for k in obj.state_dict())
    obj.train()
    assert obj.adapters.training and not teacher.training
    obj.eval()
    obj.train()
    assert not teacher.training and n_teacher > 0
    obj.double()  # moves/casts the teacher along with the objective
    assert next(teacher.parameters()).dtype == torch.float64


def test_gradients_reach_only_student_and_adapters():
    teacher, student = _tiny_pair()
    for name in ("batch+spatial+channel", "ofd", "fsp"):
        obj = DistillObjective(teacher, student, PAPER_CONFIGS[name])
        student.zero_grad(set_to_none=True)
        loss, logs = obj(student, _tiny_batch())
        loss.backward()
        assert all(p.grad is None for p in teacher.parameters()), name
        assert all(p.grad is not None for p in student.parameters()), name
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.parameters()), name


def test_loss_is_the_documented_sum_of_terms():
    teacher, student = _tiny_pair(seed=1)
    batch = _tiny_batch(seed=1)
    loss, logs = DistillObjective(teacher, student, PAPER_CONFIGS["hinton"])(student, batch)
    assert set(logs) == {"loss", "alpha", "alpha_teacher"}
    assert logs["loss"] == pytest.approx((logs["alpha"] + logs["alpha_teacher"]) / 2, rel=1e-6)
    cfg = make_config("spatial+channel", weights="2,3")
    loss, logs = DistillObjective(teacher, student, cfg)(student, batch)
    assert logs["loss"] == pytest.approx((logs["alpha"] + logs["alpha_teacher"]) / 2 + 2 * logs["kd_spatial"]
                                         + 3 * logs["kd_channel"], rel=1e-6)
    loss, logs = DistillObjective(None, student, PAPER_CONFIGS["student"])(student, batch)
    assert set(logs) == {"loss", "alpha"} and logs["loss"] == pytest.approx(logs["alpha"])
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillObjective(None, student, PAPER_CONFIGS["hinton"])


def test_spatial_mode_does_not_change_the_objective():
    teacher, student = _tiny_pair(seed=2)
    batch = _tiny_batch(seed=2)
    vals = [DistillObjective(teacher, student, make_config("spatial", spatial_mode=m))(student, batch)[1]["kd_spatial"]
            for m in ("explicit", "efficient")]
    assert vals[0] > 0 and vals[1] == pytest.approx(vals[0], rel=1e-4)


@pytest.mark.parametrize("name", list(PAPER_CONFIGS))
def test_every_paper_config_trains_a_few_steps(name):
    teacher, student = _tiny_pair(seed=3)
    obj = DistillObjective(teacher, student, PAPER_CONFIGS[name])
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    params = list(student.parameters()) + list(obj.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    student.train(), obj.train()
    batch = _tiny_batch(seed=3)
    before = [p.detach().clone() for p in student.parameters()]
    for _ in range(3):
        loss, logs = obj(student, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(loss.item()) and logs["loss"] == pytest.approx(loss.item())
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    for t in PAPER_CONFIGS[name].types:
        assert f"kd_{t}" in logs
    # the frozen teacher (incl. BatchNorm running statistics) never changes
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_layer_ablation_with_decoder_layers_runs():
    teacher, student = _tiny_pair(seed=4)
    for key in distill.LAYER_ABLATION:
        obj = DistillObjective(teacher, student, make_config("spatial+channel", layers=key))
        loss, logs = obj(student, _tiny_batch(seed=4))
        assert math.isfinite(loss.item()) and logs["kd_channel"] > 0
    obj = DistillObjective(teacher, student, make_config("ofd", layers="conv5,dconv5"))
    assert "margin_conv5" in obj._buffers and "margin_dconv5" not in obj._buffers
    assert math.isfinite(obj(student, _tiny_batch())[0].item())


def test_registry_is_a_plain_dict():
    assert isinstance(KD_LOSSES, dict) and set(KD_LOSSES) == {"batch", "spatial", "channel", "at", "fsp", "ofd"}


class _TinySet(torch.utils.data.Dataset):
    def __init__(self, n=4):
        b = _tiny_batch(n=n, seed=5)
        self.items = [{k: v[i] for k, v in b.items()} for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_objective_in_the_training_loop_checkpoints_adapters_not_teacher(tmp_path):
    from matting_lib.networks.checkpoints import load_checkpoint
    from matting_lib.settings import TrainConfig
    from matting_lib.training.loop import train

    teacher, student = _tiny_pair(seed=6)
    obj = DistillObjective(teacher, student, PAPER_CONFIGS["spatial+channel"])
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=2, device="cpu", progress=False, val_every=2)
    result = train(student, obj, _TinySet(), _TinySet(2), cfg, tmp_path / "run")
    assert result.step == 2 and math.isfinite(result.last_loss)
    ckpt = load_checkpoint(result.last_path)
    assert sorted(ckpt["objective"]) == sorted(obj.state_dict()) and ckpt["objective"]
    assert all(k.startswith("adapters.") for k in ckpt["objective"])
    header = result.log_path.read_text().splitlines()[0].split(",")
    assert {"alpha", "alpha_teacher", "kd_spatial", "kd_channel", "val_loss"} <= set(header)
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name", ["hinton", "spatial+channel", "ofd"])
def test_teacher_cache_gives_bit_identical_students(tmp_path, name):
    """One teacher forward per batch per seed: a cold cache (computes and stores) and a warm one (reads) train
    exactly the students that computing the teacher in every run trains."""
    from matting_lib.distillation.teacher_cache import TeacherOutputCache
    from matting_lib.settings import TrainConfig
    from matting_lib.training.loop import train

    def run(cache, folder):
        teacher, student = _tiny_pair(seed=6)
        obj = DistillObjective(teacher, student, PAPER_CONFIGS[name], teacher_cache=cache)
        cfg = TrainConfig(lr=1e-2, batch_size=2, steps=4, device="cpu", progress=False, val_every=4, seed=1)
        train(student, obj, _TinySet(), None, cfg, tmp_path / folder)
        return student.state_dict(), obj.state_dict()

    plain = run(None, "plain")
    cold_cache = TeacherOutputCache(tmp_path / "cache", "teacher-a")
    cold = run(cold_cache, "cold")
    warm_cache = TeacherOutputCache(tmp_path / "cache", "teacher-a")
    warm = run(warm_cache, "warm")
    assert cold_cache.misses == 4 and cold_cache.hits == 0  # 4 steps, each batch a new pairing of the 4 items
    assert warm_cache.hits == 4 and warm_cache.misses == 0
    for got in (cold, warm):
        for a, b in zip(plain, got):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_cache_recomputes_damaged_entries_and_keys_by_teacher(tmp_path):
    from matting_lib.distillation.teacher_cache import TeacherOutputCache

    x = _tiny_batch(seed=3)["input"]
    out = (torch.rand(2, 1, 64, 64), {"conv2": torch.rand(2, 3, 16, 16)})
    cache = TeacherOutputCache(tmp_path, "t1")
    cache.get(x, ["conv2"], lambda: out)
    path = cache.path(cache.key(x, ["conv2"]))
    path.write_bytes(b"damaged")
    alpha, feats = cache.get(x, ["conv2"], lambda: out)
    assert cache.misses == 2 and torch.equal(alpha, out[0]) and torch.equal(feats["conv2"], out[1]["conv2"])
    assert torch.equal(torch.load(path, weights_only=True)["alpha"], out[0])  # rewritten
    other = TeacherOutputCache(tmp_path, "t2")
    other.get(x, ["conv2"], lambda: out)
    assert other.misses == 1  # another teacher never reads t1's outputs
    assert cache.key(x, ["conv2"]) != cache.key(x, ["conv3"]) != cache.key(x + 1, ["conv2"])
    with pytest.raises(ValueError, match="plain name"):
        TeacherOutputCache(tmp_path, "../x")


def test_frozen_inference_copy_folds_every_batchnorm_and_leaves_the_teacher_alone():
    """The KD teacher's forward: the BN-folded channels_last copy computes the eval-mode teacher's function (float
    rounding apart), shares nothing with it, and DistillObjective takes its teacher outputs from it."""
    from matting_lib.networks.models import frozen_inference_copy

    torch.manual_seed(0)
    teacher = build_teacher(0.0625)
    for m in teacher.modules():  # BatchNorms that are not the identity, so the folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.1, 0.1)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fast = frozen_inference_copy(teacher)
    assert teacher.training and not fast.training  # the original's mode is kept
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules()) == 18
    assert not any(p.requires_grad for p in fast.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    x = _tiny_batch(seed=2)["input"]
    layers = ("conv2", "conv5", "dconv3")
    with torch.no_grad():
        want = teacher.eval().forward_features(x, layers)
        got = fast.forward_features(x.contiguous(memory_format=torch.channels_last), layers)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)
    for layer in layers:
        torch.testing.assert_close(got[1][layer], want[1][layer], rtol=1e-4, atol=1e-4)
    fast.down1.conv1.cbr_unit[0].weight.data.zero_()  # no shared storage
    assert torch.equal(teacher.state_dict()["down1.conv1.cbr_unit.0.weight"], before["down1.conv1.cbr_unit.0.weight"])

    student = build_student(0.0625)
    obj = DistillObjective(teacher, student, PAPER_CONFIGS["spatial"])
    alpha, feats = obj._teacher_outputs(x, ("conv2",))
    with torch.no_grad():
        ref = frozen_inference_copy(teacher).forward_features(x.contiguous(memory_format=torch.channels_last),
                                                              ("conv2",))
    assert torch.equal(alpha, ref[0]) and torch.equal(feats["conv2"], ref[1]["conv2"])
    assert alpha.is_contiguous() and feats["conv2"].is_contiguous()
    obj.double()  # moving the objective remakes the copy from the moved teacher
    assert obj._teacher_outputs(x.double(), ("conv2",))[0].dtype == torch.float64


# ------------------------------------------------------------------------------------------- notebook 03's params
def test_distill_run_params_validate_and_name_the_run():
    p = DistillRunParams()
    assert p.distill_config == make_config("spatial+channel") and p.run_name == "kd-spatial+channel-seed0"
    assert p.lr_decay_steps == ()
    q = DistillRunParams(config="spatial", layers="conv3-5,dconv5", seed=2, lr_decay="300,400")
    assert q.run_name == run_name(make_config("spatial", layers="conv3-5,dconv5"), 2) != "kd-spatial-seed2"
    assert q.distill_config.layers == ("conv3", "conv4", "conv5", "dconv5") and q.lr_decay_steps == (300, 400)
    assert DistillRunParams(config="at", teacher_alpha_weight=0.0).distill_config.teacher_alpha_weight == 0.0
    for bad, match in [({"config": "spatail"}, "spatail.*valid"), ({"steps": 0}, "steps must be >= 1"),
                       ({"val_every": -1}, "val_every must be >= 0"), ({"width": 0.0}, "width and lr must be > 0"),
                       ({"lr_decay": "10,x"}, "lr_decay='10,x'"), ({"layers": "conv9"}, "conv9"),
                       ({"spatial_mode": "fast"}, "spatial_mode")]:
        with pytest.raises(ValueError, match=match):
            DistillRunParams(**bad)
