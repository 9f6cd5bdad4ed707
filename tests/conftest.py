"""Shared test fixtures. Tests are offline, deterministic and build their own tiny fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch to one intra-op thread per test process: the suite runs tests in parallel on 2 cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("MATTING_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(old)
