"""The similarity explorer's computations and widget callbacks, called directly (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matting_lib.networks.models import build_channel_adapters, build_student, build_teacher
from matting_lib.reporting.explorer import SimilarityExplorer, cluster_order, mean_differences


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


def _clims(fig, n):
    return [fig.axes[i].images[0].get_clim() for i in range(n)]


def test_batch_view_shares_one_colour_scale_and_disables_the_image_slider(explorer):
    explorer.widget()
    c, _ = explorer._widgets
    c["kind"].value = "batch"
    assert c["image"].disabled  # batch similarity compares all images: the slider would do nothing
    fig = explorer.last_figure
    left, right = (explorer.matrix(m, c["layer"].value, "batch") for m in ("teacher", "student"))
    assert left.min() != right.min()  # the two models' matrices span different ranges here ...
    (lo_l, hi_l), (lo_r, hi_r) = _clims(fig, 2)
    assert (lo_l, hi_l) == (lo_r, hi_r) == (pytest.approx(min(left.min(), right.min())), 1.0)  # ... one scale
    c["kind"].value = "channel"
    assert not c["image"].disabled
    assert len({clim for clim in _clims(explorer.last_figure, 2)}) == 1


def test_show_displays_the_widget_and_a_static_picture_of_the_initial_view(explorer, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    explorer.show()
    shown = [o for o in shown if type(o).__name__ != "Figure"]  # the figure drawn into the widget's Output
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["VBox", "Markdown", "Image"]
    png = shown[-1].data
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "run all cells" in shown[kinds.index("Markdown")].data


def test_similarity_panels_share_the_scale_of_each_kind():
    from matting_lib.reporting import figures

    fig = figures.similarity_panels({"t": {"batch": np.eye(3), "spatial": np.full((2, 2), 0.5)},
                                     "s": {"batch": np.full((3, 3), 0.2), "spatial": np.full((2, 2), -0.5)}})
    clim = {ax.get_title(): ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert clim["t: batch"] == clim["s: batch"] == (0.0, 1.0)
    assert clim["t: spatial"] == clim["s: spatial"] == (-0.5, 0.5)


def test_overview_and_mean_differences(explorer):
    mats = explorer.overview("conv3")
    h, w = explorer.feature_grid("conv3")
    assert set(mats) == {"teacher", "student"} and mats["teacher"]["spatial"].shape == (h, w)
    assert mats["student"]["channel"].shape[0] == mats["teacher"]["channel"].shape[0] // 2  # no adapter
    diff = mean_differences(mats, "teacher")
    assert set(diff) == {"student"} and set(diff["student"]) == {"batch", "spatial"}  # channel shapes differ
    assert diff["student"]["batch"] == pytest.approx(np.abs(mats["student"]["batch"] - mats["teacher"]["batch"]).mean())
    assert diff["student"]["spatial"] > 0


def test_trained_students_and_load_models(tmp_path):
    from matting_lib.networks.checkpoints import save_checkpoint
    from matting_lib.reporting import explorer as E

    torch.manual_seed(0)
    t, s = build_teacher(0.125), build_student(0.125)
    ad = build_channel_adapters(s, t)
    run = tmp_path / "students" / "kd-channel-seed0"
    save_checkpoint(run / "best.pt", model=s, objective=torch.nn.ModuleDict({"adapters": ad}), config={}, epoch=0,
                    step=0, metrics={})
    save_checkpoint(tmp_path / "teacher.pt", model=t, config={}, epoch=0, step=0, metrics={})
    found = E.trained_students(tmp_path, ["student", "channel"], 0)
    assert found == {"channel": run / "best.pt"}  # the untrained configuration is left out
    nets, adapters = E.load_models({"teacher": tmp_path / "teacher.pt", **found})
    assert set(nets) == {"teacher", "channel"} and set(adapters) == {"channel"}
    assert set(adapters["channel"]) == set(ad)
