"""Seeding: one call for Python, NumPy and torch, and the DataLoader workers' seeds derived from torch's."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and CUDA).

    Library code never draws from these global generators (it takes an explicit
    ``numpy.random.Generator``); seeding them only protects third-party code. DataLoader workers are
    seeded through :func:`worker_init_fn`.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive each worker's Python/NumPy seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
