"""Training/test Datasets: the sample contract, seeded determinism with any number of workers, legacy flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_adobe import make_tiny_adobe
from torch.utils.data import DataLoader

from matting_lib.data.compositing import build_test_set
from matting_lib.data.dataset_report import DataParams, compare_with_composition_1k, matte_statistics
from matting_lib.data.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MattingTestDataset,
    MattingTrainDataset,
    make_input,
    split_train_val,
)
from matting_lib.data.layout import DatasetLayout, LayoutError
from matting_lib.data.synthetic import generate_dataset
from matting_lib.params import params_from_dict

TRIMAP_VALUES = torch.tensor([0.0, 128 / 255, 1.0])


@pytest.fixture(scope="module")
def adobe(tmp_path_factory):
    return DatasetLayout.for_root(make_tiny_adobe(tmp_path_factory.mktemp("a") / "adobe", size=(64, 80)))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = generate_dataset(tmp_path_factory.mktemp("s") / "smoke", preset="smoke", progress=False)
    return DatasetLayout.for_root(root)


def test_make_input_normalises_rgb_and_keeps_trimap():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    trimap = np.array([[0, 128, 255], [255, 128, 0]], np.uint8)
    x = make_input(img, trimap)
    assert x.shape == (4, 2, 3) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor((1 - 0.485) / 0.229)) and torch.allclose(
        x[1], torch.tensor(-0.456 / 0.224)
    )
    assert torch.allclose(x[3], torch.from_numpy(trimap / np.float32(255)))
    with pytest.raises(ValueError, match="does not match"):
        make_input(img, trimap[:, :2])


def test_split_by_foreground_is_seeded_and_disjoint():
    names = [f"fg{i}.png" for i in range(20)]
    train, val = split_train_val(names, 0.25, seed=0)
    assert len(val) == 5 and not set(train) & set(val) and sorted(train + val) == sorted(names)
    assert split_train_val(names, 0.25, seed=0) == (train, val)
    assert split_train_val(names, 0.25, seed=1)[1] != val
    assert split_train_val(names, 0.0, seed=0) == (names, [])
    assert len(split_train_val(names[:2], 0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError):
        split_train_val(names, 1.0, seed=0)


def _check_sample(s, size):
    assert set(s) == {"input", "alpha", "trimap", "image", "fg", "bg"}
    assert s["input"].shape == (4, size, size) and s["alpha"].shape == (1, size, size)
    assert all(s[k].shape == (3, size, size) and s[k].dtype == torch.float32 for k in ("image", "fg", "bg"))
    for k in ("alpha", "image", "fg", "bg"):
        assert 0 <= s[k].min() and s[k].max() <= 1
    assert torch.isin(s["trimap"], TRIMAP_VALUES).all()
    assert torch.equal(s["input"][3], s["trimap"][0])
    rgb = s["image"].permute(1, 2, 0).numpy()
    assert torch.allclose(s["input"][:3], torch.from_numpy(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)),
                          atol=1e-5)
    # the compositional identity holds exactly, also after resizing and jitter
    assert torch.allclose(s["image"], s["alpha"] * s["fg"] + (1 - s["alpha"]) * s["bg"], atol=1e-5)


def test_training_samples_follow_the_contract(adobe, smoke):
    ds = MattingTrainDataset(adobe, adobe.fg_names("train"), crop_size=32, seed=0)
    assert len(ds) == 3 * 2
    for i in range(len(ds)):
        _check_sample(ds[i], 32)
    ds = MattingTrainDataset(smoke, smoke.fg_names("train"), crop_size=48, seed=0)
    unknown = [float((ds[i]["trimap"] == TRIMAP_VALUES[1]).float().mean()) for i in range(6)]
    assert min(unknown) > 0  # crops are centred on the unknown region


def test_samples_depend_only_on_seed_epoch_index(adobe):
    names = adobe.fg_names("train")
    a = MattingTrainDataset(adobe, names, crop_size=32, seed=3)
    b = MattingTrainDataset(adobe, names, crop_size=32, seed=3)
    assert torch.equal(a[4]["input"], b[4]["input"]) and torch.equal(a[4]["fg"], b[4]["fg"])
    assert not torch.equal(a[4]["input"], MattingTrainDataset(adobe, names, crop_size=32, seed=4)[4]["input"])
    b.set_epoch(1)
    assert not torch.equal(a[4]["input"], b[4]["input"])


def test_batches_identical_with_0_and_2_workers(adobe):
    ds = MattingTrainDataset(adobe, adobe.fg_names("train"), crop_size=32, seed=0)
    ds.set_epoch(2)
    batches = []
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers)
        batches.append([b["input"] for b in loader])
    assert len(batches[0]) == 3 and all(torch.equal(x, y) for x, y in zip(*batches))


def test_legacy_trimap_is_thinner(smoke):
    names = smoke.fg_names("train")
    fixed = MattingTrainDataset(smoke, names, crop_size=64, crop_scales=(1.0,), seed=0, jitter=0)
    legacy = MattingTrainDataset(smoke, names, crop_size=64, crop_scales=(1.0,), seed=0, jitter=0, legacy_trimap=True)

    def unknown(ds):
        return sum(float((ds[i]["trimap"] == TRIMAP_VALUES[1]).float().mean()) for i in range(len(ds)))
    assert unknown(legacy) < 0.8 * unknown(fixed)


def test_legacy_resize_is_nearest_neighbour(smoke):
    names = smoke.fg_names("train")[:3]
    kw = dict(crop_size=40, crop_scales=(2.0,), seed=0, jitter=0)
    legacy = MattingTrainDataset(smoke, names, legacy_resize=True, **kw)
    fixed = MattingTrainDataset(smoke, names, **kw)
    on_grid = [torch.allclose(legacy[i]["alpha"] * 255, (legacy[i]["alpha"] * 255).round(), atol=1e-3)
               for i in range(len(legacy))]
    assert all(on_grid)  # nearest neighbour never invents alpha values
    assert not all(torch.allclose(fixed[i]["alpha"] * 255, (fixed[i]["alpha"] * 255).round(), atol=1e-3)
                   for i in range(len(fixed)))  # area averaging does


def test_epoch_length_cycles_through_the_pairs(adobe):
    ds = MattingTrainDataset(adobe, adobe.fg_names("train"), crop_size=32, bg_per_fg=1, epoch_length=2, seed=0)
    assert len(ds) == 2 and len(ds.pairs) == 3
    assert ds.pairs[0][1] == adobe.bg_names("train")[0] and ds.pairs[1][1] == adobe.bg_names("train")[2]
    with pytest.raises(IndexError):
        ds[2]


def test_bad_arguments(adobe):
    with pytest.raises(LayoutError, match="nope.png"):
        MattingTrainDataset(adobe, ["nope.png"])
    with pytest.raises(ValueError, match="bg_per_fg"):
        MattingTrainDataset(adobe, adobe.fg_names("train"), bg_per_fg=3)
    with pytest.raises(ValueError, match="empty"):
        MattingTrainDataset(adobe, [])


def test_test_dataset_needs_the_composites_then_serves_them_full_size(tmp_path):
    layout = DatasetLayout.for_root(make_tiny_adobe(tmp_path / "a"))
    with pytest.raises(LayoutError, match="build_test_set"):
        MattingTestDataset(layout)
    items = build_test_set(layout, progress=False)
    ds = MattingTestDataset(layout)
    assert len(ds) == len(items) == 4
    s = ds[3]
    assert s["name"] == items[3].name and s["input"].shape == (4, 48, 64) and s["alpha"].shape == (1, 48, 64)
    assert torch.isin(s["trimap"], TRIMAP_VALUES).all() and torch.equal(s["input"][3], s["trimap"][0])
    assert len(MattingTestDataset(layout, limit=2)) == 2
    stats = matte_statistics(layout)
    assert stats["unknown_fraction"].shape == (4,) and 0 < stats["unknown_fraction"].min()
    assert stats["alpha_hist"].sum() == round(float(stats["unknown_fraction"].sum()) * 48 * 64)
    table = compare_with_composition_1k(layout)
    assert "| test composites | 4 | 1000 |" in table


def test_notebook_parameters_are_validated():
    assert params_from_dict(DataParams, {"preset": "smoke"}).figures_path.as_posix() == "figures/default"
    with pytest.raises(ValueError, match="adobe_root"):
        DataParams(source="adobe")
    with pytest.raises(ValueError, match="smoke, default, comp1k, large"):
        DataParams(preset="medium")
    with pytest.raises(ValueError, match="unknown parameters: sed"):
        params_from_dict(DataParams, {"sed": 1})
