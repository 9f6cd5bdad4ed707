"""Composition-1k compositing: the published test set and training composites.

Composites are written in the Adobe Deep Image Matting dataset layout (:mod:`matting_lib.data.layout`) as
``<root>/Composition-1k/merged/{bg stem}!{fg stem}!{f}!{b}.png`` (:func:`build_test_set`); composite
``(f, b)`` uses background ``f * K + b`` of the K backgrounds listed per foreground and, in the test set,
trimap ``{fg stem}_{b}.png``.

Compositing rules (``docs/paper_notes.md`` §5): DIM-PyTorch's ``Combined_Dataset/*/Composition_code_revised.py``
(OpenCV, ``method="revised"``) and Adobe's original ``Composition_code.py`` (PIL, ``method="adobe"``). Both
upscale a background that is smaller than the foreground in either side to ``ceil(side * ratio)`` with
bicubic interpolation, take its top-left crop of the foreground's size and blend ``I = a F + (1 - a) B``,
truncating to uint8. They differ in the bicubic kernel (OpenCV vs PIL), the JPEG decoder, and precision
(float32 vs float64 with exact copies at alpha 0 and 255), which measurably moves published SAD.

The dataset layout and image I/O are :mod:`matting_lib.data.layout`, the checker :mod:`matting_lib.data.layout_check`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from matting_lib.data.layout import DatasetLayout, LayoutError, encode_png, read_alpha, read_rgb
from matting_lib.data.layout_check import check_layout
from matting_lib.files import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["MERGED_MANIFEST", "COMPOSITE_METHODS", "TestItem", "build_composites", "build_test_set",
           "build_train_composites", "composite", "composite_name", "list_items", "list_test_items", "upscaled_size"]

MERGED_MANIFEST = "manifest.json"


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
                          "rebuild it with --set data.overwrite=true (notebook 01's overwrite parameter; "
                          "overwrite=True from Python), or delete the folder.")
    old_files = dict(old.get("files", {})) if same else {}
    if (
        same
        and old.get("complete")
        and all(
            (out_dir / f"{it.name}.png").is_file()
            and sha256_file(out_dir / f"{it.name}.png") == old_files.get(f"{it.name}.png")
            for it in items
        )
    ):
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
