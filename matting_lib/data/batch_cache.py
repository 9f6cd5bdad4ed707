"""Share the training batches between the runs of one seed: a disk cache of collated batches.

Why: on the 2-core CPU composing a batch (decode the background JPEG and the foreground, draw a random trimap on
the full-size alpha, crop, resize, flip, jitter, composite) costs about 0.1 s for 16 crops of 96 px — as much as
a width-0.25 student's whole training step at one thread (0.13 s) — and every configuration of one seed composes
exactly the same batches: a sample is a function of (dataset, seed, epoch, index) and the order a function of
(seed, epoch) (:mod:`matting_lib.data.datasets`, :mod:`matting_lib.training.loop`). The first run of a seed composes and
stores each batch; the other nine read it (about 2 ms). Together with :mod:`matting_lib.distillation.teacher_cache` this
is the "one pass of the shared work per seed" of the default profile.

Results are **identical** to composing the batches in every run (tested bit for bit): an entry holds the
collated float32 tensors themselves (``default_collate`` of the dataset's samples, as the DataLoader makes them).

Key: BLAKE2b of the dataset's :meth:`cache_identity` (its data's content identity, every parameter that shapes a
sample, the digest of the code that makes samples (:func:`matting_lib.provenance.code_digest`), the NumPy/OpenCV
versions, the CPU-kernel pin and IPP's level), the epoch, the batch's sample indices and the stored keys. Layout:
``<root>/<dataset id>/<2 hex>/<key>.pt``, written atomically (two runs composing the same batch at once write the same
bytes), loaded with ``weights_only=True``; a damaged entry is recomposed and rewritten. Disk use: ~3.5 MB per batch of
16 at 96 px (``input``, ``alpha``, ``trimap``), i.e. ~1.8 GB per seed for 500 steps; delete the folder whenever you like
(it is only a cache).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from matting_lib.files import atomic_write

#: What a training objective reads from a batch (``training.AlphaObjective``, ``distill.DistillObjective``).
BATCH_KEYS = ("input", "alpha", "trimap")


class BatchCache:
    """Collated training batches by (dataset identity, epoch, indices).

    ``root`` is the cache folder; ``keys`` the batch entries kept (every batch this cache returns has exactly
    these, whether read or composed, so a run sees the same dict either way). ``hits``/``misses`` count this
    process's lookups (DataLoader workers count their own).
    """

    def __init__(self, root: str | os.PathLike, keys: Sequence[str] = BATCH_KEYS):
        if not keys:
            raise ValueError(
                "BatchCache: keys is empty; name the batch entries to keep, e.g. ('input', 'alpha', 'trimap')"
            )
        self.root, self.keys = Path(root), tuple(keys)
        self.hits = self.misses = 0

    def dataset_id(self, dataset: Dataset) -> str:
        ident = getattr(dataset, "cache_identity", None)
        if not callable(ident):
            raise TypeError(
                f"BatchCache: {type(dataset).__name__} has no cache_identity() method, so its samples "
                f"cannot be keyed safely; use matting_lib.data.datasets.MattingTrainDataset or run without a "
                f"batch cache"
            )
        return str(ident())[:24]

    def key(self, dataset_id: str, epoch: int, indices: Sequence[int]) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{dataset_id}|{int(epoch)}|{','.join(self.keys)}|{','.join(str(int(i)) for i in indices)}".encode())
        return h.hexdigest()

    def path(self, dataset_id: str, key: str) -> Path:
        return self.root / dataset_id / key[:2] / f"{key}.pt"

    def get(self, dataset: Dataset, dataset_id: str, epoch: int, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The collated batch of ``dataset[i] for i in indices`` (the dataset set to ``epoch``): read, else composed
        and stored."""
        path = self.path(dataset_id, self.key(dataset_id, epoch, indices))
        if path.is_file():
            try:
                batch = torch.load(path, weights_only=True)
                if set(batch) == set(self.keys) and all(v.shape[0] == len(indices) for v in batch.values()):
                    self.hits += 1
                    return batch
            except Exception:  # noqa: BLE001 - a damaged or foreign file: compose the batch again and replace it
                pass
        self.misses += 1
        full = default_collate([dataset[i] for i in indices])
        missing = [k for k in self.keys if k not in full]
        if missing:
            raise KeyError(f"BatchCache: the samples of {type(dataset).__name__} have no {missing}; they have "
                           f"{sorted(full)}")
        batch = {k: full[k] for k in self.keys}
        atomic_write(path, lambda tmp: torch.save(batch, tmp))
        return batch

    def view(self, dataset: Dataset, batches: Sequence[Sequence[int]], epoch: int) -> CachedBatches:
        """A Dataset whose item ``j`` is the batch of ``batches[j]`` (for ``DataLoader(batch_size=None)``)."""
        return CachedBatches(self, dataset, self.dataset_id(dataset), batches, epoch)


class CachedBatches(Dataset):
    """Item ``j``: :meth:`BatchCache.get` of the ``j``-th index list. Picklable, so DataLoader workers compose
    the missing batches in parallel just as they would compose the samples."""

    def __init__(self, cache: BatchCache, dataset: Dataset, dataset_id: str, batches: Sequence[Sequence[int]],
                 epoch: int):
        self.cache, self.dataset, self.dataset_id = cache, dataset, dataset_id
        self.batches, self.epoch = [list(b) for b in batches], int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        return self.cache.get(self.dataset, self.dataset_id, self.epoch, self.batches[j])
