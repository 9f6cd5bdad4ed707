"""Networks: exact parameter counts and state-dict names of the paper, features by name, any input size."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, SHARED

from matting_lib.networks.models import (
    DECODER_LAYERS,
    ENCODER_LAYERS,
    LAYERS,
    build_channel_adapters,
    build_model,
    build_student,
    build_teacher,
    count_parameters,
    scale_channels,
)

# The 126 state-dict keys and shapes of DIM-PyTorch's public checkpoint (a copy of the project's
# shared/paper/teacher_state_dict_keys.txt, kept here so the suite runs without shared/).
KEYS_FILE = REPO / "tests" / "data" / "teacher_state_dict_keys.txt"


@pytest.mark.skipif(not (SHARED / "paper").is_dir(), reason="shared/ is not beside this checkout")
def test_key_list_copy_matches_shared():
    assert KEYS_FILE.read_text() == (SHARED / "paper" / "teacher_state_dict_keys.txt").read_text()


def _reference_keys():
    rows = [line.split() for line in KEYS_FILE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return [(k, [int(d) for d in shape.strip("[]").split(",") if d]) for k, shape in rows]


def test_paper_parameter_counts():
    teacher, student = build_teacher(1.0), build_student(1.0)
    assert count_parameters(teacher) == 25_582_595
    assert count_parameters(student) == 4_877_283
    adapters = build_channel_adapters(student, teacher)
    assert count_parameters(adapters) == 304_512
    assert count_parameters(student) + count_parameters(adapters) == 5_181_795
    assert {k: (m.in_channels, m.out_channels) for k, m in adapters.items()} == {
        "conv2": (64, 128), "conv3": (128, 256), "conv4": (256, 512), "conv5": (256, 512)}


def test_teacher_state_dict_equals_dim_pytorch():
    ref = _reference_keys()
    assert len(ref) == 126
    got = [(k, list(v.shape)) for k, v in build_teacher().state_dict().items()]
    assert got == ref


def test_feature_channels_and_shapes():
    t, s = build_teacher(1.0), build_student(1.0)
    assert [t.feature_channels[k] for k in LAYERS] == [64, 128, 256, 512, 512, 512, 256, 128, 64]
    assert [s.feature_channels[k] for k in LAYERS] == [32, 64, 128, 256, 256, 256, 128, 64, 32]
    small = build_teacher(0.0625)
    x = torch.randn(2, 4, 67, 50)  # odd sizes: pooling floors, unpooling restores the stored size
    alpha, feats = small.forward_features(x, LAYERS)
    assert alpha.shape == (2, 1, 67, 50) and 0 <= alpha.min() and alpha.max() <= 1
    sizes = [(33, 25), (16, 12), (8, 6), (4, 3), (2, 1)]
    for k, name in enumerate(ENCODER_LAYERS):
        assert feats[name].shape == (2, small.feature_channels[name], *sizes[k])
    for k, name in enumerate(DECODER_LAYERS):  # dconv5 at the size of conv4's input, ...
        assert feats[name].shape == (2, small.feature_channels[name], *([(67, 50)] + sizes)[4 - k])
    small.eval()
    assert torch.equal(small(x), small.forward_features(x, ["conv3"])[0])
    assert list(small.forward_features(x, ["dconv3", "conv1"])[1]) == ["conv1", "dconv3"]


def test_width_rule_and_errors():
    assert scale_channels(64, 0.5) == 32 and scale_channels(64, 0.01) == 4 and scale_channels(6, 0.75) == 5
    m = build_student(0.25)
    assert m.arch["widths"] == [8, 16, 32, 64, 64] and m.arch["kind"] == "student"
    with pytest.raises(ValueError, match="valid names are"):
        m.forward_features(torch.zeros(1, 4, 32, 32), ["conv6"])
    with pytest.raises(ValueError, match="≥ 32"):
        m(torch.zeros(1, 4, 31, 64))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        m(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="valid kinds"):
        build_model("teachr")
    with pytest.raises(ValueError, match="width"):
        build_teacher(0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = build_student(0.125)
    m(torch.randn(2, 4, 32, 48)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
