"""The similarity explorer's computations and widget callbacks, called directly (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matting_lib.explorer import SimilarityExplorer, cluster_order
from matting_lib.models import build_channel_adapters, build_student, build_teacher


@pytest.fixture(scope="module")
def explorer():
    torch.manual_seed(0)
    t, s = build_teacher(0.125), build_student(0.125)
    x = torch.randn(3, 4, 64, 64)
    imgs = np.zeros((3, 64, 64, 3), np.uint8)
    ad = build_channel_adapters(s, t)
    return SimilarityExplorer({"teacher": t, "student": s}, x, imgs, adapters={"student": ad})


def test_matrices_shapes_and_properties(explorer):
    b = explorer.matrix("teacher", "conv2", "batch")
    assert b.shape == (3, 3)
    sp = explorer.matrix("teacher", "conv2", "spatial", image=1)
    h, w = explorer.feature_grid("conv2")
    assert (h, w) == (16, 16) and sp.shape == (h * w, h * w)
    assert np.allclose(sp, sp.T, atol=1e-5)
    ch_t = explorer.matrix("teacher", "conv3", "channel")
    ch_s = explorer.matrix("student", "conv3", "channel")  # through the adapter: teacher's channel count
    ch_raw = explorer.matrix("student", "conv3", "channel", adapted=False)
    assert ch_t.shape == ch_s.shape and ch_raw.shape[0] == ch_t.shape[0] // 2
    row = explorer.spatial_row("teacher", "conv2", 0, 3, 4)
    assert row.shape == (h, w)
    norm = float(explorer.features("teacher")["conv2"][0, :, 3, 4].norm())
    assert row[3, 4] == pytest.approx(1.0 if norm > 1e-3 else 0.0, abs=1e-3)  # cosine with itself
    with pytest.raises(ValueError, match="outside"):
        explorer.spatial_row("teacher", "conv2", 0, h, 0)
    with pytest.raises(ValueError, match="valid"):
        explorer.matrix("teacher", "conv2", "pixel")
    with pytest.raises(KeyError, match="loaded"):
        explorer.matrix("nobody", "conv2", "batch")


def test_cluster_order_groups_blocks():
    m = np.full((6, 6), -0.5)
    for idx in ([0, 2, 4], [1, 3, 5]):
        m[np.ix_(idx, idx)] = 0.9
    order = list(cluster_order(m))
    assert sorted(order) == list(range(6))
    assert set(order[:3]) in ({0, 2, 4}, {1, 3, 5})


def test_widget_callbacks_redraw(explorer):
    ui = explorer.widget()
    c, _ = explorer._widgets
    first = explorer.last_figure
    assert first is not None and len(first.axes) >= 3
    c["kind"].value = "channel"  # the observer redraws
    assert explorer.last_figure is not first
    assert c["y"].disabled and not c["sort_channels"].disabled
    c["sort_channels"].value = True
    c["layer"].value = "conv5"
    h, w = explorer.feature_grid("conv5")
    assert c["y"].max == h - 1 and c["x"].max == w - 1
    c["kind"].value = "spatial"
    assert not c["y"].disabled
    assert ui.children  # a VBox with the controls
