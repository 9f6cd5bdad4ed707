"""A tiny dataset in the real Adobe Deep Image Matting layout, with real-style names, for tests.

    from fixtures_adobe import make_tiny_adobe
    root = make_tiny_adobe(tmp_path / "adobe")          # 3 train fg x 2 COCO bg, 2 test fg x 2 VOC bg

Foreground names look like Adobe's (``1-1252426161dfXY.jpg``, ``13564741125_753939e9ce_o.png``,
``antique-honiton-lace-1182740_1920.png``), backgrounds like COCO (``COCO_train2014_000000000009.jpg``) and
VOC (``2008_000001.jpg``). Every third training foreground lives in ``Other/`` as in the real archive.
Backgrounds alternate between smaller and larger than the foregrounds, so the upscaling path of the
compositing code is exercised. Alphas are soft discs with fractional edges; test trimaps
``{fg stem}_{i}.png`` are 0/128/255 PNGs. Deterministic for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_TRAIN_STYLES = ["1-{n}{tag}.jpg", "{n}_{hexa}_o.png", "{n}_{hexa}_b.jpg"]
_TEST_NAMES = ["antique-honiton-lace-1182740_1920.png", "ball-597523_1920.png", "beach-747750_1280.png",
               "boy-1518482_1920.png", "brandy-402572_1920.png"]


def _soft_disc(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    r = min(h, w) * rng.uniform(0.25, 0.35)
    d = np.hypot(yy - cy, xx - cx)
    soft = rng.uniform(2.0, 4.0)
    alpha = np.clip((r - d) / soft + 0.5, 0.0, 1.0)
    return np.rint(alpha * 255).astype(np.uint8)


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img[..., ::-1] if img.ndim == 3 else img  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), params):
        raise RuntimeError(f"could not write {path}")


def make_tiny_adobe(root: Path, *, n_train_fg: int = 3, n_test_fg: int = 2, bg_per_train_fg: int = 2,
                    bg_per_test_fg: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """Write a tiny Adobe-layout dataset under ``root`` and return ``root``. ``size`` = fg (H, W)."""
    from matting_lib.data.trimap import trimap_from_distance

    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    train = root / "Combined_Dataset" / "Training_set"
    test = root / "Combined_Dataset" / "Test_set"
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))

    def fg_image() -> np.ndarray:
        base = rng.integers(0, 256, 3)
        noise = rng.normal(0, 25, (h, w, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    def bg_image(i: int) -> np.ndarray:
        scale = 0.6 if i % 2 == 0 else 1.5  # smaller than the fg (upscaled) or larger (cropped)
        bh, bw = max(16, int(h * scale)), max(16, int(w * scale * rng.uniform(0.9, 1.2)))
        yy, xx = np.mgrid[0:bh, 0:bw]
        grad = np.stack([xx * 255 / bw, yy * 255 / bh, np.full((bh, bw), rng.uniform(0, 255))], -1)
        return np.clip(grad + rng.normal(0, 10, (bh, bw, 3)), 0, 255).astype(np.uint8)

    train_fg = []
    for i in range(n_train_fg):
        style = _TRAIN_STYLES[i % len(_TRAIN_STYLES)]
        train_fg.append(style.format(n=1252426161 + 7919 * i, tag="".join(rng.choice(letters, 4)),
                                     hexa="".join(rng.choice(list("0123456789abcdef"), 10))))
    test_fg = [(_TEST_NAMES[i % len(_TEST_NAMES)] if i < len(_TEST_NAMES)
                else _TEST_NAMES[i % len(_TEST_NAMES)].replace("_", f"-{i}_")) for i in range(n_test_fg)]

    for i, name in enumerate(train_fg):
        group = "Other" if i % 3 == 2 else "Adobe-licensed images"
        _write(train / group / "fg" / name, fg_image())
        _write(train / group / "alpha" / name, _soft_disc(h, w, rng))
    for name in test_fg:
        alpha = _soft_disc(h, w, rng)
        _write(test / "Adobe-licensed images" / "fg" / name, fg_image())
        _write(test / "Adobe-licensed images" / "alpha" / name, alpha)
        trimap = trimap_from_distance(alpha, 3)
        for b in range(bg_per_test_fg):
            _write(test / "Adobe-licensed images" / "trimaps" / f"{Path(name).stem}_{b}.png", trimap)

    coco_ids = rng.choice(np.arange(9, 600_000), n_train_fg * bg_per_train_fg, replace=False)
    train_bg = [f"COCO_train2014_{int(n):012d}.jpg" for n in coco_ids]
    test_bg = [f"2008_{int(n):06d}.jpg" for n in range(1, 1 + n_test_fg * bg_per_test_fg)]
    for i, name in enumerate(train_bg):
        _write(root / "train2014" / name, bg_image(i))
    for i, name in enumerate(test_bg):
        _write(root / "VOCdevkit" / "VOC2012" / "JPEGImages" / name, bg_image(i))

    for path, names in ((train / "training_fg_names.txt", train_fg), (train / "training_bg_names.txt", train_bg),
                        (test / "test_fg_names.txt", test_fg), (test / "test_bg_names.txt", test_bg)):
        path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return root
