"""Matte your own photo from the command line.

    python -m matting_lib.predict IMAGE TRIMAP [--checkpoint CKPT] --out ALPHA.png
    python -m matting_lib.predict IMAGE --mask MASK.png [--checkpoint CKPT] --out ALPHA.png [--band 10]

``TRIMAP``: 8-bit grey, 0 = background, 255 = foreground, 128 = unknown (other values are snapped to the
nearest of the three). ``--mask``: a binary foreground mask instead (non-zero = foreground); the trimap is made
by marking a band of ``--band`` pixels on each side of the mask's edge unknown
(:func:`matting_lib.data.trimap.trimap_from_mask`). ``CKPT``: a matting_lib checkpoint (``teacher.pt``, ``best.pt``,
...) or DIM-PyTorch's ``BEST_checkpoint.tar`` (imported safely, :mod:`matting_lib.checkpoints`), or a ``.onnx``
file written by ``python -m matting_lib.export`` (run by onnxruntime on the CPU; same preprocessing, same PNG);
without ``--checkpoint``, the shipped student ``matting_lib/assets/student-default.pt`` when there is one.

``ALPHA``: an 8-bit matte in the lossless format its suffix names (.png, .bmp, .tif, .tiff; lossy suffixes such
as .jpg are refused). An existing ``ALPHA`` is replaced only with ``--force``, and never when it is one of the
inputs or lies in a dataset's inputs or ground truth (:mod:`matting_lib.data.output_safety`). The output path is checked
before anything is computed, and the photo's, trimap's and mask's sizes (from their headers, ``--max-pixels``)
before anything is decoded. A trimap or mask that leaves no unknown pixel (an empty or all-foreground mask) gives
an all-0 / all-255 matte: a warning says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from matting_lib.paths import REPO  # standard library only


def check_output(out: str | Path, inputs: list[str | Path | None], *, force: bool = False) -> Path:
    """Refuse ``out`` before anything is computed (:func:`matting_lib.data.output_safety.check_output`: one of
    ``inputs``, a dataset's inputs or ground truth, a folder, a read-only folder, an existing file without
    ``force``), and a lossy or unknown suffix."""
    from matting_lib.data.output_safety import check_output as check_safe
    from matting_lib.inference.evaluation import check_alpha_suffix

    return check_alpha_suffix(check_safe(out, inputs=inputs, force=force, what="--out", example="alpha.png"))


#: Photos (and trimaps, masks) above this many pixels are refused before decoding; ``--max-pixels`` changes it.
DEFAULT_MAX_PIXELS = 40_000_000


def _count(low: int):
    """An argparse type: an integer of at least ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def known_region_warning(trimap, *, mask: str | None, force_known: bool) -> str | None:
    """The warning for a trimap without unknown (128) pixels, e.g. made from an empty or all-foreground ``--mask``:
    the matte is then all 0, all 255 or the trimap itself, rarely what was meant. None when there are some."""
    if (trimap == 128).any():
        return None
    if mask is not None:
        source, why = f"--mask {mask}", "so the trimap made from it has no unknown band"
        what = ("marks no foreground pixel (all 0)" if not (trimap == 255).any() else
                "marks every pixel as foreground" if not (trimap == 0).any() else "with --band 0")
        fix = ("give a mask that marks the subject, not nothing or the whole photo" if what.startswith("marks") else
               "give --band 1 or more")
    else:
        source, why = "the trimap", "with no unknown (128) pixel"
        what = ("is all background (0)" if not (trimap == 255).any() else
                "is all foreground (255)" if not (trimap == 0).any() else "holds only 0 and 255")
        fix = "give a trimap with an unknown band (128) along the subject's edge"
    result = ("all 0 (background)" if not (trimap == 255).any() else
              "all 255 (foreground)" if not (trimap == 0).any() else "the trimap itself")
    if force_known:
        return f"warning: {source} {what}, {why}: the matte will be {result}; {fix}"
    return (f"warning: {source} {what}, {why}: the network's raw output is kept (--keep-known) but it was given "
            f"no unknown region to estimate; {fix}")


#: The student ``--checkpoint`` defaults to: a distilled student of the default profile's run, chosen on validation
#: (``python -m matting_lib.checkpoints ship-student``; its manifest says which configuration and seed and why).
SHIPPED_STUDENT = REPO / "matting_lib" / "assets" / "student-default.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matting_lib.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("image", help="photo (any format OpenCV reads)")
    p.add_argument("trimap", nargs="?", help="trimap (0 / 128 / 255); or give --mask")
    p.add_argument("--mask", help="binary foreground mask instead of a trimap")
    p.add_argument("--band", type=_count(0), default=10, help="unknown band half-width in pixels for --mask")
    p.add_argument("--checkpoint", default=None,
                   help="matting_lib checkpoint, DIM-PyTorch BEST_checkpoint.tar, or a .onnx from matting_lib.export "
                        "(default: the shipped student matting_lib/assets/student-default.pt)")
    p.add_argument("--out", required=True, help="output alpha matte, 8-bit: .png (or .bmp / .tif / .tiff)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never one of the inputs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--max-pixels", type=_count(1), default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse a photo, trimap or mask of more than N pixels, read from the file's header before "
                        f"anything is decoded (default {DEFAULT_MAX_PIXELS:,}, e.g. 8000×5000: decoding alone takes "
                        f"3 bytes a pixel and the network's feature maps many times that)")
    p.add_argument("--keep-known", dest="force_known", action="store_false",
                   help="keep the network's output in the trimap's known regions (default: force 0 / 255)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "matting_lib.predict"
    if (args.trimap is None) == (args.mask is None):
        print(f"{prog}: error: give a TRIMAP or --mask MASK (exactly one)", file=sys.stderr)
        return 2
    from matting_lib.data.layout import check_image_pixels, read_trimap
    from matting_lib.data.trimap import snap_trimap, trimap_from_mask
    from matting_lib.inference.evaluation import predict_alpha, read_rgb, write_gray
    from matting_lib.networks.devices import checked_device, resolve_device

    if args.checkpoint is None:
        if not SHIPPED_STUDENT.is_file():
            print(f"python -m matting_lib.predict: error: no --checkpoint given and no shipped student at "
                  f"{SHIPPED_STUDENT}; pass --checkpoint (e.g. runs/default/students/kd-spatial+channel-seed0/best.pt "
                  f"after ./run_all.sh)", file=sys.stderr)
            return 2
        args.checkpoint = str(SHIPPED_STUDENT)
    try:
        check_output(args.out, [args.image, args.trimap, args.mask, args.checkpoint], force=args.force)
        for path, what in ((args.image, "photo"), (args.trimap, "trimap"), (args.mask, "mask")):
            if path is not None:
                check_image_pixels(path, args.max_pixels, what=what)
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
        warning = known_region_warning(trimap, mask=args.mask, force_known=args.force_known)
        if warning:
            print(warning, file=sys.stderr)
        device = checked_device(args.device)
        from matting_lib.inference.export import OnnxMatting, load_network
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
