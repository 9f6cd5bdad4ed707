"""The real-photo example of docs/deployment.md: a network trained on the embedded synthetic benchmark, used through
``python -m matting_lib.predict`` on a real photograph with a mask from an ordinary segmenter.

The photo is scikit-image's ``astronaut`` (Eileen Collins, a NASA photograph in the public domain, shipped inside
scikit-image, a locked dependency); the mask is OpenCV's GrabCut from a rectangle around her, i.e. the kind of rough
mask a user would bring. The matte comes
from the command-line tool itself (``--mask``: the mask's edge ± ``--band`` px is the unknown region)::

    .venv/bin/python scripts/real_photo_example.py --checkpoint matting_lib/assets/student-default.pt \\
        --out docs/real_photo_example.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def grabcut_mask(rgb: np.ndarray, rect: tuple[int, int, int, int], iterations: int = 5) -> np.ndarray:
    """A binary foreground mask (uint8 0/255) from OpenCV's GrabCut initialised with ``rect`` (x, y, w, h)."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    return np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the network to use (a checkpoint or .onnx)")
    p.add_argument("--out", required=True, help="the figure (PNG)")
    p.add_argument("--band", type=int, default=12, help="unknown band half-width in pixels around the mask's edge")
    args = p.parse_args(argv)
    import matplotlib
    from skimage import data

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = data.astronaut()  # (512, 512, 3) uint8
    mask = grabcut_mask(rgb, (40, 0, 440, 512))
    with tempfile.TemporaryDirectory() as tmp:
        photo, mask_path, alpha_path = Path(tmp) / "astronaut.png", Path(tmp) / "mask.png", Path(tmp) / "alpha.png"
        cv2.imwrite(str(photo), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mask_path), mask)
        cmd = [sys.executable, "-m", "matting_lib.predict", str(photo), "--mask", str(mask_path), "--band",
               str(args.band), "--checkpoint", str(args.checkpoint), "--out", str(alpha_path)]
        subprocess.run(cmd, check=True, cwd=REPO)
        alpha = cv2.imread(str(alpha_path), cv2.IMREAD_GRAYSCALE)
    a = alpha[..., None].astype(np.float32) / 255.0
    green = np.zeros_like(rgb)
    green[...] = (40, 170, 60)
    comp = (a * rgb + (1 - a) * green).astype(np.uint8)
    panels = [(rgb, "photo (scikit-image 'astronaut')"), (mask, "GrabCut mask"), (alpha, "predicted alpha"),
              (comp, "composite on green")]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"python -m matting_lib.predict --mask, checkpoint {Path(args.checkpoint).name} (trained on the "
                 f"synthetic benchmark only)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
