"""The Adobe Deep Image Matting dataset layout (:class:`DatasetLayout`) and image I/O.

One code path serves the real Adobe data (plus COCO/VOC backgrounds) and the embedded synthetic benchmark
(:mod:`matting_lib.data.synthetic` writes the same layout)::

    <root>/Combined_Dataset/Training_set/{training_fg_names,training_bg_names}.txt
    <root>/Combined_Dataset/Training_set/{Adobe-licensed images,Other}/{fg,alpha}/<fg name>
    <root>/Combined_Dataset/Test_set/{test_fg_names,test_bg_names}.txt
    <root>/Combined_Dataset/Test_set/Adobe-licensed images/{fg,alpha,trimaps}/   trimaps: {fg stem}_{i}.png
    <root>/train2014/                      training backgrounds (COCO)
    <root>/VOCdevkit/VOC2012/JPEGImages/   test backgrounds (VOC)
    <root>/Composition-1k/merged/{bg stem}!{fg stem}!{f}!{b}.png   written by compositing.build_test_set

Background lists hold K names per foreground, in foreground order (Adobe: K = 100 train, 20 test);
composite ``(f, b)`` uses background ``f * K + b`` and, in the test set, trimap ``{fg stem}_{b}.png``.

Image readers decode like the official compositing code (``backend="cv2"``: DIM-PyTorch's OpenCV,
``"pil"``: Adobe's PIL) and raise :class:`LayoutError` with a message saying what to fix. The checker of a
whole dataset folder is :mod:`matting_lib.data.layout_check`; compositing is :mod:`matting_lib.data.compositing`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

TRAIN_BG_DIR = "train2014"
TEST_BG_DIR = "VOCdevkit/VOC2012/JPEGImages"
SPLITS = ("train", "test")


class LayoutError(ValueError):
    """The dataset folder is incomplete or inconsistent; the message names the files and what to do."""


# ----------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class DatasetLayout:
    """Where every file of an Adobe-layout dataset lives. ``bg_*_dir`` default to the COCO/VOC folders
    under ``root``; relative ones are taken relative to ``root``."""

    root: Path
    bg_train_dir: Path | None = None
    bg_test_dir: Path | None = None

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser()
        object.__setattr__(self, "root", root)
        for name, default in (("bg_train_dir", TRAIN_BG_DIR), ("bg_test_dir", TEST_BG_DIR)):
            value = Path(getattr(self, name) or default).expanduser()
            object.__setattr__(self, name, value if value.is_absolute() else root / value)

    @classmethod
    def for_root(cls, root: str | os.PathLike, *, bg_train_dir: str | os.PathLike | None = None,
                 bg_test_dir: str | os.PathLike | None = None) -> DatasetLayout:
        return cls(Path(root), None if bg_train_dir is None else Path(bg_train_dir),
                   None if bg_test_dir is None else Path(bg_test_dir))

    # folders
    @property
    def combined_dir(self) -> Path:
        return self.root / "Combined_Dataset"

    @property
    def train_dir(self) -> Path:
        return self.combined_dir / "Training_set"

    @property
    def test_dir(self) -> Path:
        return self.combined_dir / "Test_set"

    @property
    def train_fg_dirs(self) -> tuple[Path, Path]:
        return (self.train_dir / "Adobe-licensed images" / "fg", self.train_dir / "Other" / "fg")

    @property
    def train_alpha_dirs(self) -> tuple[Path, Path]:
        return (self.train_dir / "Adobe-licensed images" / "alpha", self.train_dir / "Other" / "alpha")

    @property
    def test_fg_dir(self) -> Path:
        return self.test_dir / "Adobe-licensed images" / "fg"

    @property
    def test_alpha_dir(self) -> Path:
        return self.test_dir / "Adobe-licensed images" / "alpha"

    @property
    def test_trimap_dir(self) -> Path:
        return self.test_dir / "Adobe-licensed images" / "trimaps"

    @property
    def composition_dir(self) -> Path:
        return self.root / "Composition-1k"

    @property
    def merged_dir(self) -> Path:
        return self.composition_dir / "merged"

    @property
    def train_merged_dir(self) -> Path:
        """Optional training composites written for inspection by :func:`build_train_composites`."""
        return self.composition_dir / "train_merged"

    # name lists
    @property
    def training_fg_names_file(self) -> Path:
        return self.train_dir / "training_fg_names.txt"

    @property
    def training_bg_names_file(self) -> Path:
        return self.train_dir / "training_bg_names.txt"

    @property
    def test_fg_names_file(self) -> Path:
        return self.test_dir / "test_fg_names.txt"

    @property
    def test_bg_names_file(self) -> Path:
        return self.test_dir / "test_bg_names.txt"

    def names_file(self, split: str, kind: str) -> Path:
        check_split(split)
        return {("train", "fg"): self.training_fg_names_file, ("train", "bg"): self.training_bg_names_file,
                ("test", "fg"): self.test_fg_names_file, ("test", "bg"): self.test_bg_names_file}[(split, kind)]

    def fg_names(self, split: str) -> list[str]:
        return read_name_list(self.names_file(split, "fg"))

    def bg_names(self, split: str) -> list[str]:
        return read_name_list(self.names_file(split, "bg"))

    def bg_per_fg(self, split: str) -> int:
        """K, the number of backgrounds listed per foreground; raises if the lists do not divide."""
        n_fg, n_bg = len(self.fg_names(split)), len(self.bg_names(split))
        if n_bg % n_fg:
            raise LayoutError(f"{self.names_file(split, 'bg')}: {n_bg} backgrounds for {n_fg} foregrounds in "
                              f"{self.names_file(split, 'fg')} is not a whole number per foreground")
        return n_bg // n_fg

    # files
    def fg_path(self, split: str, name: str) -> Path:
        """The foreground file; training foregrounds are looked up in 'Adobe-licensed images' then 'Other'."""
        dirs = self.train_fg_dirs if check_split(split) == "train" else (self.test_fg_dir,)
        return _find(name, dirs, f"{split} foreground")

    def alpha_path(self, split: str, name: str) -> Path:
        dirs = self.train_alpha_dirs if check_split(split) == "train" else (self.test_alpha_dir,)
        return _find(name, dirs, f"{split} alpha matte")

    def bg_path(self, split: str, name: str) -> Path:
        return (self.bg_train_dir if check_split(split) == "train" else self.bg_test_dir) / name

    def trimap_path(self, fg_name: str, i: int) -> Path:
        return self.test_trimap_dir / f"{Path(fg_name).stem}_{i}.png"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _find(name: str, dirs: tuple[Path, ...], what: str) -> Path:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise LayoutError(f"{what} {name!r} not found; looked in: {', '.join(str(d) for d in dirs)}. "
                      "Check the name list against the unpacked files (see check_layout).")


def read_name_list(path: Path) -> list[str]:
    """One file name per line (UTF-8; blank lines and surrounding whitespace ignored); raises
    :class:`LayoutError` naming the file if it is missing, empty or not UTF-8 (with the line)."""
    if not path.is_file():
        raise LayoutError(f"name list {path} is missing; the dataset root must contain Combined_Dataset/ "
                          "as unpacked from Adobe's archive (or run synthetic.generate_dataset)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the first name
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise LayoutError(f"name list {path}, line {line}: byte {data[err.start:err.start + 1]!r} is not UTF-8; "
                          f"save the list as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise LayoutError(f"name list {path} is empty")
    return names


# ----------------------------------------------------------------------------------------------- image I/O
def read_rgb(path: str | os.PathLike, *, backend: str = "cv2") -> np.ndarray:
    """Read a colour image as uint8 (H, W, 3) RGB. ``backend="cv2"`` decodes like ``cv.imread(path)``
    (DIM-PyTorch), ``"pil"`` like ``Image.open(path).convert('RGB')`` (Adobe's code)."""
    path = Path(path)
    if backend == "pil":
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise LayoutError(f"cannot read image {path}: {err}") from None
    if backend != "cv2":
        raise ValueError(f"backend must be 'cv2' or 'pil', got {backend!r}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise LayoutError(f"cannot read image {path}: " + ("file is missing" if not path.exists() else
                          "it is a folder, not an image file" if path.is_dir() else
                          "unreadable or not an image; replace it with an intact copy"))
    return np.ascontiguousarray(img[..., ::-1])


def check_image_pixels(path: str | os.PathLike, max_pixels: int, *, what: str = "image",
                       option: str = "--max-pixels") -> None:
    """Refuse an image of more than ``max_pixels`` pixels from its header alone, before anything decodes it (a
    12,000 × 12,000 PNG decodes to 432 MB): :class:`LayoutError` naming the file, its size and ``option``. A file
    whose header PIL cannot read passes (the decoder's own message will name the problem)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
    except Image.DecompressionBombError as err:  # PIL refuses to open such images itself; it names the count
        found = re.search(r"\((\d+) pixels\)", str(err))
        if found and int(found[1]) > max_pixels:
            raise LayoutError(f"{what} {path} has {int(found[1]):,} pixels, above the limit of {max_pixels:,} "
                              f"({option}); it was not decoded. Downscale it, or raise the limit ({option} N) "
                              f"where the memory allows") from None
        return
    except (OSError, ValueError, SyntaxError):
        return
    if width * height > max_pixels:
        raise LayoutError(f"{what} {path} is {width}×{height} = {width * height:,} pixels, above the limit of "
                          f"{max_pixels:,} ({option}); it was not decoded. Downscale it, or raise the limit "
                          f"({option} N) where the memory allows")


def read_gray(path: str | os.PathLike, *, what: str = "image", max_channel_diff: int = 0) -> np.ndarray:
    """Read an 8-bit single-channel image (alpha matte, trimap, prediction, mask) as (H, W) uint8, as stored.

    The project's one reader of grey images; its rules are the official evaluation's (``hleval.m`` reads an
    8-bit PNG and takes ``gt(:, :, 1)``), made strict so that nothing is guessed:

    * missing, empty, undecodable and non-8-bit (e.g. 16-bit) files are refused;
    * a 3- or 4-channel file whose colour channels are equal (and whose alpha channel, if any, is opaque) is
      read as grey; a 2-channel (grey + alpha) file likewise needs an opaque alpha;
    * colour channels that differ are refused unless by at most ``max_channel_diff`` levels; such a file is
      converted with OpenCV's BGR->grey weights. Only :func:`read_alpha` allows a difference (8): some Adobe
      training mattes are grey JPEGs stored as RGB. The metrics read with 0 (an evaluation must not guess).

    ``what`` names the image in the messages, which raise :class:`LayoutError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"cannot read {what} {path}: " + ("it is a folder, not an image file" if path.is_dir() else
                                                            "no such file"))
    data = np.fromfile(path, np.uint8)  # np.fromfile + imdecode: also non-ASCII paths, and empty files named as such
    if not data.size:
        raise LayoutError(f"cannot read {what} {path}: empty file (0 bytes); write the image again")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # some decoders raise instead of returning None
        raise LayoutError(f"cannot read {what} {path}: not a readable image ({getattr(err, 'err', err)})") from None
    if img is None:
        raise LayoutError(f"cannot read {what} {path}: not a readable image (truncated or not an image); "
                          f"write it again")
    if img.dtype != np.uint8:
        raise LayoutError(f"{what} {path} is {img.dtype} ({8 * img.itemsize}-bit, max value {int(img.max())}); "
                          f"save it as an 8-bit greyscale PNG (e.g. numpy: np.rint(a / 257).astype(np.uint8))")
    if img.ndim == 2:
        return np.ascontiguousarray(img)
    channels = img.shape[2]
    if channels in (2, 4) and not bool((img[..., -1] == 255).all()):
        raise LayoutError(f"{what} {path} has {channels} channels with a transparent alpha channel; it is ambiguous "
                          f"which one holds the values: save it alone as an 8-bit greyscale PNG")
    color = img[..., :3] if channels >= 3 else img[..., :1]
    diff = int(np.abs(color.astype(np.int16) - color[..., :1]).max()) if color.size else 0
    if diff > max_channel_diff:
        values = " (0 = background, 128 = unknown, 255 = foreground)" if what == "trimap" else ""
        raise LayoutError(f"{what} {path} is a colour image (its {channels} channels differ by up to {diff}; "
                          f"differing channels are refused): save it as an 8-bit greyscale PNG{values}")
    if diff:
        return cv2.cvtColor(np.ascontiguousarray(color), cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img[..., 0])


def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """A dataset's alpha matte as uint8 (H, W): :func:`read_gray`, tolerating grey-as-RGB JPEG noise (<= 8 levels)."""
    return read_gray(path, what="alpha matte", max_channel_diff=8)


def read_trimap(path: str | os.PathLike, *, what: str = "trimap") -> np.ndarray:
    """A trimap (or mask: ``what``) as uint8 (H, W) exactly as stored: :func:`read_gray`; snap resized or JPEG
    trimaps with :func:`matting_lib.data.trimap.snap_trimap`."""
    return read_gray(path, what=what)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) grey or (H, W, 3) RGB image (OpenCV's encoder, default settings)."""
    arr = img[..., ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an array of shape {img.shape}")
    return buf.tobytes()


# ----------------------------------------------------------------------------------------------- identity
def dataset_identity(layout: DatasetLayout) -> dict[str, str]:
    """What identifies a dataset's contents, independent of where and how it was made.

    * A generated (synthetic) dataset: ``{"kind": "files", "sha256": ...}``, the SHA-256 of its manifest's
      sorted ``path sha256`` lines — the files themselves, not the manifest's environment fields (library
      versions), so the same bytes give the same identity on any machine.
    * Other data (Adobe layout): ``{"kind": "names+sizes", ...}``, the name lists and the byte size of every
      listed file: hashing 43,100 images would take minutes, and a changed file almost always changes size.
    """
    h = hashlib.sha256()
    man = layout.root / "manifest.json"
    if man.is_file():
        files = json.loads(man.read_text(encoding="utf-8")).get("files")
        if files:
            for rel in sorted(files):
                h.update(f"{rel} {files[rel]}\n".encode())
            return {"kind": "files", "sha256": h.hexdigest()}
    for split in SPLITS:
        for kind in ("fg", "bg"):
            path = layout.names_file(split, kind)
            h.update(path.read_bytes() if path.is_file() else b"missing\n")
        try:
            fgs, bgs = layout.fg_names(split), layout.bg_names(split)
        except LayoutError:
            continue
        for name in fgs:
            for p in (layout.fg_path(split, name), layout.alpha_path(split, name)):
                h.update(f"{p.name} {p.stat().st_size if p.is_file() else -1}\n".encode())
        for name in bgs:
            p = layout.bg_path(split, name)
            h.update(f"{name} {p.stat().st_size if p.is_file() else -1}\n".encode())
    return {"kind": "names+sizes", "sha256": h.hexdigest()}


def compare_training_data(manifest: dict, layout: DatasetLayout) -> tuple[bool | None, str]:
    """Whether ``layout`` holds the data a checkpoint was trained on, from its provenance ``manifest``.

    Returns ``(same, message)``: ``same`` is True/False, or None when the manifest records nothing comparable.
    New manifests record ``dataset`` (:func:`dataset_identity`); older ones only the SHA-256 of the dataset's
    ``manifest.json`` (``dataset_manifest_sha256``), which also changes with the library versions it lists, so a
    mismatch there may be the environment rather than the data — the message says so."""
    stored = manifest.get("dataset")
    if stored:
        now = dataset_identity(layout)
        if now == stored:
            return True, f"same data as the teacher was trained on ({now['kind']} identity {now['sha256'][:12]}…)"
        return False, (f"the data in {layout.root} DIFFERS from the data the teacher was trained on (identity "
                       f"{now['sha256'][:12]}… here, {str(stored.get('sha256'))[:12]}… in the manifest): test "
                       f"metrics are not comparable with the manifest's; regenerate the data with the profile's "
                       f"settings or retrain the teacher (./run_all.sh --retrain-teacher). A known cause for "
                       f"generated data: OpenCV's IPP kernels differ between CPUs with and without AVX-512 "
                       f"(docs/reproducibility.md)")
    legacy = manifest.get("dataset_manifest_sha256")
    man = layout.root / "manifest.json"
    if legacy and man.is_file():
        now = hashlib.sha256(man.read_bytes()).hexdigest()
        if now == legacy:
            return True, "same dataset manifest as the teacher was trained on (SHA-256 of manifest.json)"
        return False, ("the dataset's manifest.json differs from the one the teacher was trained on (an old manifest "
                       "that records only that file's hash, which also covers library versions): the training data "
                       "may differ; the test metrics check below decides whether the test data does")
    return None, "the teacher's manifest records no dataset identity to compare with"
