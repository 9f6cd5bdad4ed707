"""Matte your own photo from the command line.

    python -m matting_lib.predict IMAGE TRIMAP [--checkpoint CKPT] --out ALPHA.png
    python -m matting_lib.predict IMAGE --mask MASK.png [--checkpoint CKPT] --out ALPHA.png [--band 10]

``TRIMAP``: 8-bit grey, 0 = background, 255 = foreground, 128 = unknown (other values are snapped to the
nearest of the three). ``--mask``: a binary foreground mask instead (0 / 255 or 0 / 1); the trimap is made
by marking a band of ``--band`` pixels on each side of the mask's edge unknown
(:func:`matting_lib.data.trimap.trimap_from_mask`). ``CKPT``: a matting_lib checkpoint (``teacher.pt``, ``best.pt``,
...) or DIM-PyTorch's ``BEST_checkpoint.tar`` (imported safely, :mod:`matting_lib.checkpoints`), or a ``.onnx``
file written by ``python -m matting_lib.export`` (run by onnxruntime on the CPU; same preprocessing, same PNG);
without ``--checkpoint``, the shipped student ``matting_lib/assets/student-default.pt`` when there is one.

``ALPHA``: an 8-bit matte in the lossless format its suffix names (.png, .bmp, .tif, .tiff; lossy suffixes such
as .jpg are refused). An existing ``ALPHA`` is replaced only with ``--force``, and never when it is one of the
inputs or lies in a dataset's inputs or ground truth (:mod:`matting_lib.data.output_safety`). The output path is checked
before anything is computed, and the photo's, trimap's and mask's sizes (from their headers, ``--max-pixels``)
before anything is decoded; all of it before torch is imported. A FIFO or device is refused, never opened (reading
it could wait forever). The memory the network needs (:func:`memory_needed`, about 0.2 GB per million pixels for
the shipped student) is compared with the memory available before the photo is decoded.

What is read is checked, with a message naming the file: a truncated or damaged photo, trimap or mask is refused
(:func:`check_intact`; OpenCV alone would decode the missing rows as grey). A mask that is not binary (a soft or
noisy one, e.g. a JPEG) is read as foreground where it is at least 128, with a warning saying so; a 0/1 mask is
read as binary; a trimap given as ``--mask`` is refused. A trimap of the labels 0, 1, 2 is read as background,
unknown and foreground (the label along the background is the unknown one), with a warning; a 0/1 mask given as a
trimap is refused. A trimap or mask that leaves no unknown pixel (an empty or all-foreground mask) gives an
all-0 / all-255 matte: a warning says so.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path

from matting_lib.data.output_safety import check_alpha_suffix, one_line_warnings
from matting_lib.paths import REPO  # standard library only


class PredictInputError(ValueError):
    """A photo, trimap, mask or checkpoint this command cannot use; the message names the file and what to do."""


def check_output(out: str | Path, inputs: list[str | Path | None], *, force: bool = False) -> Path:
    """Refuse ``out`` before anything is computed (:func:`matting_lib.data.output_safety.check_output`: one of
    ``inputs``, a dataset's inputs or ground truth, a folder, a read-only folder, an existing file without
    ``force``), and a lossy or unknown suffix."""
    # imported after the inputs are checked: a bad path answers before torch loads
    from matting_lib.data.output_safety import check_output as check_safe

    return check_alpha_suffix(check_safe(out, inputs=inputs, force=force, what="--out", example="alpha.png"))


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """``Path(path)`` if it is a regular file; a :class:`PredictInputError` naming ``what`` (photo, trimap, mask,
    checkpoint) for a missing path, a folder, or a FIFO, device or socket, which is refused without being opened
    (reading a FIFO waits for a writer, forever if there is none)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise PredictInputError(f"cannot read {what} {path}: file is missing") from None
    except OSError as err:
        raise PredictInputError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise PredictInputError(f"cannot read {what} {path}: it is a folder, not a file; give the {what} file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise PredictInputError(f"{what} {path} is {kind}, not a regular file; it was not opened (reading it could "
                                f"wait forever). Save the {what} to a file and give that file")
    return path


def check_intact(path: str | os.PathLike, what: str) -> None:
    """Refuse a truncated or damaged image before OpenCV decodes it (OpenCV decodes the missing rows of a truncated
    JPEG as flat grey, with only libjpeg's warning): PIL checks a PNG's chunk checksums and its end (``verify``) and
    decodes every format it knows to the last byte (``load``). A :class:`PredictInputError` names the file; a
    format PIL does not read passes (OpenCV's decoder then decides)."""
    # imported after the inputs are checked: a bad path answers before torch loads
    from PIL import Image, UnidentifiedImageError

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the pixel count is --max-pixels' business
    fmt = "image"
    try:
        with Image.open(path) as im:
            fmt = f"{im.format} file" if im.format else fmt
            im.verify()
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return
    except Exception as err:  # noqa: BLE001 - whatever PIL's decoders raise on bad bytes: the file is damaged
        raise PredictInputError(f"{what} {path} is truncated or damaged: the {fmt} cannot be decoded to its end "
                                f"({type(err).__name__}: {' '.join(str(err).split())}); it was not used. Copy or "
                                f"export it again from the original") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from an image file's header (PIL; nothing is decoded), or None where PIL cannot tell."""
    # imported after the inputs are checked: a bad path answers before torch loads
    import warnings

    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 - unreadable headers are named by the decoder later
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


#: Photos (and trimaps, masks) above this many pixels are refused before decoding; ``--max-pixels`` changes it.
DEFAULT_MAX_PIXELS = 40_000_000


def opencv_max_pixels() -> int:
    """The most pixels OpenCV decodes (``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2**30); above it, ``cv2.imread``
    raises instead of decoding."""
    try:
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


#: Memory the network needs, measured on the CPU with ``benchmarks/bench_predict_memory.py`` (the whole command,
#: decoding and trimap included): per pixel, :data:`MEMORY_PER_PIXEL` bytes plus :data:`MEMORY_PER_CHANNEL` per
#: channel of the first encoder stage (full-resolution feature maps dominate), plus :data:`MEMORY_FIXED`. Measured
#: at 2000×2000: 0.19 GB per million pixels for the shipped student (8 channels), 0.97 for the width-1 teacher (64);
#: the estimate is 1.3 to 2.7 times the measured peak at 0.5 to 4 million pixels (it must not fall short).
MEMORY_PER_PIXEL, MEMORY_PER_CHANNEL, MEMORY_FIXED = 64, 20, 250_000_000


def memory_needed(arch: dict | None, pixels: int) -> int:
    """Bytes ``python -m matting_lib.predict`` needs to matte a photo of ``pixels`` pixels with the network
    described by ``arch`` (:attr:`matting_lib.networks.models.DIMNet.arch`; None or no ``widths``: 64 channels
    assumed)."""
    widths = (arch or {}).get("widths") or [64]
    return MEMORY_FIXED + pixels * (MEMORY_PER_PIXEL + MEMORY_PER_CHANNEL * int(widths[0]))


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's ``MemAvailable``, lowered to what a cgroup limit (a
    container, a SLURM job) leaves; None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            found += [int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < 1 << 60:
                found.append(int(limit) - int(Path(usage_file).read_text().strip()))
                break
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def check_memory(arch: dict | None, pixels: int, photo: str | os.PathLike, *, available: int | None,
                 where: str = "memory") -> None:
    """Refuse, before the photo is decoded, a photo whose matting would need more memory than ``available`` bytes
    (None: unknown, not checked): a :class:`PredictInputError` saying how much is needed, how much is there, and the
    largest photo that fits."""
    need = memory_needed(arch, pixels)
    if available is None or need <= available:
        return
    per_pixel = memory_needed(arch, 1) - MEMORY_FIXED
    fits = max(0, (available - MEMORY_FIXED) // per_pixel)
    kind = f"the {(arch or {}).get('kind', 'matting')} network" + (f" (width {arch['width']})" if (arch or {}).get(
        "width") else "")
    raise PredictInputError(f"photo {photo} has {pixels:,} pixels: {kind} needs about {need / 1e9:.1f} GB of "
                            f"{where} for it, but {available / 1e9:.1f} GB is available; it was not decoded. "
                            f"Downscale it to at most about {fits:,} pixels, or free memory")


def _count(low: int, high: int | None = None, why: str = ""):
    """An argparse type: an integer of at least ``low`` (and at most ``high``, ``why`` saying why)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}{why}, got {value:,}")
        return value
    return parse


def mask_foreground(mask, path: str | os.PathLike):
    """The foreground of a ``--mask`` read as uint8 (H, W): bool (H, W) and a warning or None.

    0/255 and 0/1 masks are binary. A mask holding exactly 0, 128 and 255 is a trimap given as ``--mask``: refused
    (:class:`PredictInputError`). Any other mask is not binary (soft edges, JPEG noise): foreground where it is at
    least 128, and the warning says so (a noisy background of 1-2 levels would otherwise all count as foreground).
    """
    # imported after the inputs are checked: a bad path answers before torch loads
    import numpy as np

    counts = np.bincount(mask.ravel(), minlength=256)
    values = set(np.flatnonzero(counts).tolist())
    if values <= {0, 255}:
        return mask == 255, None
    if values <= {0, 1}:
        return mask == 1, None
    if values == {0, 128, 255}:
        raise PredictInputError(f"--mask {path} holds exactly 0, 128 and 255: it is a trimap, not a mask; give it as "
                                f"the second argument (TRIMAP) instead of --mask")
    between = int(counts[1:255].sum())
    lo, hi = min(values - {0}), max(values - {255})
    return mask >= 128, (f"warning: --mask {path} is not binary: {between / mask.size:.1%} of its pixels lie "
                         f"between 0 and 255 (values {lo} to {hi}: soft edges or noise, e.g. from JPEG); it was read "
                         f"as foreground where it is 128 or more. Give a binary mask (only 0 and 255, saved as PNG) "
                         f"if that is not what you meant")


def label_trimap(trimap, path: str | os.PathLike):
    """A trimap read as uint8 (H, W) in 0 / 128 / 255 and a warning or None.

    Values within {0, 1, 2}, with both 1 and 2 present, are labels: 0 = background and, of 1 and 2, the one that
    borders the background more is unknown (a trimap's unknown band separates background from foreground), the
    other foreground; the warning says which was taken. A trimap of only 0 and 1 is a binary mask: refused
    (:class:`PredictInputError`, give it as ``--mask``). Anything else is snapped to the nearest of 0 / 128 / 255
    (:func:`matting_lib.data.trimap.snap_trimap`)."""
    # imported after the inputs are checked: a bad path answers before torch loads
    import cv2
    import numpy as np

    from matting_lib.data.trimap import snap_trimap

    values = set(np.flatnonzero(np.bincount(trimap.ravel(), minlength=256)).tolist())
    if values <= {0, 1} and 1 in values:
        raise PredictInputError(f"trimap {path} holds only 0 and 1: a binary mask, not a trimap (0 = background, "
                                f"128 = unknown, 255 = foreground); give it as --mask {path} (its edge ± --band "
                                f"pixels becomes the unknown region)")
    if not (values <= {0, 1, 2} and {1, 2} <= values):
        return snap_trimap(trimap), None
    near_bg = cv2.dilate((trimap == 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    unknown = 1 if (near_bg & (trimap == 1)).sum() >= (near_bg & (trimap == 2)).sum() else 2
    out = np.zeros_like(trimap)
    out[trimap == unknown] = 128
    out[trimap == 3 - unknown] = 255
    return out, (f"warning: trimap {path} holds the labels 0, 1 and 2, not 0 / 128 / 255; it was read as 0 = "
                 f"background, {unknown} = unknown (the label along the background), {3 - unknown} = foreground. Save "
                 f"it with 0 / 128 / 255 if that is not what you meant")


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (Python's, torch's CPU or CUDA allocator's, OpenCV's)."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or any(s in text for s in (
        "not enough memory", "out of memory", "defaultcpuallocator", "insufficient memory", "failed to allocate"))


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
    p.add_argument("--mask", help="binary foreground mask (0 / 255 or 0 / 1) instead of a trimap; another mask is "
                                  "read as foreground where >= 128, with a warning")
    p.add_argument("--band", type=_count(0), default=10, help="unknown band half-width in pixels for --mask")
    p.add_argument("--checkpoint", default=None,
                   help="matting_lib checkpoint, DIM-PyTorch BEST_checkpoint.tar, or a .onnx from matting_lib.export "
                        "(default: the shipped student matting_lib/assets/student-default.pt)")
    p.add_argument("--out", required=True, help="output alpha matte, 8-bit: .png (or .bmp / .tif / .tiff)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never one of the inputs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--max-pixels", type=_count(1, opencv_max_pixels(), " (the most OpenCV decodes, "
                                                                      "OPENCV_IO_MAX_IMAGE_PIXELS)"),
                   default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse a photo, trimap or mask of more than N pixels, read from the file's header before "
                        f"anything is decoded (default {DEFAULT_MAX_PIXELS:,}, e.g. 8000×5000: decoding alone takes "
                        f"3 bytes a pixel and the network's feature maps many times that)")
    p.add_argument("--keep-known", dest="force_known", action="store_false",
                   help="keep the network's output in the trimap's known regions (default: force 0 / 255)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    if (args.trimap is None) == (args.mask is None):
        print(f"{prog}: error: give a TRIMAP or --mask MASK (exactly one)", file=sys.stderr)
        return 2
    if args.checkpoint is None:
        if not SHIPPED_STUDENT.is_file():
            print(f"{prog}: error: no --checkpoint given and no shipped student at {SHIPPED_STUDENT}; pass "
                  f"--checkpoint (e.g. runs/default/students/kd-spatial+channel-seed0/best.pt after ./run_all.sh)",
                  file=sys.stderr)
            return 2
        args.checkpoint = str(SHIPPED_STUDENT)
    with one_line_warnings(prog):
        try:
            return _matte(args, prog)
        except Exception as err:  # noqa: BLE001 - sorted below: a message for the user's mistakes, else re-raised
            if out_of_memory(err):
                message = (f"ran out of memory while matting {args.image} ({type(err).__name__}: "
                           f"{(str(err).strip().splitlines() or [''])[0][:160]}); downscale the photo or free memory")
            elif isinstance(err, (OSError, ValueError, RuntimeError)) or type(err).__module__ == "cv2":
                message = str(err)
            else:
                raise
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 1


def _matte(args: argparse.Namespace, prog: str) -> int:
    """The work of :func:`main`: the user's files first (paths, output, sizes: no torch yet), then the network and
    its memory, then decoding, then the matte. Warnings are printed after ``prog``."""
    inputs = [(path, what) for path, what in ((args.image, "photo"), (args.trimap, "trimap"), (args.mask, "mask"))
              if path is not None]
    for path, what in [*inputs, (args.checkpoint, "checkpoint")]:
        check_input_file(path, what)
    check_output(args.out, [args.image, args.trimap, args.mask, args.checkpoint], force=args.force)
    # imported after the inputs are checked: a bad path answers before torch loads
    from matting_lib.data.layout import check_image_pixels

    for path, what in inputs:
        check_image_pixels(path, args.max_pixels, what=what)
    size = image_size(args.image)

    # imported after the inputs are checked: a bad path answers before torch loads
    from matting_lib.data.layout import read_trimap
    from matting_lib.data.trimap import trimap_from_mask
    from matting_lib.inference.evaluation import predict_alpha, read_rgb, write_gray  # torch from here on
    from matting_lib.inference.export import OnnxMatting, load_network
    from matting_lib.networks.devices import checked_device, resolve_device

    device = checked_device(args.device)
    model = load_network(args.checkpoint)  # a checkpoint, or a .onnx export run by onnxruntime on the CPU
    if isinstance(model, OnnxMatting):
        device = resolve_device("cpu")
    if size is not None:
        if device.type == "cuda":
            # imported after the inputs are checked: a bad path answers before torch loads
            import torch

            check_memory(getattr(model, "arch", None), size[0] * size[1], args.image, where="GPU memory",
                         available=torch.cuda.mem_get_info(device)[0])
        check_memory(getattr(model, "arch", None), size[0] * size[1], args.image, available=available_memory())
    for path, what in inputs:
        check_intact(path, what)
    image = read_rgb(args.image)
    if args.mask is not None:
        fg, warning = mask_foreground(read_trimap(args.mask, what="mask"), args.mask)
        trimap = trimap_from_mask(fg, args.band)
    else:
        trimap, warning = label_trimap(read_trimap(args.trimap), args.trimap)
    if warning:
        print(f"{prog}: {warning}", file=sys.stderr)
    if trimap.shape != image.shape[:2]:
        raise PredictInputError(f"the {'mask' if args.mask else 'trimap'} is {trimap.shape[1]}×{trimap.shape[0]} but "
                                f"the image is {image.shape[1]}×{image.shape[0]}; they must be the same size")
    if min(image.shape[:2]) < 32:
        raise PredictInputError(f"{args.image} is {image.shape[1]}×{image.shape[0]}; both sides must be ≥ 32 px")
    warning = known_region_warning(trimap, mask=args.mask, force_known=args.force_known)
    if warning:
        print(f"{prog}: {warning}", file=sys.stderr)
    model = model.to(device)
    t0 = time.time()
    try:
        alpha = predict_alpha(model, image, trimap, device=device, force_known=args.force_known)
    except ValueError as err:
        raise ValueError(f"{args.checkpoint}: {err}") from None
    out = write_gray(args.out, alpha)
    unknown = float((trimap == 128).mean())
    print(f"wrote {out} ({alpha.shape[1]}×{alpha.shape[0]}, {unknown:.1%} unknown, "
          f"{time.time() - t0:.2f} s on {device})")
    return 0
