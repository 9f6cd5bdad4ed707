"""Tests of matting_lib.metrics against hand-derived cases and slow, independent references.

The references below are written from the MATLAB / SPKD definitions with plain loops (Python BFS
labelling in column-major order, an explicit 9x9 convolution with edge padding), not with the
library's code paths, on tiny generated images.
"""

from __future__ import annotations

import csv
import json
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import pytest

from matting_lib import metrics as M
from matting_lib.data import layout
from matting_lib.data.layout import LayoutError, read_gray
from matting_lib.data.trimap import snap_trimap
from matting_lib.metrics import folder as MF
from matting_lib.metrics import kernels as impl

GOLDEN = json.loads((Path(__file__).parent / "data" / "metrics_golden.json").read_text())["cases"]
F32 = np.float32


# ------------------------------------------------------------------------------------------ references
def _ref_kernel(sigma: float = 1.4) -> np.ndarray:
    """gaussgradient.m's hx, entry by entry."""
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 1e-2))))
    gauss = lambda x: np.exp(-x * x / (2 * sigma * sigma)) / (sigma * np.sqrt(2 * np.pi))  # noqa: E731
    hx = np.zeros((2 * half + 1, 2 * half + 1))
    for i in range(2 * half + 1):
        for j in range(2 * half + 1):
            u, v = i - half, j - half
            hx[i, j] = gauss(u) * (-v * gauss(v) / sigma**2)
    return hx / np.sqrt((np.abs(hx) ** 2).sum())


def _ref_conv_replicate(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """imfilter(x, k, 'replicate', 'conv'): out(i,j) = sum_ab k(a,b) x(i-a+h, j-b+h), clamped indices."""
    h = k.shape[0] // 2
    pad = np.pad(x, h, mode="edge")
    out = np.zeros_like(x, dtype=np.float64)
    H, W = x.shape
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            out += k[a, b] * pad[2 * h - a:2 * h - a + H, 2 * h - b:2 * h - b + W]
    return out


def _ref_mat2gray(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    lo, hi = x.min(), x.max()
    return np.clip(x, 0, 1) if hi == lo else np.clip((x - lo) / (hi - lo), 0, 1)


def _ref_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected components, numbered in column-major order of their first pixel (bwconncomp)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for c in range(w):
        for r in range(h):
            if mask[r, c] and not seen[r, c]:
                comp, todo = [], deque([(r, c)])
                seen[r, c] = True
                while todo:
                    y, x = todo.popleft()
                    comp.append((y, x))
                    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                            seen[yy, xx] = True
                            todo.append((yy, xx))
                comps.append(comp)
    return comps


def _ref_alpha32(x: np.ndarray) -> np.ndarray:
    return x.astype(F32) / F32(255) if x.dtype == np.uint8 else x.astype(F32)


def ref_official(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """The four MATLAB functions, literally (8-bit alphas, or floats in [0, 1] for quantize=False)."""
    unk = trimap == 128
    if pred.dtype == np.uint8 and gt.dtype == np.uint8:
        err = np.abs(pred.astype(F32) - gt.astype(F32)) / F32(255)
        sad, mse = err[unk].astype(np.float64).sum(), (err * err)[unk].astype(np.float64).sum() / unk.sum()
    else:
        d = (pred / 255.0 if pred.dtype == np.uint8 else pred) - (gt / 255.0 if gt.dtype == np.uint8 else gt)
        sad, mse = np.abs(d)[unk].sum(), (d * d)[unk].sum() / unk.sum()
    hx = _ref_kernel()

    def amp(x):
        m = _ref_mat2gray(x)
        return np.sqrt(_ref_conv_replicate(m, hx) ** 2 + _ref_conv_replicate(m, hx.T) ** 2)

    grad = (np.square(amp(pred).astype(F32) - amp(gt).astype(F32)))[unk].astype(np.float64).sum()
    pa, ga = _ref_alpha32(pred), _ref_alpha32(gt)
    steps = [k / 10 for k in range(11)]
    l_map = -np.ones(pred.shape)
    for ii in range(1, 11):
        both = (pa >= F32(steps[ii])) & (ga >= F32(steps[ii]))
        comps = _ref_components(both)
        if not comps:
            continue  # IndexNet-Matting's guard
        sizes = [len(c) for c in comps]
        omega = np.zeros(pred.shape, bool)
        for y, x in comps[sizes.index(max(sizes))]:
            omega[y, x] = True
        l_map[(l_map == -1) & ~omega] = steps[ii - 1]
    l_map[l_map == -1] = 1
    dp, dg = pa - l_map.astype(F32), ga - l_map.astype(F32)
    phi_p = F32(1) - dp * (dp >= F32(0.15)).astype(F32)
    phi_g = F32(1) - dg * (dg >= F32(0.15)).astype(F32)
    conn = np.abs(phi_p - phi_g)[unk].astype(np.float64).sum()
    return {"sad": sad / 1000, "mse": mse, "grad": grad / 1000, "conn": conn / 1000}


def ref_spkd(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """The SPKD evaluator (test.py + utils.py) re-written; NumPy 1.x casting made explicit."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import label, regionprops

    pred = _ref_alpha32(pred).copy()
    pred[trimap == 0] = 0.0
    pred[trimap == 255] = 1.0
    alpha = gt / 255.0
    mask = (trimap == 128).astype(np.float64)
    sad = np.abs(pred - alpha).sum() / 1000
    mse = ((pred - alpha) ** 2).sum() / mask.sum()
    mags = []
    for x in (pred, alpha):
        dx = gaussian_filter(x, sigma=1.4, order=[1, 0], output=np.float32)
        dy = gaussian_filter(x, sigma=1.4, order=[0, 1], output=np.float32)
        mags.append(np.sqrt(dx**2 + dy**2))
    grad = np.sum(np.square(mags[0] - mags[1]) * mask) / 10
    steps = np.arange(0, 1.1, 0.1)
    l_map = -np.ones(pred.shape, np.float32)
    for i in range(1, steps.size):
        both = (pred >= np.float32(steps[i])) & (alpha >= steps[i])  # float32 array vs scalar: NumPy 1.x
        regions = regionprops(label(both, connectivity=1))
        if not regions:
            continue
        coords = regions[int(np.argmax([r.area for r in regions]))].coords
        omega = np.zeros(pred.shape, bool)
        omega[coords[:, 0], coords[:, 1]] = True
        l_map[(l_map == -1) & ~omega] = steps[i - 1]
    l_map[l_map == -1] = 1
    d_p, d_g = pred - l_map, alpha - l_map
    phi_p = 1 - d_p * (d_p >= 0.15).astype(np.float32)
    phi_g = 1 - d_g * (d_g >= 0.15).astype(np.float32)
    conn = np.sum(np.abs(phi_p - phi_g) * mask) / 1000
    return {"sad": sad, "mse": mse, "grad": grad, "conn": conn}


# Values around every threshold (25/26, 76/77, 152/153/154, 178/179, 229/230, 254/255) so the float32
# comparisons matter, around phi's cut d = 0.15 (38/39, 63/64, 89/90), and few distinct values so that
# components and size ties are frequent.
EDGE_VALUES = np.array([0, 0, 0, 25, 26, 38, 39, 51, 63, 64, 76, 77, 89, 90, 102, 127, 128, 152, 153, 154, 178,
                        179, 204, 229, 230, 254, 255, 255, 255], np.uint8)


def random_case(rng: np.random.Generator, h: int, w: int, border: int = 0):
    block = int(rng.integers(1, 4))
    small = rng.choice(EDGE_VALUES, size=(h // block + 1, w // block + 1))
    gt = np.kron(small, np.ones((block, block), np.uint8))[:h, :w]
    pred = gt.copy()
    flip = rng.random((h, w)) < 0.35
    pred[flip] = rng.choice(EDGE_VALUES, size=int(flip.sum()))
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(h, w), p=[0.25, 0.5, 0.25])
    if border:  # zeros and known pixels around: exercises the bounding-box crops
        for a in (pred, gt):
            a[:border], a[-border:], a[:, :border], a[:, -border:] = 0, 0, 0, 0
        trimap[:border + 2], trimap[-border - 2:], trimap[:, :border + 2], trimap[:, -border - 2:] = 0, 0, 0, 0
    trimap.flat[int(rng.integers(trimap.size))] = 128  # at least one unknown pixel
    return pred, gt, trimap


def assert_close(ours: dict, ref: dict, rtol_grad: float = 1e-6) -> None:
    for k in M.METRIC_KEYS:
        rtol = rtol_grad if k == "grad" else 1e-9
        assert ours[k] == pytest.approx(ref[k], rel=rtol, abs=1e-12), (k, ours[k], ref[k])


# ------------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden_hand_computed_cases(case):
    p, g, t = (np.array(case[k], np.uint8) for k in ("pred", "gt", "trimap"))
    got = M.evaluate_alpha(p, g, t)
    got["conn_raw"] = got["conn"] * 1000
    for key, want in case["expected"].items():
        assert got[key] == pytest.approx(want, rel=case["rtol"], abs=1e-12), key
    if "spkd_conn" in case:
        assert M.evaluate_alpha(p, g, t, convention="spkd")["conn"] == pytest.approx(case["spkd_conn"], abs=1e-9)


def test_official_matches_slow_reference_on_random_images():
    rng = np.random.default_rng(0)
    shapes = [(1, 9), (9, 1), (3, 3), (7, 11), (12, 10), (16, 13), (10, 16)]
    for i in range(28):
        h, w = shapes[i % len(shapes)]
        case = random_case(rng, h, w, border=2 if i % 4 == 3 and min(h, w) > 8 else 0)
        assert_close(M.evaluate_alpha(*case), ref_official(*case))


@pytest.mark.parametrize("strip", [64, 5, 1])
def test_crops_and_strips_give_the_whole_image_values(strip, monkeypatch):
    monkeypatch.setattr(impl, "GRAD_STRIP", strip)  # Grad filters strips of this many rows
    rng = np.random.default_rng(1)
    pred, gt, trimap = random_case(rng, 26, 34)
    trimap[:] = 0
    trimap[3:7, 1:5] = 128  # unknown patch touching the 4-px filter margin of the left border
    trimap[11, 30:34] = 128  # ... and the right border
    trimap[20:22, 25:27] = 128
    assert_close(M.evaluate_alpha(pred, gt, trimap), ref_official(pred, gt, trimap))
    pred, gt, trimap = random_case(rng, 17, 12)  # unknown pixels everywhere, borders included
    assert_close(M.evaluate_alpha(pred, gt, trimap), ref_official(pred, gt, trimap))


def test_spkd_crop_gives_the_whole_image_values():
    rng = np.random.default_rng(14)
    pred, gt, trimap = random_case(rng, 30, 34)
    for patch in ((slice(12, 15), slice(14, 18)), (slice(0, 3), slice(1, 4)), (slice(26, 30), slice(30, 34))):
        trimap[:] = 0
        trimap[patch] = 128  # one patch: the crop is its box + the filter radius (inside or at a border)
        assert_close(M.evaluate_alpha(pred, gt, trimap, convention="spkd"), ref_spkd(pred, gt, trimap),
                     rtol_grad=1e-9)


def test_unquantised_floats_match_reference():
    rng = np.random.default_rng(2)
    for _ in range(6):
        pred, gt, trimap = random_case(rng, 9, 12)
        pf = np.clip(pred / 255.0 + rng.normal(0, 0.01, pred.shape), 0, 1)
        assert_close(M.evaluate_alpha(pf, gt, trimap, quantize=False), ref_official(pf, gt, trimap))


def test_spkd_convention_matches_its_evaluator():
    rng = np.random.default_rng(3)
    for i in range(12):
        pred, gt, trimap = random_case(rng, 10 + i % 3, 13)
        pf = np.clip(pred / 255.0 + rng.normal(0, 0.02, pred.shape), 0, 1).astype(np.float32)
        assert_close(M.evaluate_alpha(pf, gt, trimap, convention="spkd"), ref_spkd(pf, gt, trimap), rtol_grad=1e-9)
        assert_close(M.evaluate_alpha(pred, gt, trimap, convention="spkd"), ref_spkd(pred, gt, trimap), rtol_grad=1e-9)


def test_spkd_sad_covers_the_whole_image_and_forces_known_regions():
    gt = np.array([[10, 0, 255, 100]], np.uint8)
    pred = np.array([[0.5, 0.9, 0.1, 100 / 255]])
    trimap = np.array([[0, 0, 255, 128]], np.uint8)
    res = M.evaluate_alpha(pred, gt, trimap, convention="spkd")
    # known pixels forced to 0, 0, 1; only the gt value 10 in the known background differs
    assert res["sad"] == pytest.approx(10 / 255 / 1000, rel=1e-6)
    assert res["mse"] == pytest.approx((10 / 255) ** 2 / 1, rel=1e-5)
    assert M.evaluate_alpha(pred, gt, trimap)["sad"] == 0.0  # official: unknown pixel only, 100 == 100


def test_spkd_compares_float32_predictions_in_float32():
    # float32(0.7) < 0.7000000000000001 in float64, but equal after NumPy 1.x cast the threshold to float32:
    # the pixel stays with its (forced-to-1) neighbour until 0.7, so l = 0.7 and only gt's phi moves (0.3).
    pred = np.array([[0.7, 0.2]], np.float32)
    gt, trimap = np.array([[255, 255]], np.uint8), np.array([[128, 255]], np.uint8)
    assert M.evaluate_alpha(pred, gt, trimap, convention="spkd")["conn"] == pytest.approx(0.3e-3, rel=1e-6)


def test_kernel_is_the_separable_unit_norm_9x9_of_gaussgradient():
    hx = _ref_kernel()
    assert hx.shape == (9, 9) and impl.HALF == 4
    assert np.allclose(np.outer(impl.G_UNIT, impl.DG_UNIT), hx, rtol=0, atol=1e-15)
    assert np.linalg.matrix_rank(hx) == 1 and np.isclose(np.linalg.norm(hx), 1.0)


def test_threshold_tables_follow_single_precision():
    assert impl.THRESH_U8[1:].tolist() == [26, 51, 77, 102, 128, 153, 179, 204, 230, 255]
    # MATLAB's 0:0.1:1, k/10 and np.arange(0, 1.1, 0.1) all round to the same float32 thresholds
    for variant in (np.arange(0, 1.1, 0.1), np.arange(11) * 0.1, 1 - (10 - np.arange(11)) * 0.1):
        assert np.array_equal(variant.astype(F32), impl.THRESH32)
    assert F32(153) / F32(255) >= F32(0.6) and not 153 / 255 >= 0.1 * 6


def test_grad_hand_computed_step_edge_in_one_row():
    # One row: replicate borders make every row identical, the row-derivative vanishes and the
    # column-derivative is (sum g / ||g||) * (dg * x) / ||dg|| with 1-D sums.
    sigma, half = 1.4, 4
    u = np.arange(-half, half + 1)
    g = np.exp(-u**2 / (2 * sigma**2))
    dg = -u * g
    x = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], float)
    xp = np.pad(x, half, mode="edge")
    conv = np.array([sum(dg[v + half] * xp[j + half - v] for v in u) for j in range(x.size)])
    amp = np.abs(g.sum() / np.linalg.norm(g) * conv / np.linalg.norm(dg))
    gt = (x * 255).astype(np.uint8)[None]
    pred = np.zeros_like(gt)  # constant: zero gradient
    trimap = np.full_like(gt, 128)
    assert M.gradient_error(pred, gt, trimap) == pytest.approx(np.sum(amp.astype(F32) ** 2) / 1000, rel=1e-6)
    assert M.gradient_error(np.full_like(gt, 255), gt, trimap) == M.gradient_error(pred, gt, trimap)


def test_grad_normalises_each_image_by_its_own_range():
    rng = np.random.default_rng(4)
    gt = (rng.integers(0, 128, (12, 12)) * 2).astype(np.uint8)
    gt[0, 0], gt[-1, -1] = 0, 254
    trimap = np.full_like(gt, 128)
    assert M.gradient_error(gt // 2, gt, trimap) == 0.0  # mat2gray maps both to the same image
    assert M.gradient_error(gt, gt, trimap) == 0.0
    assert M.gradient_error((gt // 2) // 2 * 2, gt, trimap) > 0.0


def test_identical_prediction_scores_zero_everywhere():
    rng = np.random.default_rng(5)
    for _ in range(4):
        _, gt, trimap = random_case(rng, 11, 9)
        assert M.evaluate_alpha(gt, gt, trimap) == dict.fromkeys(M.METRIC_KEYS, 0.0)
        gt[trimap == 0], gt[trimap == 255] = 0, 255  # SPKD forces known regions: make gt agree
        spkd = M.evaluate_alpha(gt, gt, trimap, convention="spkd")  # float32 pred vs float64 gt: ~1e-8
        assert spkd == pytest.approx(dict.fromkeys(M.METRIC_KEYS, 0.0), abs=1e-8)


def test_known_pixels_change_grad_and_conn_but_not_sad_mse():
    # Conn: the tie case of the golden file; pixel (2, 0) is known. Removing it from the prediction
    # leaves X = (0, 2) alone in the component until 0.9, so its contribution vanishes.
    case = next(c for c in GOLDEN if c["name"].startswith("conn_tie"))
    p, g = np.array(case["pred"], np.uint8), np.array(case["gt"], np.uint8)
    t = np.zeros((3, 3), np.uint8)
    t[0, 2], t[2, 0] = 128, 255
    p2 = p.copy()
    p2[2, 0] = 0  # differs from gt only at a known pixel
    a, b = M.evaluate_alpha(p, g, t), M.evaluate_alpha(p2, g, t)
    assert (a["sad"], a["mse"]) == (b["sad"], b["mse"])
    assert a["conn"] > 0.0 and b["conn"] == 0.0
    # Grad: a known pixel within 4 px of an unknown one enters the filter
    rng = np.random.default_rng(6)
    pred, gt, _ = random_case(rng, 12, 12)
    trimap = np.zeros_like(gt)
    trimap[5:7, 5:7] = 128
    pred2 = pred.copy()
    pred2[3, 3] = 255 - pred[3, 3]
    a, b = M.evaluate_alpha(pred, gt, trimap), M.evaluate_alpha(pred2, gt, trimap)
    assert (a["sad"], a["mse"]) == (b["sad"], b["mse"]) and a["grad"] != b["grad"]


def test_float_predictions_are_quantised_like_an_8bit_png():
    rng = np.random.default_rng(7)
    pred, gt, trimap = random_case(rng, 10, 10)
    pf = np.clip(pred / 255.0 + rng.uniform(-0.4, 0.4, pred.shape) / 255.0, 0, 1)
    assert M.evaluate_alpha(pf, gt, trimap) == M.evaluate_alpha(np.rint(pf * 255).astype(np.uint8), gt, trimap)
    assert M.evaluate_alpha(pf.astype(np.float32), gt, trimap) == M.evaluate_alpha(pred, gt, trimap)
    one = np.array([[0.3]]), np.array([[76]], np.uint8), np.array([[128]], np.uint8)
    assert M.sad(*one) == 0.0  # rint(76.5) = 76 (half to even)
    assert M.sad(*one, quantize=False) == pytest.approx(abs(0.3 - 76 / 255) / 1000)


def test_phi_cut_is_inclusive_at_0_15():
    # Pixel 0 is never in the component (gt 0), pixel 1 always is: l = 0 and d = float32(0.15) exactly.
    pred = np.array([[0.15, 1.0]], np.float32)
    gt, trimap = np.array([[0, 255]], np.uint8), np.array([[128, 0]], np.uint8)
    assert M.connectivity_error(pred, gt, trimap, quantize=False) * 1000 == pytest.approx(0.15, rel=1e-6)


def test_single_metric_functions_agree_with_evaluate_alpha():
    rng = np.random.default_rng(8)
    case = random_case(rng, 13, 9)
    res = M.evaluate_alpha(*case)
    assert res == {"sad": M.sad(*case), "mse": M.mse(*case), "grad": M.gradient_error(*case),
                   "conn": M.connectivity_error(*case)}


def test_tie_break_survives_many_components():
    # > 65535 components: the 32-bit labelling fallback; a 5-pixel component at each end ties.
    a = np.zeros((600, 500), bool)
    a[::2, ::2] = True
    a[599, 0:3] = True
    a[0:3, 499] = True
    first_f = np.argwhere(impl.largest_component(a, "F"))
    first_c = np.argwhere(impl.largest_component(a, "C"))
    assert len(first_f) == len(first_c) == 5
    assert first_f[:, 1].max() == 2 and first_c[:, 0].max() == 2  # bottom-left vs top-right


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("pred, gt, trimap, match", [
    (np.zeros((4, 5), np.uint8), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "shape mismatch"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), np.full((4, 4), 127, np.uint8), "snap_trimap"),
    (np.full((4, 4), np.nan), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "NaN"),
    (np.full((4, 4), 1.5), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "outside"),
    (np.full((4, 4), 200.0), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "divide by 255"),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "RGB"),
    (np.zeros((4, 4), np.uint8), np.full((4, 4), 1000, np.uint16), np.full((4, 4), 128, np.uint8), "16-bit"),
    (np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "boolean"),
])
def test_bad_inputs_raise_actionable_errors(pred, gt, trimap, match):
    with pytest.raises(M.MetricsInputError, match=match):
        M.evaluate_alpha(pred, gt, trimap)


def test_unknown_convention_lists_the_valid_ones():
    z = np.zeros((2, 2), np.uint8)
    with pytest.raises(M.MetricsInputError, match="official, spkd"):
        M.evaluate_alpha(z, z, z + 128, convention="matlab")


def test_snap_trimap_and_float_trimaps():
    t = np.array([[0, 63, 64, 127, 191, 192, 255]], np.uint8)
    assert snap_trimap(t).tolist() == [[0, 0, 128, 128, 128, 255, 255]]
    z = np.zeros((1, 3), np.uint8)
    ft = np.array([[0.0, 128 / 255, 1.0]], np.float32)  # the datasets' trimap tensor values
    assert M.evaluate_alpha(z, z, ft) == M.evaluate_alpha(z, z, np.array([[0, 128, 255]], np.uint8))


def test_tensors_and_singleton_dimensions_are_accepted():
    import torch

    rng = np.random.default_rng(9)
    pred, gt, trimap = random_case(rng, 8, 8)
    want = M.evaluate_alpha(pred, gt, trimap)
    assert M.evaluate_alpha(torch.from_numpy(pred / 255.0)[None, None], gt[..., None], trimap[None]) == want


def test_no_unknown_pixel_gives_zeros_and_a_warning():
    z = np.zeros((5, 5), np.uint8)
    with pytest.warns(M.NoUnknownPixelsWarning):
        assert M.evaluate_alpha(z + 255, z, z) == dict.fromkeys(M.METRIC_KEYS, 0.0)
    with pytest.warns(M.NoUnknownPixelsWarning):
        assert M.connectivity_error(z, z, z + 255) == 0.0
    g = z.copy()
    g[0, 0] = 51  # in the known background: only SPKD's whole-image SAD sees it
    with pytest.warns(M.NoUnknownPixelsWarning):
        res = M.evaluate_alpha(z, g, z, convention="spkd")
    assert res == pytest.approx({"sad": 0.2 / 1000, "mse": 0.0, "grad": 0.0, "conn": 0.0})


# ------------------------------------------------------------------------------------------ folders
def _write_set(root: Path, cases: dict[str, tuple], names: dict[str, tuple[str, str, str]] | None = None) -> None:
    for k in ("pred", "gt", "trimap"):
        (root / k).mkdir(parents=True, exist_ok=True)
    for key, (p, g, t) in cases.items():
        pn, gn, tn = names[key] if names else (key, key, key)
        for sub, name, img in (("pred", pn, p), ("gt", gn, g), ("trimap", tn, t)):
            cv2.imwrite(str(root / sub / name), img)


def test_evaluate_folder_same_name_csv_and_means(tmp_path):
    rng = np.random.default_rng(10)
    cases = {f"im{i}.png": random_case(rng, 12, 14) for i in range(3)}
    z = np.zeros((6, 6), np.uint8)
    cases["known_only.png"] = (z, z, z)  # no unknown pixel: a note, not a crash
    _write_set(tmp_path, cases)
    out = tmp_path / "res" / "metrics.csv"
    with pytest.warns(M.NoUnknownPixelsWarning):
        res = MF.evaluate_folder(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap", out_csv=out,
                                workers=0, progress=False)
    rows = {r["name"]: r for r in res["rows"]}
    assert res["count"] == 4 and set(rows) == set(cases)
    for name, case in cases.items():
        if name != "known_only.png":
            assert {k: rows[name][k] for k in M.METRIC_KEYS} == M.evaluate_alpha(*case)
    assert rows["known_only.png"]["note"] and rows["known_only.png"]["n_unknown"] == 0
    assert res["mean"]["sad"] == pytest.approx(np.mean([r["sad"] for r in res["rows"]]))
    table = list(csv.DictReader(out.open()))
    assert len(table) == 4 and float(table[0]["sad"]) == pytest.approx(res["rows"][0]["sad"])
    assert json.loads(Path(str(out) + ".mean.json").read_text())["mean"] == res["mean"]


def test_evaluate_folder_composition1k_layout_and_missing_partner(tmp_path):
    rng = np.random.default_rng(11)
    cases = {"a": random_case(rng, 9, 9), "b": random_case(rng, 9, 9)}
    names = {"a": ("bgx!doll!0!3.png", "doll.png", "doll_3.png"),
             "b": ("bgy!net!1!0.png", "net.png", "net_0.png")}
    _write_set(tmp_path, cases, names)
    res = MF.evaluate_folder(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap", matcher="composition1k",
                            workers=0, progress=False)
    got = {r["name"]: r["conn"] for r in res["rows"]}
    assert got == {"bgx!doll!0!3.png": M.evaluate_alpha(*cases["a"])["conn"],
                   "bgy!net!1!0.png": M.evaluate_alpha(*cases["b"])["conn"]}
    (tmp_path / "trimap" / "net_0.png").unlink()
    with pytest.raises(M.MetricsInputError, match=r"bgy!net!1!0.png: no trimap found .*net_0"):
        MF.evaluate_folder(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap", matcher="composition1k",
                          workers=0, progress=False)
    cv2.imwrite(str(tmp_path / "pred" / "plain.png"), cases["a"][0])
    with pytest.raises(M.MetricsInputError, match="not a Composition-1k name"):
        MF.evaluate_folder(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap", matcher="composition1k",
                          workers=0, progress=False)


def test_folder_bad_file_is_reported_after_the_csv_is_written(tmp_path):
    rng = np.random.default_rng(12)
    cases = {"ok.png": random_case(rng, 8, 8), "bad.png": random_case(rng, 8, 8)}
    _write_set(tmp_path, cases)
    cv2.imwrite(str(tmp_path / "gt" / "bad.png"), (cases["bad.png"][1].astype(np.uint16) * 257))
    out = tmp_path / "m.csv"
    with pytest.raises(M.MetricsInputError, match=r"(?s)1 of 2 image\(s\).*gt/bad.png is uint16"):
        MF.evaluate_folder(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap", out_csv=out,
                          workers=0, progress=False)
    rows = {r["name"]: r for r in csv.DictReader(out.open())}
    assert rows["bad.png"]["error"] and not rows["ok.png"]["error"] and float(rows["ok.png"]["sad"]) >= 0


def test_one_grey_reader_accepts_grey_rgb_and_refuses_colour(tmp_path):
    # the metrics, the datasets and the predictions read grey images with one function and one set of rules
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    opaque = np.full_like(a, 255)
    cv2.imwrite(str(tmp_path / "grey3.png"), np.dstack([a, a, a]))
    cv2.imwrite(str(tmp_path / "grey4.png"), np.dstack([a, a, a, opaque]))
    for name in ("grey3.png", "grey4.png"):
        assert np.array_equal(read_gray(tmp_path / name), a), name
    cv2.imwrite(str(tmp_path / "colour.png"), np.dstack([a, a, 255 - a]))
    with pytest.raises(LayoutError, match="colour.png is a colour image .*differing channels"):
        read_gray(tmp_path / "colour.png")
    cv2.imwrite(str(tmp_path / "see-through.png"), np.dstack([a, a, a, opaque // 2]))
    for reader in (read_gray, layout.read_alpha, layout.read_trimap):  # the alpha channel would be ignored
        with pytest.raises(LayoutError, match="see-through.png has 4 channels with a transparent alpha"):
            reader(tmp_path / "see-through.png")
    with pytest.raises(LayoutError, match="no such file"):
        read_gray(tmp_path / "missing.png")
    # the datasets' alpha mattes tolerate grey-as-RGB JPEG noise (<= 8 levels), converted with OpenCV's weights
    noisy = np.dstack([a, a, a + 3])
    cv2.imwrite(str(tmp_path / "noisy.png"), noisy)
    assert np.array_equal(layout.read_alpha(tmp_path / "noisy.png"), cv2.cvtColor(noisy, cv2.COLOR_BGR2GRAY))
    with pytest.raises(LayoutError, match="differ by up to 3"):
        read_gray(tmp_path / "noisy.png")


def test_parallel_folder_run_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(13)
    cases = {f"im{i}.png": random_case(rng, 10, 10) for i in range(4)}
    _write_set(tmp_path, cases)
    dirs = [tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap"]
    serial = MF.evaluate_folder(*dirs, workers=0, progress=False)
    parallel = MF.evaluate_folder(*dirs, workers=2, progress=False)
    assert parallel["rows"] == serial["rows"]
    code = MF.main(["--pred", str(dirs[0]), "--gt", str(dirs[1]), "--trimap", str(dirs[2]), "--workers", "0",
                   "--out", str(tmp_path / "cli.csv"), "--no-progress"])
    assert code == 0 and "4 images (official): SAD" in capsys.readouterr().out
    assert MF.main(["--pred", str(tmp_path / "nope"), "--gt", str(dirs[1]), "--trimap", str(dirs[2])]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        MF.main(["--help"])
    assert e.value.code == 0 and "--convention" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ bad files
def test_folder_refuses_two_files_of_one_image(tmp_path):
    rng = np.random.default_rng(14)
    cases = {f"im{i}.png": random_case(rng, 8, 8) for i in range(2)}
    _write_set(tmp_path, cases)
    dirs = [tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap"]
    cv2.imwrite(str(tmp_path / "pred" / "im1.bmp"), cases["im1.png"][0])  # counted twice before
    with pytest.raises(M.MetricsInputError, match=r"prediction folder .* same stem \(im1.bmp and im1.png\)"):
        MF.evaluate_folder(*dirs, workers=0, progress=False)
    (tmp_path / "pred" / "im1.bmp").unlink()
    (tmp_path / "gt" / "im1.png").rename(tmp_path / "gt" / "im1.tif")
    cv2.imwrite(str(tmp_path / "gt" / "im1.bmp"), cases["im0.png"][1])  # which one is the ground truth?
    with pytest.raises(M.MetricsInputError, match=r"im1.bmp and .*im1.tif share the stem 'im1'"):
        MF.evaluate_folder(*dirs, workers=0, progress=False)


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"\x89PNG\r\n\x1a\n garbage", "not a readable")])
def test_folder_empty_or_undecodable_png_is_named(tmp_path, capsys, content, message):
    rng = np.random.default_rng(15)
    _write_set(tmp_path, {"ok.png": random_case(rng, 8, 8), "bad.png": random_case(rng, 8, 8)})
    (tmp_path / "pred" / "bad.png").write_bytes(content)
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--trimap", str(tmp_path / "trimap"),
            "--workers", "0", "--no-progress"]
    assert MF.main(args) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'pred' / 'bad.png'}: {message}" in err and "1 of 2 image(s)" in err


def test_folder_output_checked_before_any_image_is_scored(tmp_path, monkeypatch, read_only_dir):
    rng = np.random.default_rng(16)
    _write_set(tmp_path, {"a.png": random_case(rng, 8, 8)})
    dirs = [tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap"]

    def never(*a, **k):
        raise AssertionError("images were scored before the output was checked")

    monkeypatch.setattr(MF, "_run_jobs", never)
    (tmp_path / "res").mkdir()
    with pytest.raises(M.MetricsInputError, match=r"res is a folder; give a file name"):
        MF.evaluate_folder(*dirs, out_csv=tmp_path / "res", workers=0, progress=False)
    ro = read_only_dir
    with pytest.raises(M.MetricsInputError, match=r"ro is read-only"):
        MF.evaluate_folder(*dirs, out_csv=ro / "m.csv", workers=0, progress=False)
