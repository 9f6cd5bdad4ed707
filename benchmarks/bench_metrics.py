"""Speed of matting_lib.metrics against a straightforward NumPy/SciPy port of the same definitions.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py                 # 800x600 and 2000x1500, one core, + folder run
    .venv/bin/python benchmarks/bench_metrics.py --quick         # small sizes, fewer repeats (a smoke run)
    .venv/bin/python benchmarks/bench_metrics.py --folder-images 0   # skip the folder evaluation

For each size it times, on one core (``cv2.setNumThreads(1)``, run with ``OMP_NUM_THREADS=1``), all four
official metrics per image with the project's implementation (``evaluate_alpha``) and with
``naive_official`` below: a direct transliteration of the MATLAB code (whole-image float arrays, the
9x9 2-D kernel through ``scipy.ndimage.convolve``, one ``scipy.ndimage.label`` of the whole image per
threshold). It asserts that both give the same numbers (SAD/MSE/Conn to 1e-9 relative, Grad to 1e-6)
and prints the per-metric times and the speed-up. Then it writes ``--folder-images`` synthetic ~2 MP
images as PNGs and runs ``evaluate_folder(..., workers=2)``, reporting the measured time and the
extrapolation to the 1000 images of Composition-1k. Fixtures are generated with a seeded
``numpy.random.Generator``; timings are the median of ``--repeats`` runs. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from matting_lib import metrics as M
from matting_lib.metrics import folder as MF
from matting_lib.metrics import kernels as impl


# ------------------------------------------------------------------------------------------ fixtures
def synthetic_case(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plausible (pred, gt, trimap) triple, uint8 (h, w): soft-edged blobs with hair-like detail,
    an unknown band of ~10-20 % of the image and an imperfect prediction with speckles."""
    small = rng.normal(size=(max(h // 160, 3), max(w // 160, 3)))
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    hair = cv2.resize(rng.normal(size=(max(h // 6, 4), max(w // 6, 4))), (w, h), interpolation=cv2.INTER_CUBIC)
    gt = 255.0 / (1.0 + np.exp(-(80.0 * (field - 0.2) + 2.5 * hair)))
    gt[gt < 8] = 0
    gt[gt > 247] = 255
    gt = np.rint(gt).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    fg = cv2.erode((gt == 255).astype(np.uint8), k)
    bg = cv2.erode((gt == 0).astype(np.uint8), k)
    trimap = np.full((h, w), 128, np.uint8)
    trimap[fg == 1] = 255
    trimap[bg == 1] = 0
    pred = cv2.GaussianBlur(gt.astype(np.float64), (0, 0), 2.0) + rng.normal(0, 12, (h, w))
    pred[rng.random((h, w)) < 0.002] = 255  # a few speckles: extra components for Conn
    pred = np.rint(np.clip(pred, 0, 255)).astype(np.uint8)
    return pred, gt, trimap


# ------------------------------------------------------------------------------------------ naive port
def _naive_kernel(sigma: float = 1.4) -> np.ndarray:
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 0.01))))
    hx = np.zeros((2 * half + 1, 2 * half + 1))
    for i in range(2 * half + 1):
        for j in range(2 * half + 1):
            u, v = i - half, j - half
            gu = np.exp(-u**2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
            gv = np.exp(-v**2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
            hx[i, j] = gu * (-v * gv / sigma**2)
    return hx / np.sqrt((hx**2).sum())


HX = _naive_kernel()


def naive_official(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """Straightforward port of the four MATLAB functions (8-bit inputs), same units as evaluate_alpha."""
    f32 = np.float32
    unk = (trimap == 128).astype(f32)
    p, g = pred.astype(f32), gt.astype(f32)
    sad = float((np.abs(p - g) / f32(255) * unk).sum(dtype=np.float64)) / 1000
    mse = float((np.square((p - g) / f32(255)) * unk).sum(dtype=np.float64)) / float(unk.sum())

    def mat2gray(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        lo, hi = x.min(), x.max()
        return np.clip(x, 0, 1) if hi == lo else np.clip((x - lo) / (hi - lo), 0, 1)

    def amp(x: np.ndarray) -> np.ndarray:
        gx = ndi.convolve(x, HX, mode="nearest")
        gy = ndi.convolve(x, HX.T, mode="nearest")
        return np.sqrt(gx**2 + gy**2)

    err = np.square(amp(mat2gray(pred)).astype(f32) - amp(mat2gray(gt)).astype(f32))
    grad = float((err * unk).sum(dtype=np.float64)) / 1000

    pa, ga = p / f32(255), g / f32(255)
    steps = np.arange(11) / 10
    l_map = -np.ones(pred.shape)
    for ii in range(1, 11):
        both = (pa >= f32(steps[ii])) & (ga >= f32(steps[ii]))
        lab_t, n = ndi.label(np.ascontiguousarray(both.T))  # labels in column-major order, like bwconncomp
        if n == 0:
            continue
        best = int(np.argmax(np.bincount(lab_t.ravel())[1:])) + 1
        omega = (lab_t == best).T
        l_map[(l_map == -1) & ~omega] = steps[ii - 1]
    l_map[l_map == -1] = 1
    dp, dg = pa - l_map.astype(f32), ga - l_map.astype(f32)
    phi_p = f32(1) - dp * (dp >= f32(0.15)).astype(f32)
    phi_g = f32(1) - dg * (dg >= f32(0.15)).astype(f32)
    conn = float((np.abs(phi_p - phi_g) * unk).sum(dtype=np.float64)) / 1000
    return {"sad": sad, "mse": mse, "grad": grad, "conn": conn}


# ------------------------------------------------------------------------------------------ timing
def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _check_equal(ours: dict, ref: dict, where: str) -> None:
    for k, rtol in (("sad", 1e-9), ("mse", 1e-9), ("conn", 1e-9), ("grad", 1e-6)):
        a, b = ours[k], ref[k]
        if not abs(a - b) <= rtol * max(abs(b), 1e-300):
            raise AssertionError(f"{where}: {k} differs: ours {a!r} vs naive {b!r}")


def bench_size(h: int, w: int, repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    pred, gt, trimap = synthetic_case(h, w, rng)
    ours, ref = M.evaluate_alpha(pred, gt, trimap), naive_official(pred, gt, trimap)
    _check_equal(ours, ref, f"{w}x{h}")
    t_ours = _median_time(lambda: M.evaluate_alpha(pred, gt, trimap), repeats)
    t_ref = _median_time(lambda: naive_official(pred, gt, trimap), max(1, repeats // 2))
    # per-metric breakdown of the project's implementation (after validation)
    p, g, t, u = M._prepare(pred, gt, trimap, True)
    parts = {
        "validate": _median_time(lambda: M._prepare(pred, gt, trimap, True), repeats),
        "sad+mse": _median_time(lambda: impl.official_sad_mse(p, g, u), repeats),
        "grad": _median_time(lambda: impl.official_grad(p, g, u), repeats),
        "conn": _median_time(lambda: impl.official_conn(p, g, u), repeats),
    }
    unknown = 100.0 * np.count_nonzero(u) / p.size
    print(f"{w}x{h} ({w * h / 1e6:.2f} MP, {unknown:.1f} % unknown): ours {1e3 * t_ours:7.1f} ms/img   "
          f"naive {1e3 * t_ref:7.1f} ms/img   speed-up x{t_ref / t_ours:.1f}   "
          f"[" + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in parts.items()) + " ms]")
    print("    values: " + ", ".join(f"{k} {ours[k]:.6g}" for k in M.METRIC_KEYS) + "  (identical to naive)")
    return t_ours, t_ref


def bench_folder(n: int, h: int, w: int, workers: int, rng: np.random.Generator) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {k: Path(tmp, k) for k in ("pred", "gt", "trimap")}
        for d in dirs.values():
            d.mkdir()
        for i in range(n):
            for k, img in zip(("pred", "gt", "trimap"), synthetic_case(h, w, rng)):
                cv2.imwrite(str(dirs[k] / f"img{i:04d}.png"), img)
        t0 = time.perf_counter()
        res = MF.evaluate_folder(dirs["pred"], dirs["gt"], dirs["trimap"], out_csv=Path(tmp, "m.csv"),
                                workers=workers, progress=False)
        dt = time.perf_counter() - t0
    assert res["count"] == n
    print(f"folder: {n} images of {w}x{h} ({w * h / 1e6:.2f} MP) incl. PNG decoding, {workers} workers: "
          f"{dt:.1f} s -> {dt / n * 1000:.0f} s per 1000 images (target < 180 s; pool start-up included)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="800x600,2000x1500", help="comma-separated WxH")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--folder-images", type=int, default=24, help="images for the folder run (0 = skip)")
    ap.add_argument("--folder-size", default="1700x1200", help="WxH of the folder images (~2 MP)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.folder_images, args.folder_size = "320x240,800x600", 2, 4, "400x300"
    cv2.setNumThreads(1)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for one-core timings")
    print("caveat: timings depend on machine load; run alone for numbers to report")
    rng = np.random.default_rng(args.seed)
    ratios = []
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        t_ours, t_ref = bench_size(h, w, args.repeats, rng)
        ratios.append(t_ref / t_ours)
    print("speed-up over the straightforward port: " + ", ".join(f"x{r:.1f}" for r in ratios)
          + " (target >= 3, aim 5)")
    if args.folder_images > 0:
        w, h = (int(v) for v in args.folder_size.lower().split("x"))
        bench_folder(args.folder_images, h, w, args.workers, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
