"""Interactive similarity explorer (notebook 05): teacher vs student similarity matrices with ipywidgets.

Choose a test image, a layer, a similarity kind and two models; see both matrices and their difference.
For ``spatial`` a position (sliders over the feature grid) selects one row of the (HW × HW) matrix, shown
as a heat map over the image; for ``channel`` the channels can be sorted by hierarchical clustering so that
block structure becomes visible. ``batch`` compares the B × B matrix of all loaded images.

The computation (:meth:`SimilarityExplorer.matrix`) is separate from the widgets, so tests call the
callbacks directly and the notebook also executes headlessly under papermill.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython import display as ipd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from torch import nn

from matting_lib.data.compositing import list_test_items
from matting_lib.data.datasets import make_input
from matting_lib.data.layout import read_rgb, read_trimap
from matting_lib.data.trimap import snap_trimap
from matting_lib.distillation.kd_losses import SIMILARITY_KINDS, similarity_matrix
from matting_lib.networks.checkpoints import load_checkpoint, load_model
from matting_lib.paths import RunLayout


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering of the rows of a (C, C) similarity matrix."""
    c = matrix.shape[0]
    if c < 3:
        return np.arange(c)
    dist = np.clip(1.0 - (matrix + matrix.T) / 2, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


class SimilarityExplorer:
    """Similarity matrices of several models on a fixed batch of images.

    Args:
        models: name -> DIMNet (e.g. ``{"teacher": t, "no-KD student": s0, "spatial+channel": s1}``).
        inputs: (B, 4, H, W) network inputs (all images at one size so batch similarity is defined).
        images: (B, H, W, 3) uint8 RGB, for display.
        adapters: optional name -> ModuleDict of 1×1 adapters (layer -> conv) mapping that model's features to
            the teacher's channel count, used for ``channel`` (as in training) when present.
        layers: layers offered in the layer menu.
    """

    def __init__(self, models: Mapping[str, nn.Module], inputs: torch.Tensor, images: np.ndarray, *,
                 adapters: Mapping[str, nn.ModuleDict] | None = None,
                 layers: Sequence[str] = ("conv2", "conv3", "conv4", "conv5")):
        if len(models) < 1:
            raise ValueError("SimilarityExplorer needs at least one model")
        if inputs.shape[0] != len(images):
            raise ValueError(f"inputs has {inputs.shape[0]} images but images has {len(images)}")
        self.models = dict(models)
        self.inputs = inputs
        self.images = np.asarray(images)
        self.adapters = dict(adapters or {})
        self.layers = tuple(layers)
        self._features: dict[str, dict[str, torch.Tensor]] = {}
        self._widgets = None
        self._updating = False
        self.last_figure: plt.Figure | None = None

    # ------------------------------------------------------------------ computation
    def features(self, model: str) -> dict[str, torch.Tensor]:
        """All offered layers' features of ``model`` on the whole batch (computed once, cached)."""
        if model not in self.models:
            raise KeyError(f"unknown model {model!r}; loaded: {', '.join(self.models)}")
        if model not in self._features:
            net = self.models[model].eval()
            with torch.no_grad():
                _, feats = net.forward_features(self.inputs, self.layers)
                ad = self.adapters.get(model)
                if ad is not None:
                    feats.update({f"{name}@adapted": ad[name](feats[name]) for name in self.layers if name in ad})
            self._features[model] = feats
        return self._features[model]

    def matrix(self, model: str, layer: str, kind: str, image: int = 0, *, adapted: bool = True) -> np.ndarray:
        """The similarity matrix shown for (model, layer, kind): batch (B, B), spatial (HW, HW) or channel
        (C, C) of image ``image``. ``adapted`` uses the model's adapter output for channel when it has one."""
        if kind not in SIMILARITY_KINDS:
            raise ValueError(f"unknown similarity kind {kind!r}; valid: {', '.join(SIMILARITY_KINDS)}")
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; offered: {', '.join(self.layers)}")
        feats = self.features(model)
        f = feats.get(f"{layer}@adapted", feats[layer]) if (adapted and kind == "channel") else feats[layer]
        if kind == "batch":
            return similarity_matrix("batch", f).numpy()
        return similarity_matrix(kind, f[image:image + 1])[0].numpy()

    def feature_grid(self, layer: str) -> tuple[int, int]:
        """(h, w) of a layer's feature map."""
        f = self.features(next(iter(self.models)))[layer]
        return int(f.shape[-2]), int(f.shape[-1])

    def spatial_row(self, model: str, layer: str, image: int, y: int, x: int) -> np.ndarray:
        """Cosine similarity of position (y, x) to every position: (h, w)."""
        h, w = self.feature_grid(layer)
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"position ({y}, {x}) is outside the {h}×{w} grid of {layer}")
        return self.matrix(model, layer, "spatial", image)[y * w + x].reshape(h, w)

    def overview(self, layer: str) -> dict[str, dict[str, np.ndarray]]:
        """Per model, the three kinds on image 0 as notebook 04 draws them: batch (B, B), the spatial similarity of
        the centre position as an (h, w) map, and channel (C, C) without adapters (a half-width student: C / 2)."""
        h, w = self.feature_grid(layer)
        return {name: {"batch": self.matrix(name, layer, "batch"),
                       "spatial": self.spatial_row(name, layer, 0, h // 2, w // 2),
                       "channel": self.matrix(name, layer, "channel", adapted=False)} for name in self.models}

    # ------------------------------------------------------------------ drawing
    def figure(self, *, image: int, layer: str, kind: str, left: str, right: str, y: int = 0, x: int = 0,
               sort_channels: bool = False) -> plt.Figure:
        """Left model, right model and |difference| (when shapes match), for the chosen view."""
        if kind == "spatial":
            mats = [self.spatial_row(m, layer, image, y, x) for m in (left, right)]
        else:
            mats = [self.matrix(m, layer, kind, image) for m in (left, right)]
            if kind == "channel" and sort_channels:
                mats = [m[np.ix_(o, o)] for m, o in ((m, cluster_order(m)) for m in mats)]
        same = mats[0].shape == mats[1].shape
        n = 3 + (kind == "spatial") if same else 2 + (kind == "spatial")
        fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2))
        col = 0
        if kind == "spatial":
            h, w = mats[0].shape
            img = self.images[image]
            axes[0].imshow(img)
            sy, sx = img.shape[0] / h, img.shape[1] / w
            axes[0].plot([(x + 0.5) * sx], [(y + 0.5) * sy], "r+", ms=14, mew=2)
            axes[0].set_title(f"image {image}, position ({y}, {x})", fontsize=9)
            col = 1
        # one colour scale for both models' panels, so equal colours mean equal similarities: cosines span
        # [-1, 1]; batch similarity (row-normalised Gram matrix) is scaled to the range of the two matrices
        vmin, vmax = (-1.0, 1.0) if kind != "batch" else (min(float(m.min()) for m in mats), 1.0)
        for name, mat in zip((left, right), mats):
            ax = axes[col]
            im = ax.imshow(mat, cmap="viridis", vmin=vmin, vmax=vmax)
            ax.set_title(f"{name}\n{layer} {kind} {tuple(mat.shape)}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
            col += 1
        if same:
            im = axes[col].imshow(np.abs(mats[0] - mats[1]), cmap="magma")
            axes[col].set_title(f"|difference|, mean {np.abs(mats[0] - mats[1]).mean():.3f}", fontsize=9)
            fig.colorbar(im, ax=axes[col], fraction=0.046)
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ widgets
    def widget(self):
        """The ipywidgets UI (a VBox). Every control's change calls :meth:`update`."""
        names = list(self.models)
        h, w = self.feature_grid(self.layers[0])
        c = {
            "image": W.IntSlider(0, 0, len(self.images) - 1, description="image"),
            "layer": W.Dropdown(options=self.layers, description="layer"),
            "kind": W.ToggleButtons(options=SIMILARITY_KINDS, value="spatial", description="kind"),
            "left": W.Dropdown(options=names, value=names[0], description="left"),
            "right": W.Dropdown(options=names, value=names[-1], description="right"),
            "y": W.IntSlider(h // 2, 0, h - 1, description="row y"),
            "x": W.IntSlider(w // 2, 0, w - 1, description="col x"),
            "sort_channels": W.Checkbox(False, description="sort channels (clustering)"),
        }
        out = W.Output()
        self._widgets = (c, out)
        for ctl in c.values():
            ctl.observe(lambda _change: self.update(), names="value")
        self.update()
        return W.VBox([W.HBox([c["image"], c["layer"]]), c["kind"], W.HBox([c["left"], c["right"]]),
                       W.HBox([c["y"], c["x"], c["sort_channels"]]), out])

    def snapshot_png(self) -> bytes:
        """The view drawn last (by :meth:`widget` or a control), as PNG bytes."""
        if self.last_figure is None:
            raise RuntimeError("call widget() first")
        buf = io.BytesIO()
        self.last_figure.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def show(self) -> None:
        """Display the widget, then a static picture of its initial view: a saved notebook keeps no widget state
        (papermill's executed copy would show only ``VBox(children=...)``), but it keeps that picture."""
        ui = self.widget()
        ipd.display(ui)
        ipd.display(ipd.Markdown("*The initial view as a static picture, kept in the saved notebook. The controls "
                                 "above need a running kernel: open the notebook in JupyterLab and run all cells.*"))
        ipd.display(ipd.Image(self.snapshot_png()))

    def update(self) -> plt.Figure:
        """Redraw from the widgets' current values (called by every control; also callable in tests)."""
        if self._widgets is None:
            raise RuntimeError("call widget() first")
        if self._updating:  # adjusting the sliders below fires their observers again
            return self.last_figure

        c, out = self._widgets
        self._updating = True
        try:
            h, w = self.feature_grid(c["layer"].value)
            c["y"].max, c["x"].max = h - 1, w - 1  # the grid depends on the layer
            c["y"].disabled = c["x"].disabled = c["kind"].value != "spatial"
            c["image"].disabled = c["kind"].value == "batch"  # batch similarity compares all loaded images
            c["sort_channels"].disabled = c["kind"].value != "channel"
            fig = self.figure(**{k: ctl.value for k, ctl in c.items()})
        finally:
            self._updating = False
        out.clear_output(wait=True)
        with out:
            ipd.display(fig)
        plt.close(fig)
        self.last_figure = fig
        return fig


def mean_differences(mats: Mapping[str, Mapping[str, np.ndarray]], reference: str) -> dict[str, dict[str, float]]:
    """Mean |matrix − reference's| per model (the reference excluded) and kind, where the shapes match."""
    ref = mats[reference]
    return {name: {k: float(np.abs(m - ref[k]).mean()) for k, m in kinds.items() if m.shape == ref[k].shape}
            for name, kinds in mats.items() if name != reference}


def trained_students(runs_dir: str | Path, configs: Sequence[str], seed: int) -> dict[str, Path]:
    """``{config: best.pt}`` of the configurations whose run (:meth:`matting_lib.paths.RunLayout.student` of the
    profile's folder ``runs_dir``) has finished (others are left out: the explorer shows what exists)."""
    found = {c: RunLayout(runs_dir).student(c, seed) / "best.pt" for c in configs}
    return {c: p for c, p in found.items() if p.is_file()}


def load_models(checkpoints: Mapping[str, str | Path]) -> tuple[dict[str, nn.Module], dict[str, nn.ModuleDict]]:
    """``name -> checkpoint path`` to the networks and the channel adapters of those that were distilled with
    them (see :func:`load_adapters`), ready for :class:`SimilarityExplorer`. The entry named ``"teacher"`` must
    hold a teacher, the others students (:func:`matting_lib.networks.checkpoints.check_kind`)."""
    nets = {name: load_model(path, kind="teacher" if name == "teacher" else "student")
            for name, path in checkpoints.items()}
    adapters = {name: load_adapters(path) for name, path in checkpoints.items()}
    return nets, {name: a for name, a in adapters.items() if a is not None}


def load_test_batch(layout, n: int = 4, size: int = 128) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``n`` test composites (one per foreground where possible), centre-cropped to a square and resized
    to ``size``×``size``: network inputs (n, 4, size, size) and RGB images (n, size, size, 3) uint8."""

    items = list_test_items(layout)
    if not items:
        raise ValueError(f"no test composites under {layout.root}; run notebook 01 first")
    by_fg: dict[str, object] = {}
    for it in items:
        by_fg.setdefault(it.fg_name, it)
    chosen = (list(by_fg.values()) + [it for it in items if it not in by_fg.values()])[:n]

    def square(a: np.ndarray, interp: int) -> np.ndarray:
        h, w = a.shape[:2]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        return cv2.resize(a[y0:y0 + s, x0:x0 + s], (size, size), interpolation=interp)

    images = np.stack([square(read_rgb(it.image_path), cv2.INTER_AREA) for it in chosen])
    trimaps = [snap_trimap(square(read_trimap(it.trimap_path), cv2.INTER_NEAREST)) for it in chosen]
    inputs = torch.stack([make_input(im, tr) for im, tr in zip(images, trimaps)])
    return inputs, images


def load_adapters(checkpoint_path) -> nn.ModuleDict | None:
    """The channel adapters (layer -> 1×1 conv) a distillation run saved under ``"objective"``, or None."""
    state = load_checkpoint(checkpoint_path).get("objective") or {}
    convs: dict[str, nn.Conv2d] = {}
    for key, w in state.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "adapters" and parts[2] == "weight":
            out_c, in_c = w.shape[:2]
            conv = nn.Conv2d(in_c, out_c, 1, bias=f"adapters.{parts[1]}.bias" in state)
            conv.load_state_dict({k.split(".", 2)[2]: v for k, v in state.items()
                                  if k.startswith(f"adapters.{parts[1]}.")})
            convs[parts[1]] = conv
    return nn.ModuleDict(convs) if convs else None
