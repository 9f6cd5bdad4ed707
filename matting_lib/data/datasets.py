"""Training composites made on the fly, the test set, and a seeded train/validation split (torch Datasets).

A sample is a dict of float32 tensors (the shared contract):
    "input"  (4, H, W): RGB normalised with ImageNet mean/std, plus trimap / 255 (0, 128/255, 1) unnormalised
    "alpha"  (1, H, W) in [0, 1];  "trimap" (1, H, W) in {0, 128/255, 1}
    "image"  (3, H, W) RGB in [0, 1]; training samples also "fg", "bg" (3, H, W) with image = a fg + (1 - a) bg
    test samples also "name" (the composite's file stem) and are full-size (use batch size 1).

Training samples follow DIM-PyTorch's ``data_gen.py`` (``docs/paper_notes.md`` §5): composite a foreground
over a random crop of one of its listed backgrounds (upscaled bicubically when smaller), crop
``crop_size * s`` pixels (s drawn from ``crop_scales``; 320/480/640 at the paper's 320) around a random
pixel of the unknown region of a random trimap, resize to ``crop_size``, flip horizontally with p = 0.5,
jitter brightness/contrast/saturation by ``jitter``, and regenerate the trimap on the crop. Fixes of the
original's flaws, each with a flag that restores the original exactly:

- ``legacy_trimap=False``: erode/dilate run the drawn 1-19 iterations (the original runs one; see
  :mod:`matting_lib.data.trimap`).
- ``legacy_resize=False``: crops stay inside the image where it is large enough (the original puts the
  top-left corner at ``max(0, centre - side/2)`` and zero-pads past the right/bottom edge), and 480/640
  crops are downscaled by area averaging of the premultiplied colours (the original: nearest neighbour
  for image and alpha), so fractional alpha and fine strands survive and ``image = a fg + (1 - a) bg``
  still holds exactly.

Randomness: each sample draws from ``numpy.random.default_rng([seed, epoch, index])``, so a batch depends
only on (seed, epoch, indices), never on the number of DataLoader workers or on global random state.
Call :meth:`MattingTrainDataset.set_epoch` before creating the epoch's iterator.

Notebook 01's dataset preparation and inspection helpers (:class:`DataParams`, :func:`prepare_dataset`,
:func:`dataset_summary`, :func:`plot_gallery`, ...) are :mod:`matting_lib.data.dataset_report`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from matting_lib import cpu_env
from matting_lib.data.compositing import TestItem, list_test_items, upscaled_size
from matting_lib.data.layout import DatasetLayout, LayoutError, dataset_identity, read_alpha, read_rgb, read_trimap
from matting_lib.data.trimap import UNKNOWN, random_trimap, snap_trimap
from matting_lib.provenance import code_digest

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "make_input", "split_train_val", "MattingTrainDataset",
           "MattingTestDataset", "train_val_sets"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as PIL/torchvision


def _input_tensor(image: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
    """image float32 (H, W, 3) in [0, 1], trimap uint8 (H, W) -> (4, H, W) network input."""
    x = np.empty((4,) + trimap.shape, np.float32)
    x[:3] = ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    x[3] = trimap / np.float32(255)
    return torch.from_numpy(x)


def make_input(image_rgb: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
    """The network input for one image: float32 (4, H, W).

    image_rgb: uint8 (H, W, 3) RGB; trimap: uint8 (H, W) in {0, 128, 255}. Channels 0-2 are
    (image / 255 - mean) / std with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
    channel 3 is trimap / 255, not normalised (as DIM-PyTorch).
    """
    image_rgb, trimap = np.asarray(image_rgb), np.asarray(trimap)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image_rgb must be uint8 (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}")
    if trimap.shape != image_rgb.shape[:2]:
        raise ValueError(f"trimap shape {trimap.shape} does not match the image's {image_rgb.shape[:2]}")
    return _input_tensor(image_rgb.astype(np.float32) / 255, trimap.astype(np.uint8))


def _chw(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())


def split_train_val(fg_names: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split foregrounds (not composites) into train and validation, seeded: no validation image shares a
    foreground with training. Keeps the input order within each part; at least one of each when
    ``val_fraction > 0`` and there are two or more foregrounds."""
    names = list(fg_names)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(set(names)) != len(names):
        raise ValueError("fg_names contains duplicates")
    n_val = int(round(len(names) * val_fraction))
    if val_fraction > 0 and len(names) >= 2:
        n_val = min(max(n_val, 1), len(names) - 1)
    chosen = set(np.random.default_rng([seed, 7]).permutation(len(names))[:n_val].tolist())
    return [n for i, n in enumerate(names) if i not in chosen], [n for i, n in enumerate(names) if i in chosen]


def _window(arr: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """``arr[y0:y0+side, x0:x0+side]`` with zeros where the window leaves the array."""
    h, w = arr.shape[:2]
    if 0 <= y0 and 0 <= x0 and y0 + side <= h and x0 + side <= w:
        return arr[y0:y0 + side, x0:x0 + side]
    out = np.zeros((side, side) + arr.shape[2:], arr.dtype)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + side, h), min(x0 + side, w)
    if ye > ys and xe > xs:
        out[ys - y0:ye - y0, xs - x0:xe - x0] = arr[ys:ye, xs:xe]
    return out


class MattingTrainDataset(Dataset):
    """On-the-fly training composites from an Adobe-layout dataset (see the module docstring).

    layout: the dataset; fg_names: the training foregrounds to use (e.g. from :func:`split_train_val`);
    crop_size: output side in pixels; crop_scales: crop sides as multiples of crop_size (1, 1.5, 2 = the
    paper's 320/480/640); bg_per_fg: how many of each foreground's listed backgrounds to use (None = all K);
    seed: the sample streams; epoch_length: samples per epoch (None = every (fg, bg) pair once; otherwise
    epochs walk through the pairs cyclically); jitter: brightness/contrast/saturation range (0 = off).
    """

    def __init__(self, layout: DatasetLayout, fg_names: Sequence[str], *, crop_size: int = 320,
                 crop_scales: Sequence[float] = (1.0, 1.5, 2.0), bg_per_fg: int | None = None, seed: int = 0,
                 epoch_length: int | None = None, legacy_resize: bool = False, legacy_trimap: bool = False,
                 jitter: float = 0.125, fg_cache: int = 64):
        all_fg, all_bg, k = layout.fg_names("train"), layout.bg_names("train"), layout.bg_per_fg("train")
        index = {n: i for i, n in enumerate(all_fg)}
        unknown = [n for n in fg_names if n not in index]
        if unknown:
            raise LayoutError(f"foreground(s) {unknown[:5]} are not in {layout.training_fg_names_file}")
        if not fg_names:
            raise ValueError("fg_names is empty: no foreground to train on")
        bg_per_fg = k if bg_per_fg is None else int(bg_per_fg)
        if not 1 <= bg_per_fg <= k:
            raise ValueError(f"bg_per_fg={bg_per_fg} must be between 1 and the {k} backgrounds listed per foreground")
        if crop_size < 8 or not crop_scales or min(crop_scales) <= 0:
            raise ValueError(f"crop_size={crop_size} must be >= 8 and crop_scales={crop_scales} positive")
        if epoch_length is not None and epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1 or None, got {epoch_length}")
        self.layout, self.fg_names = layout, list(fg_names)
        self.pairs = [(n, all_bg[index[n] * k + b]) for n in self.fg_names for b in range(bg_per_fg)]
        self.crop_size, self.crop_scales = int(crop_size), tuple(float(s) for s in crop_scales)
        self.seed, self.epoch_length, self.epoch = int(seed), epoch_length, 0
        self.legacy_resize, self.legacy_trimap, self.jitter = legacy_resize, legacy_trimap, float(jitter)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = fg_cache

    def __len__(self) -> int:
        return self.epoch_length or len(self.pairs)

    def cache_identity(self) -> str:
        """SHA-256 of everything a sample is a function of besides (epoch, index): the data's content identity,
        this set's parameters and (foreground, background) pairs, the code that makes samples
        (:func:`matting_lib.provenance.code_digest`), the NumPy/OpenCV versions, the CPU-kernel pin and OpenCV IPP's
        level. Keys :class:`matting_lib.data.batch_cache.BatchCache`."""
        if getattr(self, "_identity", None) is None:


            record = {"format": 1, "class": type(self).__name__, "data": dataset_identity(self.layout),
                      "pairs": self.pairs, "crop_size": self.crop_size, "crop_scales": self.crop_scales,
                      "seed": self.seed, "epoch_length": self.epoch_length, "legacy_resize": self.legacy_resize,
                      "legacy_trimap": self.legacy_trimap, "jitter": self.jitter,
                      "code": code_digest("data"),
                      "versions": [np.__version__, cv2.__version__],
                      "cpu": {k: os.environ.get(k) for k in cpu_env.PINNED_ENV},
                      "opencv_ipp": cpu_env.opencv_ipp_level()}  # cv2.resize's bytes depend on it (cpu_env)
            self._identity = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        return self._identity

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random streams (and, with ``epoch_length``, its slice of the pairs)."""
        self.epoch = int(epoch)

    def _foreground(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        fg = read_rgb(self.layout.fg_path("train", name))
        alpha = read_alpha(self.layout.alpha_path("train", name))
        if alpha.shape != fg.shape[:2]:
            raise LayoutError(f"alpha {self.layout.alpha_path('train', name)} is {alpha.shape[::-1]} but its "
                              f"foreground is {fg.shape[1::-1]} (WxH); fix the file (see check_layout)")
        self._cache[name] = (fg, alpha)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return fg, alpha

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pair = index if self.epoch_length is None else (self.epoch * self.epoch_length + index) % len(self.pairs)
        fg_name, bg_name = self.pairs[pair]
        return self.make_sample(*self._foreground(fg_name), read_rgb(self.layout.bg_path("train", bg_name)), rng)

    def make_sample(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray,
                    rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One training sample from fg uint8 (H, W, 3), alpha uint8 (H, W), bg uint8 (h, w, 3)."""
        h, w = alpha.shape
        size = upscaled_size((h, w), bg.shape[:2])
        if size is not None:
            bg = cv2.resize(bg, size, interpolation=cv2.INTER_CUBIC)
        by = int(rng.integers(0, bg.shape[0] - h + 1))
        bx = int(rng.integers(0, bg.shape[1] - w + 1))
        bg = bg[by:by + h, bx:bx + w]

        side = max(1, int(round(self.crop_size * self.crop_scales[rng.integers(len(self.crop_scales))])))
        ys, xs = np.nonzero(random_trimap(alpha, rng, legacy=self.legacy_trimap) == UNKNOWN)
        if len(ys):
            j = rng.integers(len(ys))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, x0 = cy - side // 2, cx - side // 2
        if self.legacy_resize:
            y0, x0 = max(0, y0), max(0, x0)
        else:
            y0, x0 = min(max(0, y0), max(h - side, 0)), min(max(0, x0), max(w - side, 0))
        f = _window(fg, y0, x0, side).astype(np.float32) / 255
        b = _window(bg, y0, x0, side).astype(np.float32) / 255
        a = _window(alpha, y0, x0, side).astype(np.float32) / 255
        if side != self.crop_size:
            f, b, a = self._resize(f, b, a)
        if rng.random() < 0.5:
            f, b, a = f[:, ::-1], b[:, ::-1], a[:, ::-1]
        trimap = random_trimap(np.rint(a * 255).astype(np.uint8), rng, legacy=self.legacy_trimap)
        if self.jitter > 0:
            f, b = self._jitter(f, b, a, rng)
        image = a[..., None] * f + (1 - a[..., None]) * b
        return {"input": _input_tensor(image, trimap), "alpha": _chw(a), "trimap": _chw(trimap / np.float32(255)),
                "image": _chw(image), "fg": _chw(f), "bg": _chw(b)}

    def _resize(self, f, b, a):
        size = (self.crop_size, self.crop_size)
        if self.legacy_resize:  # the original: nearest neighbour for image and alpha
            return tuple(cv2.resize(np.ascontiguousarray(x), size, interpolation=cv2.INTER_NEAREST) for x in (f, b, a))
        interp = cv2.INTER_AREA if f.shape[0] > self.crop_size else cv2.INTER_LINEAR
        a3 = a[..., None]
        pf = cv2.resize(a3 * f, size, interpolation=interp)  # premultiplied: area averages of what the camera sees
        pb = cv2.resize((1 - a3) * b, size, interpolation=interp)
        f_plain, b_plain = (cv2.resize(x, size, interpolation=interp) for x in (f, b))
        a2 = np.clip(cv2.resize(a, size, interpolation=interp), 0, 1)
        eps = 1e-3
        f2 = (pf + eps * f_plain) / (a2[..., None] + eps)
        b2 = (pb + eps * b_plain) / (1 - a2[..., None] + eps)
        return np.clip(f2, 0, 1), np.clip(b2, 0, 1), a2

    def _jitter(self, f, b, a, rng):
        """Brightness, contrast, saturation in random order, factors in [1 - j, 1 + j] (torchvision's
        ColorJitter(0.125, 0.125, 0.125) in DIM-PyTorch), applied identically to fg and bg so that the
        composite of the jittered layers is the jittered composite (per-pixel linear operations)."""
        j = self.jitter
        factors = rng.uniform(1 - j, 1 + j, 3)
        for op in rng.permutation(3):
            if op == 0:
                f, b = f * factors[0], b * factors[0]
            elif op == 1:
                image = a[..., None] * f + (1 - a[..., None]) * b
                m = np.float32((image @ _GREY).mean())
                f, b = (f - m) * factors[1] + m, (b - m) * factors[1] + m
            else:
                f = (f - (f @ _GREY)[..., None]) * factors[2] + (f @ _GREY)[..., None]
                b = (b - (b @ _GREY)[..., None]) * factors[2] + (b @ _GREY)[..., None]
        return np.clip(f, 0, 1).astype(np.float32), np.clip(b, 0, 1).astype(np.float32)


def train_val_sets(layout: DatasetLayout, *, crop_size: int, seed: int, split_seed: int, val_fraction: float,
                   val_samples: int, epoch_length: int = 0) -> tuple[MattingTrainDataset, MattingTrainDataset]:
    """(training set, validation set) of every training here (notebooks 02 and 03, the calibration runs).

    The training foregrounds are split by :func:`split_train_val` (``val_fraction``, ``split_seed``); training
    composites are seeded by ``seed`` (``epoch_length`` 0: every foreground/background pair once per epoch);
    validation is a fixed set of ``val_samples`` crops of the held-out foregrounds, seeded ``split_seed + 1``.
    """
    train_fg, val_fg = split_train_val(layout.fg_names("train"), val_fraction, split_seed)
    train_set = MattingTrainDataset(layout, train_fg, crop_size=crop_size, seed=seed, epoch_length=epoch_length or None)
    val_set = MattingTrainDataset(layout, val_fg, crop_size=crop_size, seed=split_seed + 1, epoch_length=val_samples)
    return train_set, val_set


class MattingTestDataset(Dataset):
    """The composited test set (``Composition-1k/merged``), full-size; batch size 1.

    Trimaps are snapped to 0/128/255 (:func:`~matting_lib.data.trimap.snap_trimap`). limit: keep the first N
    composites (in name-list order), for quick checks.
    """

    def __init__(self, layout: DatasetLayout, *, limit: int | None = None):
        self.layout = layout
        self.items: list[TestItem] = list_test_items(layout)[:limit]
        missing = [it.image_path for it in self.items if not it.image_path.is_file()]
        if missing:
            raise LayoutError(f"{len(missing)} of {len(self.items)} test composites are missing (first: {missing[0]}); "
                              "build them with matting_lib.data.compositing.build_test_set(layout) (notebook 01)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        it = self.items[index]
        image, alpha, trimap = (
            read_rgb(it.image_path),
            read_alpha(it.alpha_path),
            snap_trimap(read_trimap(it.trimap_path)),
        )
        for path, arr in ((it.alpha_path, alpha), (it.trimap_path, trimap)):
            if arr.shape != image.shape[:2]:
                raise LayoutError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but composite {it.image_path.name} is "
                                  f"{image.shape[1]}x{image.shape[0]} (WxH)")
        return {"input": make_input(image, trimap), "alpha": _chw(alpha / np.float32(255)),
                "trimap": _chw(trimap / np.float32(255)), "image": _chw(image / np.float32(255)), "name": it.name}
