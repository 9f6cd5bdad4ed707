"""Trimaps: hand-computed bands, the legacy one-iteration behaviour, snapping."""

from __future__ import annotations

import numpy as np
import pytest

from matting_lib.data.trimap import (
    random_trimap,
    snap_trimap,
    trimap_from_alpha,
    trimap_from_distance,
    trimap_from_mask,
    unknown_fraction,
)


def _step(width: int = 40, edge: int = 20, height: int = 9) -> np.ndarray:
    """Alpha 0 left of column ``edge``, 255 from it on."""
    a = np.zeros((height, width), np.uint8)
    a[:, edge:] = 255
    return a


def _unknown_columns(trimap: np.ndarray) -> list[int]:
    return sorted(set(np.nonzero(trimap == 128)[1].tolist()))


@pytest.mark.parametrize("iterations", [1, 3, 7])
def test_erode_dilate_band_width_is_hand_computed(iterations):
    # a 3x3 elliptical kernel is a cross: each iteration grows a vertical edge by exactly one column per side
    t = trimap_from_alpha(_step(), kernel_size=3, iterations=iterations)
    assert _unknown_columns(t) == list(range(20 - iterations, 20 + iterations))
    assert set(np.unique(t)) <= {0, 128, 255}
    assert (t[:, : 20 - iterations] == 0).all() and (t[:, 20 + iterations:] == 255).all()


def test_legacy_runs_one_iteration_like_the_original():
    a = _step()
    legacy = trimap_from_alpha(a, kernel_size=3, iterations=9, legacy=True)
    assert np.array_equal(legacy, trimap_from_alpha(a, kernel_size=3, iterations=1))
    assert unknown_fraction(legacy) < unknown_fraction(trimap_from_alpha(a, kernel_size=3, iterations=9))


def test_fractional_alpha_is_always_unknown_and_kernel_1_adds_nothing():
    a = _step()
    a[:, 20] = 100
    t = trimap_from_alpha(a, kernel_size=1, iterations=19)
    assert _unknown_columns(t) == [20]


def test_random_trimap_draws_kernel_then_iterations_from_the_given_generator():
    a = _step()
    for seed in range(6):
        ref = np.random.default_rng(seed)
        k, n = int(ref.integers(1, 5)), int(ref.integers(1, 20))
        expected = trimap_from_alpha(a, kernel_size=k, iterations=n)
        assert np.array_equal(random_trimap(a, np.random.default_rng(seed)), expected)
    # legacy draws the same two numbers (so streams stay aligned) but erodes/dilates once
    ref = np.random.default_rng(3)
    k = int(ref.integers(1, 5))
    assert np.array_equal(random_trimap(a, np.random.default_rng(3), legacy=True),
                          trimap_from_alpha(a, kernel_size=k, iterations=1))


@pytest.mark.parametrize("width, per_side", [(0, 0), (1, 1), (2.5, 2), (4, 4)])
def test_distance_band_is_floor_width_each_side_of_a_hard_edge(width, per_side):
    t = trimap_from_distance(_step(), width)
    assert _unknown_columns(t) == list(range(20 - per_side, 20 + per_side))


def test_distance_marks_every_fractional_pixel_unknown():
    rng = np.random.default_rng(0)
    a = rng.choice([0, 255, 7, 200], size=(30, 30), p=[0.45, 0.45, 0.05, 0.05]).astype(np.uint8)
    t = trimap_from_distance(a, 0)
    frac = (a > 0) & (a < 255)
    assert (t[frac] == 128).all() and (t[~frac] != 128).all()


def test_float_and_bool_alphas_are_accepted_and_out_of_range_floats_refused():
    a = _step()
    assert np.array_equal(trimap_from_distance(a / 255.0, 2), trimap_from_distance(a, 2))
    assert np.array_equal(trimap_from_distance(a > 0, 2), trimap_from_distance(a, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trimap_from_distance(a.astype(float), 2)
    with pytest.raises(ValueError, match="2-D"):
        trimap_from_alpha(np.zeros((4, 4, 3), np.uint8), kernel_size=3, iterations=1)


def test_trimap_from_mask_band_around_a_disc():
    yy, xx = np.mgrid[0:41, 0:41]
    mask = np.hypot(yy - 20, xx - 20) < 10
    t = trimap_from_mask(mask, 3)
    assert t[20, 20] == 255 and t[0, 0] == 0
    d = np.hypot(yy - 20, xx - 20)
    assert (t[(d > 7.5) & (d < 12)] == 128).all()
    assert np.array_equal(trimap_from_mask(mask.astype(np.uint8) * 255, 3), t)


def test_snap_trimap_to_nearest_value():
    t = np.array([[0, 63, 64, 100, 128, 191, 192, 255]], np.uint8)
    assert snap_trimap(t).tolist() == [[0, 0, 128, 128, 128, 128, 255, 255]]
    assert snap_trimap(t / 255.0).tolist() == snap_trimap(t).tolist()
    rgb = np.repeat(t[..., None], 3, axis=2)
    assert snap_trimap(rgb).tolist() == snap_trimap(t).tolist()
