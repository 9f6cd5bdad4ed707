"""The embedded matting benchmark: procedurally generated foregrounds over real photographs, in the
Adobe Composition-1k folder layout (see :mod:`matting_lib.data.layout`), deterministic from a seed.

Nothing licensed can be downloaded here, so this is the default data. Foregrounds
(:mod:`matting_lib.data.synthetic.foregrounds`) carry the structures that make matting hard -- solid objects with
anti-aliased or defocused edges, hair and fur, glass, smoke and veils, nets and lace, motion blur -- with
supersampled, physically meaningful fractional alpha and premultiplied colour, so ``F = P / A`` is the true
foreground colour. Foreground colours are sometimes drawn from the paired background's colours (the hard
case for colour-based matting).

Backgrounds (:mod:`matting_lib.data.synthetic.textures`) are random crops, scales, flips and colour changes of
the photographs that ship inside scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``),
plus procedural textures. Test backgrounds come from a disjoint set of source photos; test foregrounds and
backgrounds from disjoint random streams. Test trimaps are 8-bit 0/128/255 PNGs, as the official ones.

Presets (:data:`PRESETS`): ``smoke`` (seconds; for tests/CI), ``default`` (the project's default
benchmark, 1-2 minutes on one core: 200 train fg x 8 backgrounds at 320-400 px, 25 test fg x 8 backgrounds
= 200 test composites at 300-340 px, i.e. Composition-1k's 50 x 20 structure scaled down), ``large``
(Composition-1k's counts, 431 x 20 / 50 x 20, at 480-640 px, for a GPU run), ``comp1k-photos`` (comp1k's test
split over real colour photographs only, :data:`PHOTO_TEST_PHOTOS`: a second test distribution, generated with
``splits=("test",)`` and another seed).

This package: the presets and the dataset generation here (:func:`generate_dataset`, :func:`verify_dataset`),
backgrounds and colour textures in :mod:`matting_lib.data.synthetic.textures`, foregrounds in
:mod:`matting_lib.data.synthetic.foregrounds`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from matting_lib import cpu_env
from matting_lib.data.layout import DatasetLayout, LayoutError, encode_png
from matting_lib.data.synthetic.foregrounds import FOREGROUND_KINDS, make_foreground
from matting_lib.data.synthetic.textures import make_background
from matting_lib.data.trimap import trimap_from_distance
from matting_lib.files import atomic_write_bytes, atomic_write_text, sha256_file

__all__ = ["GENERATOR", "FORMAT", "Preset", "PRESETS", "TRAIN_PHOTOS", "TEST_PHOTOS", "PHOTO_TEST_PHOTOS",
           "generate_dataset",
           "verify_dataset", "fg_kind", "comp1k_test_kinds", "comp1k_kind_counts"]

GENERATOR = "matting_lib.synthetic"
FORMAT = 1


@dataclass(frozen=True)
class Preset:
    """Sizes and counts of one benchmark size. Sizes are (min, max) pixels, drawn per image and side."""

    n_train_fg: int
    bg_per_train_fg: int
    n_test_fg: int
    bg_per_test_fg: int
    train_size: tuple[int, int]
    test_size: tuple[int, int]
    bg_scale: tuple[float, float] = (0.8, 1.6)  # background side / foreground side
    trimap_width: tuple[float, float] = (6.0, 14.0)  # unknown band of the test trimaps, pixels per side
    supersample: int = 4
    jpeg_quality: int = 92
    mix: str = (
        "weighted"  # foreground kinds: "weighted" (random, FOREGROUND_KINDS' weights) | "comp1k" (see KIND_MIXES)
    )
    photo_backgrounds: bool = False  # test backgrounds: photographs only (PHOTO_TEST_PHOTOS), no procedural textures


PRESETS: dict[str, Preset] = {
    "smoke": Preset(6, 2, 3, 2, (112, 144), (120, 136), trimap_width=(3.0, 6.0), supersample=3),
    "default": Preset(200, 8, 25, 8, (320, 400), (300, 340)),
    # default's sizes, foreground kinds in Composition-1k's test proportions (comp1k_kind_counts)
    "comp1k": Preset(200, 8, 25, 8, (320, 400), (300, 340), mix="comp1k"),
    "large": Preset(431, 20, 50, 20, (480, 640), (480, 560), trimap_width=(10.0, 24.0)),
    # a second test distribution for comp1k's networks (generate its test split alone, with another seed): the
    # same foreground recipe and sizes, backgrounds that are always real colour photographs
    "comp1k-photos": Preset(200, 8, 25, 8, (320, 400), (300, 340), mix="comp1k", photo_backgrounds=True),
}

# Source photographs: (package, file). Train and test use disjoint photos.
TRAIN_PHOTOS = [("skimage", "astronaut.png"), ("skimage", "coffee.png"), ("skimage", "rocket.jpg"),
                ("skimage", "hubble_deep_field.jpg"), ("skimage", "ihc.png"), ("skimage", "retina.jpg"),
                ("sklearn", "flower.jpg"), ("skimage", "camera.png"), ("skimage", "brick.png"),
                ("skimage", "grass.png"), ("skimage", "gravel.png"), ("skimage", "moon.png"),
                ("skimage", "coins.png"), ("skimage", "cell.png")]
TEST_PHOTOS = [("skimage", "chelsea.png"), ("skimage", "motorcycle_left.png"), ("skimage", "motorcycle_right.png"),
               ("sklearn", "china.jpg"), ("skimage", "clock_motion.png"), ("skimage", "page.png"),
               ("skimage", "text.png")]
# The colour photographs none of the training backgrounds use, for a test set of photographs only
# (Preset.photo_backgrounds): the colour ones of TEST_PHOTOS and matplotlib's portrait.
PHOTO_TEST_PHOTOS = [("skimage", "chelsea.png"), ("skimage", "motorcycle_left.png"),
                     ("skimage", "motorcycle_right.png"), ("sklearn", "china.jpg"), ("matplotlib", "grace_hopper.jpg")]

# Independent random streams: (seed, stream, index) -> generator. Test streams never meet train streams.
_STREAMS = {"train-fg": 1, "train-bg": 2, "test-fg": 3, "test-bg": 4, "test-trimap": 5, "train-kinds": 6,
            "test-kinds": 7}
KIND_MIXES = ("weighted", "comp1k")
_COMP1K_KINDS = Path(__file__).parents[2] / "assets" / "comp1k_test_kinds.csv"


def comp1k_test_kinds() -> dict[str, str]:
    """{test foreground name: kind} for Composition-1k's 50 test foregrounds, from ``assets/comp1k_test_kinds.csv``
    (the official names, each assigned to the closest synthetic kind; the file says which rows are guesses)."""
    with _COMP1K_KINDS.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    bad = sorted({r["kind"] for r in rows} - set(FOREGROUND_KINDS))
    if bad:
        raise ValueError(f"{_COMP1K_KINDS}: unknown kind(s) {bad}; valid: {', '.join(FOREGROUND_KINDS)}")
    return {r["name"]: r["kind"] for r in rows}


def fg_kind(name: str) -> str:
    """The synthetic benchmark's foreground kind from its file name (``train-0012-hair.png`` → ``hair``);
    ``"other"`` for names that do not carry one (real data)."""
    stem = Path(name).stem.rsplit("-", 1)[-1]
    return stem if stem in FOREGROUND_KINDS else "other"


def comp1k_kind_counts() -> dict[str, int]:
    """How many of Composition-1k's 50 test foregrounds are of each synthetic kind (zeros included)."""
    kinds = list(comp1k_test_kinds().values())
    return {k: kinds.count(k) for k in FOREGROUND_KINDS}


def allocate_kinds(counts: dict[str, int], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` kinds in the proportions of ``counts`` (largest remainder, ties in ``counts`` order), shuffled by ``rng``:
    a stratified draw, so a 25-foreground test set has exactly its share of each kind rather than a random one."""
    total = sum(counts.values())
    quota = {k: n * c / total for k, c in counts.items()}
    alloc = {k: int(q) for k, q in quota.items()}
    by_remainder = sorted(counts, key=lambda k: -(quota[k] - alloc[k]))  # stable: ties keep counts' order
    for k in by_remainder[: n - sum(alloc.values())]:
        alloc[k] += 1
    kinds = [k for k in counts for _ in range(alloc[k])]
    return [kinds[i] for i in rng.permutation(n)]


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], index])


# ----------------------------------------------------------------------------------------------- dataset
def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _make_item(args: tuple[int, str, str, int]) -> tuple[str, list[str], dict[str, bytes]]:
    """Everything belonging to foreground ``i`` of ``split``: (fg name, its K bg names, {relpath: bytes})."""
    seed, preset_name, split, i = args
    p = PRESETS[preset_name]
    layout = DatasetLayout(Path("."))
    photos_only = split == "test" and p.photo_backgrounds
    photos = TRAIN_PHOTOS if split == "train" else PHOTO_TEST_PHOTOS if photos_only else TEST_PHOTOS
    k = p.bg_per_train_fg if split == "train" else p.bg_per_test_fg
    lo, hi = p.train_size if split == "train" else p.test_size
    rng = _rng(seed, f"{split}-fg", i)
    h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
    files: dict[str, bytes] = {}
    bg_names, bg_mean = [], None
    for b in range(k):
        j = i * k + b
        brng = _rng(seed, f"{split}-bg", j)
        bh, bw = (max(16, int(round(side * brng.uniform(*p.bg_scale)))) for side in (h, w))
        bg = make_background(brng, bh, bw, photos, photos_only=photos_only)
        name = f"syn_train2014_{j:06d}.jpg" if split == "train" else f"syn_voc_{j:06d}.jpg"
        files[str(layout.bg_path(split, name))] = _encode_jpeg(bg, p.jpeg_quality)
        bg_names.append(name)
        bg_mean = bg.reshape(-1, 3).mean(0) / 255 if bg_mean is None else bg_mean
    near = bg_mean if rng.random() < 0.3 else None  # foreground colour close to its background's
    fg, alpha, kind = make_foreground(rng, h, w, photos, supersample=p.supersample, near_colour=near,
                                      kind=_kinds(seed, preset_name, split)[i])
    fg_name = f"{split}-{i:04d}-{kind}.png"
    fg_dir = layout.train_fg_dirs[0] if split == "train" else layout.test_fg_dir
    alpha_dir = layout.train_alpha_dirs[0] if split == "train" else layout.test_alpha_dir
    files[str(fg_dir / fg_name)] = encode_png(fg)
    files[str(alpha_dir / fg_name)] = encode_png(alpha)
    if split == "test":
        width = _rng(seed, "test-trimap", i).uniform(*p.trimap_width)
        trimap = encode_png(trimap_from_distance(alpha, width))
        for b in range(k):
            files[str(layout.trimap_path(fg_name, b))] = trimap
    return fg_name, bg_names, files


@functools.cache
def _kinds(seed: int, preset_name: str, split: str) -> tuple[str | None, ...]:
    """The kind of every foreground of a split: None (drawn with the foreground, "weighted") or stratified."""
    p = PRESETS[preset_name]
    n = p.n_train_fg if split == "train" else p.n_test_fg
    if p.mix == "weighted":
        return (None,) * n
    if p.mix != "comp1k":
        raise ValueError(f"preset {preset_name!r}: unknown mix {p.mix!r}; valid: {', '.join(KIND_MIXES)}")
    return tuple(allocate_kinds(comp1k_kind_counts(), n, _rng(seed, f"{split}-kinds", 0)))


def _spec(seed: int, preset: str) -> dict:
    p = PRESETS[preset]
    test = PHOTO_TEST_PHOTOS if p.photo_backgrounds else TEST_PHOTOS
    # presets made before mixes and photo backgrounds: the same spec as then
    spec = {"generator": GENERATOR, "format": FORMAT, "seed": seed, "preset": preset,
            "params": {k: v for k, v in dataclasses.asdict(p).items()
                       if not (k == "mix" and v == "weighted") and not (k == "photo_backgrounds" and not v)},
            "sources": {"train": [f"{a}:{b}" for a, b in TRAIN_PHOTOS], "test": [f"{a}:{b}" for a, b in test]}}
    return json.loads(json.dumps(spec))  # tuples -> lists, as read back from manifest.json


def _owned(out: Path) -> list[Path]:
    """Top-level entries this generator (and build_test_set) writes, removed on overwrite."""
    return [out / n for n in ("Combined_Dataset", "train2014", "VOCdevkit", "Composition-1k", "manifest.json")]


def verify_dataset(out_dir: str | os.PathLike) -> list[str]:
    """Files of a generated dataset whose SHA-256 differs from its manifest (missing ones included)."""
    out = Path(out_dir)
    man = json.loads((out / "manifest.json").read_text())
    return [rel for rel, digest in man.get("files", {}).items()
            if not (out / rel).is_file() or sha256_file(out / rel) != digest]


def generate_dataset(out_dir: str | os.PathLike, *, seed: int = 0, preset: str = "smoke", overwrite: bool = False,
                     progress: bool = True, workers: int = 1, splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Generate the synthetic benchmark into ``out_dir`` (Adobe layout) and return ``out_dir``.

    Same (seed, preset) -> byte-identical files (on the same library versions). ``manifest.json`` records
    the parameters and the SHA-256 of every file. A complete folder with the same parameters whose files
    all verify is left alone (returns at once); an interrupted one is completed (files are written
    atomically, identical ones skipped). A folder generated with other parameters is refused unless
    ``overwrite=True``; a non-empty folder without a synthetic manifest (e.g. real data) is always refused.
    workers: processes (each foreground is generated from its own seed, so the output does not depend on it).
    splits: ``("test",)`` writes the test split alone (e.g. to evaluate a checkpoint); its files are the same bytes
    as in the full dataset (each split has its own random streams), and the manifest records the splits.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    out = Path(out_dir)
    spec = _spec(int(seed), preset)
    if sorted(splits) != ["test", "train"]:  # the full dataset's manifest stays as it was
        if not splits or set(splits) - {"train", "test"}:
            raise ValueError(f"splits={splits!r}; give 'train' and/or 'test'")
        spec["splits"] = sorted(set(splits))
    man_path = out / "manifest.json"
    if out.is_dir() and any(out.iterdir()):
        try:
            old = json.loads(man_path.read_text()) if man_path.is_file() else None
        except json.JSONDecodeError:
            old = {"generator": GENERATOR}  # our own manifest, half-written by a crash before atomic writes
        if old is None or old.get("generator") != GENERATOR:
            raise LayoutError(f"{out} is not empty and holds no synthetic-dataset manifest.json (real data?); "
                              "refusing to write into it. Choose another folder or empty it.")
        same = {k: old.get(k) for k in spec} == spec and old.get("splits") == spec.get("splits")
        if same and old.get("complete") and not verify_dataset(out):
            return out
        if not same:
            if not overwrite:
                diff = ", ".join(f"{k}: {old.get(k)!r} -> {spec.get(k)!r}" for k in ("seed", "preset", "format",
                                 "splits") if old.get(k) != spec.get(k)) or "generator parameters changed"
                raise LayoutError(f"{out} holds a synthetic dataset generated with other parameters ({diff}); "
                                  "replace it with --set data.overwrite=true (notebook 01's overwrite parameter; "
                                  "overwrite=True from Python), or choose another folder (--set data.data_dir=...).")
            for path in _owned(out):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(man_path, json.dumps({**spec, "complete": False, "files": {}}, indent=1))
    p = PRESETS[preset]
    jobs = [(int(seed), preset, split, i) for split in ("train", "test") if split in splits
            for i in range(p.n_train_fg if split == "train" else p.n_test_fg)]
    digests: dict[str, str] = {}
    names = {"train": ([], []), "test": ([], [])}

    def write(rel: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if not ((out / rel).is_file() and sha256_file(out / rel) == digest):
            atomic_write_bytes(out / rel, data)
        digests[rel] = digest

    pool = None
    if workers > 1:
        pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)
    try:
        results = pool.imap(_make_item, jobs) if pool else map(_make_item, jobs)
        for job, (fg_name, bg_names, files) in tqdm(zip(jobs, results), total=len(jobs), disable=not progress,
                                                    desc=f"synthetic {preset} (seed {seed})", unit="fg"):
            names[job[2]][0].append(fg_name)
            names[job[2]][1].extend(bg_names)
            for rel, data in files.items():
                write(rel, data)
    finally:
        if pool:
            pool.close()
            pool.join()
    layout = DatasetLayout(Path("."))
    for split, (fgs, bgs) in ((sp, names[sp]) for sp in names if sp in splits):
        write(str(layout.names_file(split, "fg")), ("\n".join(fgs) + "\n").encode())
        write(str(layout.names_file(split, "bg")), ("\n".join(bgs) + "\n").encode())
    # IPP's code level changes some files' bytes (docs/reproducibility.md): recorded, not identity
    versions = {"opencv": cv2.__version__, "numpy": np.__version__, "opencv_ipp": cpu_env.opencv_ipp_level()}
    atomic_write_text(man_path, json.dumps({**spec, "versions": versions, "complete": True,
                                            "files": dict(sorted(digests.items()))}, indent=1))
    return out
