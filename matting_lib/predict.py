"""Matte your own photo from the command line.

    python -m matting_lib.predict IMAGE TRIMAP --checkpoint CKPT --out ALPHA.png
    python -m matting_lib.predict IMAGE --mask MASK.png --checkpoint CKPT --out ALPHA.png [--band 10]

``TRIMAP``: 8-bit grey, 0 = background, 255 = foreground, 128 = unknown (other values are snapped to the
nearest of the three). ``--mask``: a binary foreground mask instead (non-zero = foreground); the trimap is made
by marking a band of ``--band`` pixels on each side of the mask's edge unknown
(:func:`matting_lib.trimap.trimap_from_mask`). ``CKPT``: a matting_lib checkpoint (``teacher.pt``, ``best.pt``,
...) or DIM-PyTorch's ``BEST_checkpoint.tar`` (imported safely, :mod:`matting_lib.checkpoints`), or a ``.onnx``
file written by ``python -m matting_lib.export`` (run by onnxruntime on the CPU; same preprocessing, same PNG).

``ALPHA``: an 8-bit matte in the lossless format its suffix names (.png, .bmp, .tif, .tiff; lossy suffixes such
as .jpg are refused). An existing ``ALPHA`` is replaced only with ``--force``, and never when it is one of the
inputs. The output path is checked before anything is computed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def check_output(out: str | Path, inputs: list[str | Path | None], *, force: bool = False) -> Path:
    """Refuse ``out`` before anything is computed: a lossy or unknown suffix, a folder, a read-only folder, an
    existing file without ``force``, and — even with ``force`` — any of ``inputs`` (None entries are skipped)."""
    from .evaluation import check_alpha_suffix
    from .utils import check_writable

    out = Path(out)
    for given in inputs:
        if given is not None and Path(given).exists() and out.exists() and os.path.samefile(given, out):
            raise ValueError(f"--out {out} is the input {given}; it is never overwritten: choose another file")
    if out.is_file() and not force:
        raise FileExistsError(f"--out {out} exists; pass --force to replace it")
    check_writable(out, what="--out", example="alpha.png")
    return check_alpha_suffix(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matting_lib.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("image", help="photo (any format OpenCV reads)")
    p.add_argument("trimap", nargs="?", help="trimap (0 / 128 / 255); or give --mask")
    p.add_argument("--mask", help="binary foreground mask instead of a trimap")
    p.add_argument("--band", type=int, default=10, help="unknown band half-width in pixels for --mask")
    p.add_argument("--checkpoint", required=True,
                   help="matting_lib checkpoint, DIM-PyTorch BEST_checkpoint.tar, or a .onnx from matting_lib.export")
    p.add_argument("--out", required=True, help="output alpha matte, 8-bit: .png (or .bmp / .tif / .tiff)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never one of the inputs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--keep-known", dest="force_known", action="store_false",
                   help="keep the network's output in the trimap's known regions (default: force 0 / 255)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "matting_lib.predict"
    if (args.trimap is None) == (args.mask is None):
        print(f"{prog}: error: give a TRIMAP or --mask MASK (exactly one)", file=sys.stderr)
        return 2
    from .evaluation import predict_alpha, read_rgb, write_gray
    from .layout import read_trimap
    from .training import resolve_device
    from .trimap import snap_trimap, trimap_from_mask

    try:
        check_output(args.out, [args.image, args.trimap, args.mask, args.checkpoint], force=args.force)
        image = read_rgb(args.image)
        if args.mask is not None:
            trimap = trimap_from_mask(read_trimap(args.mask, what="mask") > 0, args.band)
        else:
            trimap = snap_trimap(read_trimap(args.trimap))
        if trimap.shape != image.shape[:2]:
            raise ValueError(f"the {'mask' if args.mask else 'trimap'} is {trimap.shape[1]}×{trimap.shape[0]} but "
                             f"the image is {image.shape[1]}×{image.shape[0]}; they must be the same size")
        if min(image.shape[:2]) < 32:
            raise ValueError(f"{args.image} is {image.shape[1]}×{image.shape[0]}; both sides must be ≥ 32 px")
        device = resolve_device(args.device)
        from .export import OnnxMatting, load_network
        model = load_network(args.checkpoint)  # a checkpoint, or a .onnx export run by onnxruntime on the CPU
        if isinstance(model, OnnxMatting):
            device = resolve_device("cpu")
        model = model.to(device)
        t0 = time.time()
        try:
            alpha = predict_alpha(model, image, trimap, device=device, force_known=args.force_known)
        except ValueError as err:
            raise ValueError(f"{args.checkpoint}: {err}") from None
        out = write_gray(args.out, alpha)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    unknown = float((trimap == 128).mean())
    print(f"wrote {out} ({alpha.shape[1]}×{alpha.shape[0]}, {unknown:.1%} unknown, "
          f"{time.time() - t0:.2f} s on {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
