"""The dataset checker: :func:`check_layout` reports exactly what is missing or inconsistent in an
Adobe-layout dataset folder (see :mod:`matting_lib.data.layout`) before anything runs, as a :class:`LayoutReport`;
:func:`link_dataset` makes the project's data folder a link to an unpacked Adobe dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from matting_lib.data.layout import SPLITS, DatasetLayout, LayoutError, check_split

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

    def raise_if_bad(self) -> LayoutReport:
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
    splits = SPLITS if split == "both" else (check_split(split),)
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
                                         "re-export it losslessly or snap it (matting_lib.data.trimap.snap_trimap)")


def link_dataset(data_dir: str | os.PathLike, adobe_root: str | os.PathLike) -> Path:
    """Make ``data_dir`` a symbolic link to an unpacked Adobe dataset so later notebooks find it there.

    ``adobe_root`` must be a folder holding ``Combined_Dataset/``; a mistyped one is refused before any link is
    made. Does nothing if ``data_dir`` already is that link or that folder; a dangling link (left by an older
    version given a wrong root) is replaced; anything else is refused.
    """
    data_dir, target = Path(data_dir), Path(adobe_root).expanduser().resolve()
    if not target.is_dir():
        raise LayoutError(f"adobe_root {adobe_root} ({target}) is not a folder" + (" (it is a file)" if target.exists()
                          else " (it does not exist)") + "; give the folder that holds Combined_Dataset/, "
                          "train2014/ and VOCdevkit/ (run_all.sh --adobe-root PATH)")
    if not (target / "Combined_Dataset").is_dir():
        raise LayoutError(f"adobe_root {target} has no Combined_Dataset/ folder; give the folder that holds the "
                          f"unpacked Combined_Dataset/ plus train2014/ and VOCdevkit/ (run_all.sh --adobe-root PATH)")
    if data_dir.resolve() == target:
        return data_dir
    if data_dir.is_symlink() and not data_dir.exists():  # dangling: it points nowhere, nothing is lost
        data_dir.unlink()
    if data_dir.is_symlink() or data_dir.exists():
        raise LayoutError(f"{data_dir} already exists and is not a link to {target}; remove it or choose "
                          "another data_dir")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.symlink_to(target, target_is_directory=True)
    return data_dir
