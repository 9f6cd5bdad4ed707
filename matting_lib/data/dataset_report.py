"""Notebook 01's dataset step: prepare the dataset, then look at it (counts, matte statistics, figures).

:class:`DataParams` validates notebook 01's parameters and :func:`prepare_dataset` generates the embedded
synthetic benchmark (or links an Adobe Composition-1k tree) and checks its layout. The inspection helpers
compare the dataset with the published Composition-1k counts (Xu et al., CVPR 2017; ``docs/paper_notes.md``
§5), summarise the test mattes' unknown regions and alpha values, and draw the gallery and
statistics figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from matting_lib.data.compositing import COMPOSITE_METHODS, list_test_items
from matting_lib.data.layout import DatasetLayout, read_alpha, read_rgb, read_trimap
from matting_lib.data.layout_check import check_layout, link_dataset
from matting_lib.data.synthetic import PRESETS, generate_dataset
from matting_lib.data.trimap import UNKNOWN, snap_trimap
from matting_lib.params import check_counts, param

__all__ = ["COMPOSITION_1K", "dataset_summary", "matte_statistics", "plot_gallery", "plot_statistics",
           "compare_with_composition_1k", "DataParams", "prepare_dataset"]


# ----------------------------------------------------------------------------------------------- looking at it
COMPOSITION_1K = {"train foregrounds": 431, "train backgrounds per foreground": 100, "train composites": 43100,
                  "test foregrounds": 50, "test backgrounds per foreground": 20, "test composites": 1000}
"""The published Adobe Composition-1k counts (Xu et al., CVPR 2017; ``docs/paper_notes.md`` §5)."""


def dataset_summary(layout: DatasetLayout) -> dict[str, dict[str, float]]:
    """Counts and sizes of a dataset, keyed like :data:`COMPOSITION_1K`, plus foreground sizes (pixels,
    read from file headers only)."""
    out: dict[str, float] = {}
    for split in ("train", "test"):
        fgs, k = layout.fg_names(split), layout.bg_per_fg(split)
        out[f"{split} foregrounds"] = len(fgs)
        out[f"{split} backgrounds per foreground"] = k
        out[f"{split} composites"] = len(fgs) * k
        sides = []
        for name in fgs:
            with Image.open(layout.fg_path(split, name)) as im:
                sides.append(im.size)
        sides = np.array(sides, dtype=float)
        out[f"{split} median width (px)"] = float(np.median(sides[:, 0]))
        out[f"{split} median height (px)"] = float(np.median(sides[:, 1]))
    return out


def matte_statistics(layout: DatasetLayout, *, limit: int | None = None) -> dict[str, np.ndarray]:
    """Per test composite: ``unknown_fraction`` (share of pixels with trimap 128), ``fractional_fraction``
    (share of 0 < alpha < 255); and ``alpha_hist`` (256,): counts of alpha values inside the unknown regions
    of all composites, the values every metric scores."""
    unknown, fractional, hist = [], [], np.zeros(256, np.int64)
    alpha_cache: dict = {}
    for it in list_test_items(layout)[:limit]:
        if it.alpha_path not in alpha_cache:
            alpha_cache = {it.alpha_path: read_alpha(it.alpha_path)}
        alpha, trimap = alpha_cache[it.alpha_path], snap_trimap(read_trimap(it.trimap_path))
        mask = trimap == UNKNOWN
        unknown.append(mask.mean())
        fractional.append(((alpha > 0) & (alpha < 255)).mean())
        hist += np.bincount(alpha[mask], minlength=256)
    return {"unknown_fraction": np.array(unknown), "fractional_fraction": np.array(fractional), "alpha_hist": hist}


def plot_gallery(layout: DatasetLayout, *, n: int = 6, seed: int = 0, size: float = 2.2):
    """Figure: ``n`` random test composites (seeded), each with its alpha and trimap below it."""
    items = list_test_items(layout)
    pick = np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False)
    fig, axes = plt.subplots(3, len(pick), figsize=(size * len(pick), size * 3), squeeze=False)
    for col, i in enumerate(sorted(pick)):
        it = items[i]
        panels = (read_rgb(it.image_path), read_alpha(it.alpha_path), read_trimap(it.trimap_path))
        for row, (img, label) in enumerate(zip(panels, ("composite", "alpha", "trimap"))):
            ax = axes[row, col]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label)
        axes[0, col].set_title(it.fg_name.rsplit(".", 1)[0][:28], fontsize=8)
    fig.tight_layout()
    return fig


def plot_statistics(stats: dict[str, np.ndarray]):
    """Figure: the distribution of unknown-region size and of alpha values inside the unknown region."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    a1.hist(100 * stats["unknown_fraction"], bins=20, color="tab:blue", alpha=0.8, label="unknown (trimap 128)")
    a1.hist(100 * stats["fractional_fraction"], bins=20, color="tab:orange", alpha=0.6, label="0 < alpha < 1")
    a1.set_xlabel("% of the image's pixels"), a1.set_ylabel("test composites"), a1.legend(fontsize=8)
    h = stats["alpha_hist"] / max(1, stats["alpha_hist"].sum())
    a2.bar(np.arange(256) / 255, h, width=1 / 255, color="tab:gray")
    a2.set_yscale("log"), a2.set_xlabel("alpha inside the unknown region"), a2.set_ylabel("share of pixels")
    fig.tight_layout()
    return fig


def compare_with_composition_1k(layout: DatasetLayout) -> str:
    """Markdown table: this dataset's counts and sizes next to the published Composition-1k counts."""
    ours = dataset_summary(layout)
    rows = ["| | this dataset | Composition-1k (paper) |", "|---|---|---|"]
    for key, value in ours.items():
        paper = COMPOSITION_1K.get(key, "")
        rows.append(f"| {key} | {value:g} | {paper} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------- preparing it
@dataclass(frozen=True)
class DataParams:
    """Notebook 01's parameters, validated. See the notebook's ``parameters`` cell for their meaning."""

    profile: str = param("default", "pipeline profile; figures go to figures/<profile>/ unless figures_dir is set")
    source: str = param("synthetic", '"synthetic" (embedded benchmark) or "adobe" (real data under adobe_root)')
    adobe_root: str = param("", 'for source "adobe": the folder with Combined_Dataset/, train2014/, '
                                'VOCdevkit/VOC2012/JPEGImages/')
    preset: str = param("comp1k", "synthetic benchmark: smoke | default | comp1k | large "
                                  "(matting_lib.data.synthetic.PRESETS)")
    seed: int = param(0, "synthetic benchmark seed (same seed -> byte-identical files)")
    data_dir: str = param("data/synthetic-comp1k", "dataset folder (synthetic: generated here; adobe: linked here)")
    figures_dir: str = param("", "where the figures go; empty means figures/<profile>")
    method: str = param("revised", "test compositing: \"revised\" (DIM-PyTorch, OpenCV) or \"adobe\" (Adobe's PIL "
                                   "code)")
    overwrite: bool = param(False, "replace a dataset / test set built with other parameters")
    n_gallery: int = param(6, "test composites shown in the gallery")
    train_composites: int = param(0, "also write the training composites of this many foregrounds to disk, for "
                                     "inspection")

    def __post_init__(self) -> None:

        if self.source not in ("synthetic", "adobe"):
            raise ValueError(f"source must be 'synthetic' or 'adobe', got {self.source!r}")
        if self.source == "adobe" and not self.adobe_root:
            raise ValueError("source='adobe' needs adobe_root: the folder holding Combined_Dataset/, train2014/ "
                             "and VOCdevkit/ (run_all.sh --adobe-root PATH)")
        if self.source == "synthetic" and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if self.method not in COMPOSITE_METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(COMPOSITE_METHODS)}")
        if not self.data_dir:
            raise ValueError("data_dir must name a folder")
        check_counts(self, at_least_0=("seed", "n_gallery", "train_composites"))

    @property
    def figures_path(self) -> Path:
        return Path(self.figures_dir or f"figures/{self.profile}")


def prepare_dataset(params: DataParams, *, progress: bool = True) -> DatasetLayout:
    """Notebook 01's first step: generate the synthetic benchmark into ``data_dir`` (or find it complete),
    or, for ``source="adobe"``, link ``data_dir`` to ``adobe_root``; then check the layout (raises with the
    full report if anything is missing). Returns the layout of ``data_dir``."""
    if params.source == "synthetic":
        generate_dataset(params.data_dir, seed=params.seed, preset=params.preset, overwrite=params.overwrite,
                         progress=progress)
    else:
        link_dataset(params.data_dir, params.adobe_root)
    layout = DatasetLayout.for_root(params.data_dir)
    print(check_layout(layout, progress=progress).raise_if_bad())
    return layout
