"""Composition-1k compositing and the Adobe Deep Image Matting dataset layout.

One code path serves the real Adobe data (plus COCO/VOC backgrounds) and the embedded synthetic benchmark
(:mod:`matting_lib.synthetic` writes the same layout)::

    <root>/Combined_Dataset/Training_set/{training_fg_names,training_bg_names}.txt
    <root>/Combined_Dataset/Training_set/{Adobe-licensed images,Other}/{fg,alpha}/<fg name>
    <root>/Combined_Dataset/Test_set/{test_fg_names,test_bg_names}.txt
    <root>/Combined_Dataset/Test_set/Adobe-licensed images/{fg,alpha,trimaps}/   trimaps: {fg stem}_{i}.png
    <root>/train2014/                      training backgrounds (COCO)
    <root>/VOCdevkit/VOC2012/JPEGImages/   test backgrounds (VOC)
    <root>/Composition-1k/merged/{bg stem}!{fg stem}!{f}!{b}.png   written by :func:`build_test_set`

Background lists hold K names per foreground, in foreground order (Adobe: K = 100 train, 20 test);
composite ``(f, b)`` uses background ``f * K + b`` and, in the test set, trimap ``{fg stem}_{b}.png``.

Compositing rules (``reference.md`` section 5): DIM-PyTorch's ``Combined_Dataset/*/Composition_code_revised.py``
(OpenCV, ``method="revised"``) and Adobe's original ``Composition_code.py`` (PIL, ``method="adobe"``). Both
upscale a background that is smaller than the foreground in either side to ``ceil(side * ratio)`` with
bicubic interpolation, take its top-left crop of the foreground's size and blend ``I = a F + (1 - a) B``,
truncating to uint8. They differ in the bicubic kernel (OpenCV vs PIL), the JPEG decoder, and precision
(float32 vs float64 with exact copies at alpha 0 and 255), which measurably moves published SAD.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from .utils import atomic_write_bytes, atomic_write_text, sha256_file

TRAIN_BG_DIR = "train2014"
TEST_BG_DIR = "VOCdevkit/VOC2012/JPEGImages"
SPLITS = ("train", "test")
MERGED_MANIFEST = "manifest.json"


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
                 bg_test_dir: str | os.PathLike | None = None) -> "DatasetLayout":
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

    @property
    def manifest_path(self) -> Path:
        """The synthetic generator's manifest (absent for the real Adobe data)."""
        return self.root / "manifest.json"

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
        _check_split(split)
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
        dirs = self.train_fg_dirs if _check_split(split) == "train" else (self.test_fg_dir,)
        return _find(name, dirs, f"{split} foreground")

    def alpha_path(self, split: str, name: str) -> Path:
        dirs = self.train_alpha_dirs if _check_split(split) == "train" else (self.test_alpha_dir,)
        return _find(name, dirs, f"{split} alpha matte")

    def bg_path(self, split: str, name: str) -> Path:
        return (self.bg_train_dir if _check_split(split) == "train" else self.bg_test_dir) / name

    def trimap_path(self, fg_name: str, i: int) -> Path:
        return self.test_trimap_dir / f"{Path(fg_name).stem}_{i}.png"


def _check_split(split: str) -> str:
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
    """One file name per line (blank lines and surrounding whitespace ignored); raises if missing or empty."""
    if not path.is_file():
        raise LayoutError(f"name list {path} is missing; the dataset root must contain Combined_Dataset/ "
                          "as unpacked from Adobe's archive (or run synthetic.generate_dataset)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
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
                          "unreadable or not an image; replace it with an intact copy"))
    return np.ascontiguousarray(img[..., ::-1])


def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """Read an alpha matte as uint8 (H, W). Accepts 8-bit grey, or 8-bit RGB with equal channels (some
    Adobe mattes); refuses RGBA and 16-bit mattes with a message saying how to convert them."""
    path = Path(path)
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise LayoutError(f"cannot read alpha matte {path}: " + ("file is missing" if not path.exists() else
                          "unreadable or not an image"))
    if a.dtype != np.uint8:
        raise LayoutError(f"alpha matte {path} is {a.dtype} ({8 * a.itemsize}-bit); save it as 8-bit "
                          "greyscale (e.g. numpy: (a / 257).round().astype('uint8'))")
    if a.ndim == 3 and a.shape[2] in (2, 4):
        raise LayoutError(f"alpha matte {path} has {a.shape[2]} channels (grey/RGB + alpha); it is ambiguous "
                          "which one holds the matte: save the matte alone as an 8-bit greyscale PNG")
    if a.ndim == 3:
        diff = int(np.abs(a.astype(np.int16) - a[..., :1]).max()) if a.size else 0
        if diff > 8:  # JPEG-compressed grey mattes stored as RGB differ by a few levels at most
            raise LayoutError(f"alpha matte {path} is a colour image (channels differ by up to {diff}); "
                              "save the matte as an 8-bit greyscale image")
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    return a


def read_trimap(path: str | os.PathLike) -> np.ndarray:
    """Read a trimap as uint8 (H, W) exactly as stored (see :func:`matting_lib.trimap.snap_trimap`)."""
    t = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if t is None:
        raise LayoutError(f"cannot read trimap {path}: " + ("file is missing" if not Path(path).exists()
                          else "unreadable or not an image"))
    return t


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) grey or (H, W, 3) RGB image (OpenCV's encoder, default settings)."""
    arr = img[..., ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an array of shape {img.shape}")
    return buf.tobytes()


# ----------------------------------------------------------------------------------------------- compositing
def _check_inputs(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> None:
    if fg.dtype != np.uint8 or fg.ndim != 3 or fg.shape[2] != 3:
        raise ValueError(f"fg must be uint8 (H, W, 3), got {fg.dtype} {fg.shape}")
    if alpha.dtype != np.uint8 or alpha.shape != fg.shape[:2]:
        raise ValueError(f"alpha must be uint8 (H, W) matching fg {fg.shape[:2]}, got {alpha.dtype} {alpha.shape}")
    if bg.dtype != np.uint8 or bg.ndim != 3 or bg.shape[2] != 3 or min(bg.shape[:2]) < 1:
        raise ValueError(f"bg must be a non-empty uint8 (h, w, 3) image, got {bg.dtype} {bg.shape}")


def upscaled_size(fg_hw: tuple[int, int], bg_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(width, height) the background is resized to, or None when it already covers the foreground.

    As the official code: ratio = max(w / bw, h / bh); if ratio > 1, size = (ceil(bw * ratio), ceil(bh * ratio)).
    """
    (h, w), (bh, bw) = fg_hw, bg_hw
    ratio = max(w / bw, h / bh)
    return (math.ceil(bw * ratio), math.ceil(bh * ratio)) if ratio > 1 else None


def _composite_revised(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    h, w = alpha.shape
    size = upscaled_size((h, w), bg.shape[:2])
    if size is not None:
        bg = cv2.resize(bg, size, interpolation=cv2.INTER_CUBIC)
    a = (alpha / 255.0).astype(np.float32)[..., None]  # float32 as the original's np.zeros(..., np.float32)
    out = a * fg.astype(np.float32) + (1 - a) * bg[:h, :w].astype(np.float32)
    return out.astype(np.uint8)  # truncation, as the original's astype


def _composite_adobe(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    h, w = alpha.shape
    size = upscaled_size((h, w), bg.shape[:2])
    if size is not None:
        bg = np.asarray(Image.fromarray(bg).resize(size, Image.BICUBIC))
    bg = bg[:h, :w]
    a = (alpha / 255)[..., None]  # Python floats (float64), per pixel in the original loop
    blend = np.floor(a * fg + (1 - a) * bg).astype(np.uint8)  # int() truncation; values are >= 0
    return np.where(alpha[..., None] >= 255, fg, np.where(alpha[..., None] > 0, blend, bg))


COMPOSITE_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "revised": _composite_revised,
    "adobe": _composite_adobe,
}


def composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, *, method: str = "revised") -> np.ndarray:
    """Composite a foreground over a background as the published Composition-1k test set.

    fg: uint8 (H, W, 3); alpha: uint8 (H, W) in [0, 255]; bg: uint8 (h, w, 3) of any size (same channel
    order as fg). Returns uint8 (H, W, 3) = trunc(a F + (1 - a) B') with B' the top-left (H, W) crop of the
    background, bicubically upscaled first if it is smaller than the foreground in either side.
    method: "revised" (DIM-PyTorch, OpenCV, float32; the default) or "adobe" (Adobe's PIL code, float64).
    """
    if method not in COMPOSITE_METHODS:
        raise ValueError(f"unknown compositing method {method!r}; valid: {', '.join(COMPOSITE_METHODS)}")
    fg, alpha, bg = np.asarray(fg), np.asarray(alpha), np.asarray(bg)
    _check_inputs(fg, alpha, bg)
    return COMPOSITE_METHODS[method](fg, alpha, bg)


# ----------------------------------------------------------------------------------------------- test set
@dataclass(frozen=True)
class TestItem:
    """One composite: ``name`` = file stem ``{bg stem}!{fg stem}!{f}!{b}``; ``trimap_path`` is None for
    training composites (their trimaps are made on the fly)."""

    __test__ = False  # not a pytest test class

    name: str
    image_path: Path
    alpha_path: Path
    trimap_path: Path | None
    fg_name: str = field(default="", compare=False)
    bg_name: str = field(default="", compare=False)


def composite_name(bg_name: str, fg_name: str, f: int, b: int) -> str:
    return f"{Path(bg_name).stem}!{Path(fg_name).stem}!{f}!{b}"


def list_items(layout: DatasetLayout, split: str, *, out_dir: Path | None = None) -> list[TestItem]:
    """All composites of a split in name-list order (f major, b minor); reads only the name lists."""
    fgs, bgs, k = layout.fg_names(split), layout.bg_names(split), layout.bg_per_fg(split)
    out_dir = out_dir or (layout.merged_dir if split == "test" else layout.train_merged_dir)
    alpha_dirs = layout.train_alpha_dirs if split == "train" else (layout.test_alpha_dir,)
    items = []
    for f, fg in enumerate(fgs):
        alpha = next((d / fg for d in alpha_dirs if (d / fg).is_file()), alpha_dirs[0] / fg)
        for b in range(k):
            bg = bgs[f * k + b]
            name = composite_name(bg, fg, f, b)
            items.append(TestItem(name, out_dir / f"{name}.png", alpha,
                                  layout.trimap_path(fg, b) if split == "test" else None, fg, bg))
    return items


def list_test_items(layout: DatasetLayout) -> list[TestItem]:
    """The test composites ``Composition-1k/merged/{bg stem}!{fg stem}!{f}!{b}.png`` with their alpha and trimap."""
    return list_items(layout, "test")


def _inputs_digest(layout: DatasetLayout, split: str, fgs: list[str], bgs: list[str]) -> str:
    h = hashlib.sha256()
    for kind in ("fg", "bg"):
        h.update(layout.names_file(split, kind).read_bytes())
    for name in fgs:
        h.update(sha256_file(layout.fg_path(split, name)).encode())
        h.update(sha256_file(layout.alpha_path(split, name)).encode())
    for name in bgs:
        path = layout.bg_path(split, name)
        if not path.is_file():
            raise LayoutError(f"{split} background {name!r} is missing: {path}")
        h.update(sha256_file(path).encode())
    return h.hexdigest()


def build_composites(layout: DatasetLayout, split: str, *, method: str = "revised", overwrite: bool = False,
                     progress: bool = True, limit: int | None = None) -> list[TestItem]:
    """Write the composites of ``split`` (see :func:`build_test_set`); ``limit`` keeps the first N foregrounds."""
    from tqdm.auto import tqdm

    if method not in COMPOSITE_METHODS:
        raise ValueError(f"unknown compositing method {method!r}; valid: {', '.join(COMPOSITE_METHODS)}")
    items = list_items(layout, split)
    fgs, bgs = layout.fg_names(split), layout.bg_names(split)
    if limit is not None:
        keep = set(fgs[:limit])
        items = [it for it in items if it.fg_name in keep]
        fgs, bgs = fgs[:limit], [it.bg_name for it in items]
    out_dir = items[0].image_path.parent
    spec = {"kind": f"{split} composites", "format": 1, "method": method, "limit": limit,
            "inputs": _inputs_digest(layout, split, fgs, bgs)}
    man_path = out_dir / MERGED_MANIFEST
    old = None
    if man_path.is_file():
        try:
            old = json.loads(man_path.read_text())
        except json.JSONDecodeError:
            old = {}
    existing = sorted(out_dir.glob("*.png")) if out_dir.is_dir() else []
    same = old is not None and {k: old.get(k) for k in spec} == spec
    if not overwrite and existing and not same:
        why = ("has no manifest.json" if old is None else "was built from different inputs or settings: " +
               ", ".join(k for k in spec if old.get(k) != spec[k]))
        raise LayoutError(f"{out_dir} holds {len(existing)} composites but {why}. Refusing to overwrite it; "
                          "pass overwrite=True to rebuild it, or delete the folder.")
    old_files = dict(old.get("files", {})) if same else {}
    if same and old.get("complete") and all(
            (out_dir / f"{it.name}.png").is_file() and sha256_file(out_dir / f"{it.name}.png") == old_files.get(f"{it.name}.png")
            for it in items):
        return items
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(man_path, json.dumps({**spec, "complete": False, "files": {}}, indent=1))
    backend = "pil" if method == "adobe" else "cv2"
    files: dict[str, str] = {}
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for it in tqdm(items, desc=f"{split} composites ({method})", disable=not progress, unit="img"):
        path = it.image_path
        if path.is_file() and old_files.get(path.name) == sha256_file(path):
            files[path.name] = old_files[path.name]
            continue
        if it.fg_name not in cache:
            cache.clear()  # items are fg-major: keep only the current foreground
            fg = read_rgb(layout.fg_path(split, it.fg_name), backend=backend)
            alpha = read_alpha(it.alpha_path)
            if alpha.shape != fg.shape[:2]:
                raise LayoutError(f"alpha {it.alpha_path} is {alpha.shape[1]}x{alpha.shape[0]} but its foreground "
                                  f"{layout.fg_path(split, it.fg_name)} is {fg.shape[1]}x{fg.shape[0]} (WxH)")
            cache[it.fg_name] = (fg, alpha)
        fg, alpha = cache[it.fg_name]
        bg = read_rgb(layout.bg_path(split, it.bg_name), backend=backend)
        data = encode_png(composite(fg, alpha, bg, method=method))
        digest = hashlib.sha256(data).hexdigest()
        if not (path.is_file() and sha256_file(path) == digest):  # an interrupted run may have written it
            atomic_write_bytes(path, data)
        files[path.name] = digest
    if overwrite:
        for stale in set(p.name for p in out_dir.glob("*.png")) - set(files):
            (out_dir / stale).unlink()
    atomic_write_text(man_path, json.dumps({**spec, "complete": True, "files": files}, indent=1))
    return items


def build_test_set(layout: DatasetLayout, *, method: str = "revised", overwrite: bool = False,
                   progress: bool = True) -> list[TestItem]:
    """Composite the test set exactly as published into ``Composition-1k/merged/``.

    Foregrounds and backgrounds in name-list order, K backgrounds per foreground, files
    ``{bg stem}!{fg stem}!{f}!{b}.png``. Every file is written atomically; a ``manifest.json`` records the
    method, a digest of all inputs and the SHA-256 of every composite. Files already correct are skipped
    (a second call returns at once); a folder built from other inputs or with another method is refused
    unless ``overwrite=True``. Returns the items (see :func:`list_test_items`).
    """
    check_layout(layout, split="test", decode=False, progress=False).raise_if_bad()
    return build_composites(layout, "test", method=method, overwrite=overwrite, progress=progress)


def build_train_composites(layout: DatasetLayout, *, method: str = "revised", limit: int | None = None,
                           overwrite: bool = False, progress: bool = True) -> list[TestItem]:
    """Write training composites (top-left crop, as ``Composition_code_revised.py``) to
    ``Composition-1k/train_merged/`` for inspection; training itself composites on the fly."""
    return build_composites(layout, "train", method=method, overwrite=overwrite, progress=progress, limit=limit)


# ----------------------------------------------------------------------------------------------- checker
_BAD_ALPHA_MODES = {"RGBA": "RGBA", "LA": "grey+alpha", "PA": "palette+alpha", "RGBa": "RGBA", "La": "grey+alpha"}


@dataclass
class LayoutReport:
    """What :func:`check_layout` found. ``ok`` is True when ``problems`` is empty; ``notes`` are harmless."""

    root: Path
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    bad_format: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    _CATEGORIES = ("missing", "unreadable", "size_mismatch", "bad_format", "inconsistent")

    @property
    def problems(self) -> list[str]:
        return [f"{cat.replace('_', ' ')}: {msg}" for cat in self._CATEGORIES for msg in getattr(self, cat)]

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_bad(self) -> "LayoutReport":
        if not self.ok:
            raise LayoutError(str(self))
        return self

    def __str__(self, max_per_category: int = 15) -> str:
        n = len(self.problems)
        lines = [f"Dataset at {self.root} (split: {self.split}): " + ("OK" if not n else f"{n} problem(s)")]
        lines += [f"  {k}: {v}" for k, v in self.counts.items()]
        for cat in self._CATEGORIES:
            msgs = getattr(self, cat)
            if msgs:
                lines.append(f"{cat.replace('_', ' ')} ({len(msgs)}):")
                lines += [f"  - {m}" for m in msgs[:max_per_category]]
                if len(msgs) > max_per_category:
                    lines.append(f"  ... and {len(msgs) - max_per_category} more")
        lines += [f"note: {m}" for m in self.notes]
        return "\n".join(lines)


def _probe(path: Path, *, decode: bool, values: bool = False):
    """(size (w, h), PIL mode, pixel array or None) of an image file; raises on an unreadable file."""
    with Image.open(path) as im:
        size, mode = im.size, im.mode
        if decode:
            im.load()
        return size, mode, (np.asarray(im) if values else None)


def check_layout(layout: DatasetLayout, *, split: str = "both", decode: bool = True, min_bg_side: int = 16,
                 progress: bool = True) -> LayoutReport:
    """Check a dataset folder before anything runs; report exactly what is missing or inconsistent.

    Checks, for each split: the name lists (present, non-empty, no duplicate foregrounds, a whole number
    K of backgrounds per foreground); every foreground and alpha (present, readable, alpha 8-bit without
    an extra alpha channel, same size as its foreground); every test trimap ``{fg stem}_{i}.png``,
    i < K (present, readable, same size, only 0/128/255 when ``decode``); every listed background
    (present, readable header, at least ``min_bg_side`` pixels per side). ``decode=True`` fully decodes
    foregrounds, alphas and trimaps (finds truncated files); backgrounds are only opened.
    split: "train", "test" or "both". Returns a :class:`LayoutReport`; call ``.raise_if_bad()`` to stop.
    """
    from tqdm.auto import tqdm

    splits = SPLITS if split == "both" else (_check_split(split),)
    report = LayoutReport(layout.root, split)
    if not layout.root.is_dir():
        report.missing.append(f"dataset root {layout.root} does not exist")
        return report
    for sp in splits:
        try:
            fgs = layout.fg_names(sp)
            bgs = layout.bg_names(sp)
        except LayoutError as err:
            (report.missing if "missing" in str(err) else report.inconsistent).append(str(err))
            continue
        report.counts[f"{sp} foregrounds"] = len(fgs)
        report.counts[f"{sp} backgrounds listed"] = len(bgs)
        dupes = sorted({n for n in fgs if fgs.count(n) > 1}) if len(set(fgs)) != len(fgs) else []
        if dupes:
            report.inconsistent.append(f"{layout.names_file(sp, 'fg')} lists {', '.join(dupes[:5])} more than once")
        k = len(bgs) // len(fgs)
        if len(bgs) % len(fgs) or k == 0:
            report.inconsistent.append(
                f"{layout.names_file(sp, 'bg')} has {len(bgs)} names for {len(fgs)} foregrounds; it must list the "
                f"same whole number K of backgrounds per foreground, in foreground order (Adobe: 100 train, 20 test)")
        else:
            report.counts[f"{sp} backgrounds per foreground"] = k
        bar = tqdm(total=len(fgs) + len(set(bgs)), desc=f"checking {sp}", disable=not progress, unit="file")
        for name in fgs:
            bar.update()
            sizes = {}
            for kind, finder in (("foreground", layout.fg_path), ("alpha", layout.alpha_path)):
                try:
                    path = finder(sp, name)
                except LayoutError as err:
                    report.missing.append(str(err).split(". Check")[0])
                    continue
                try:
                    size, mode, _ = _probe(path, decode=decode)
                except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
                    report.unreadable.append(f"{path}: {err}")
                    continue
                sizes[kind] = size
                if kind == "alpha" and mode in _BAD_ALPHA_MODES:
                    report.bad_format.append(f"{path}: alpha matte is {_BAD_ALPHA_MODES[mode]}; save the matte "
                                             "alone as 8-bit greyscale")
                elif kind == "alpha" and mode.startswith(("I", "F")):
                    report.bad_format.append(f"{path}: alpha matte is mode {mode} (16/32-bit); save it as 8-bit")
            if len(sizes) == 2 and sizes["foreground"] != sizes["alpha"]:
                report.size_mismatch.append(f"{sp} {name!r}: foreground is {sizes['foreground'][0]}x"
                                            f"{sizes['foreground'][1]} but alpha is {sizes['alpha'][0]}x"
                                            f"{sizes['alpha'][1]} (WxH)")
            if sp == "test" and k:
                _check_trimaps(layout, name, k, sizes.get("foreground"), decode, report)
        for name in dict.fromkeys(bgs):
            bar.update()
            path = layout.bg_path(sp, name)
            if not path.is_file():
                report.missing.append(f"{sp} background {path}")
                continue
            try:
                (w, h), _, _ = _probe(path, decode=False)
            except Exception as err:
                report.unreadable.append(f"{path}: {err}")
                continue
            if min(w, h) < min_bg_side:
                report.bad_format.append(f"{sp} background {path} is only {w}x{h} px (minimum side {min_bg_side})")
        bar.close()
        if len(set(bgs)) != len(bgs):
            report.notes.append(f"{sp}: {len(bgs) - len(set(bgs))} background names repeat in "
                                f"{layout.names_file(sp, 'bg').name}")
    return report


def _check_trimaps(layout: DatasetLayout, fg_name: str, k: int, fg_size, decode: bool, report: LayoutReport) -> None:
    for i in range(k):
        path = layout.trimap_path(fg_name, i)
        if not path.is_file():
            report.missing.append(f"test trimap {path}")
            continue
        try:
            size, _, arr = _probe(path, decode=decode, values=decode)
        except Exception as err:
            report.unreadable.append(f"{path}: {err}")
            continue
        if fg_size is not None and size != fg_size:
            report.size_mismatch.append(f"trimap {path.name} is {size[0]}x{size[1]} but foreground {fg_name!r} is "
                                        f"{fg_size[0]}x{fg_size[1]} (WxH)")
        if arr is not None:
            extra = np.setdiff1d(np.unique(arr), [0, 128, 255])
            if extra.size:
                report.bad_format.append(f"trimap {path} has values other than 0/128/255 (e.g. {extra[:4].tolist()}); "
                                         "re-export it losslessly or snap it (matting_lib.trimap.snap_trimap)")


def link_dataset(data_dir: str | os.PathLike, adobe_root: str | os.PathLike) -> Path:
    """Make ``data_dir`` a symbolic link to an unpacked Adobe dataset so later notebooks find it there.

    Does nothing if ``data_dir`` already is that link or that folder; refuses to replace anything else.
    """
    data_dir, target = Path(data_dir), Path(adobe_root).expanduser().resolve()
    if data_dir.resolve() == target:
        return data_dir
    if data_dir.is_symlink() or data_dir.exists():
        raise LayoutError(f"{data_dir} already exists and is not a link to {target}; remove it or choose "
                          "another data_dir")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.symlink_to(target, target_is_directory=True)
    return data_dir
