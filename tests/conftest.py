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


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A folder ``tmp_path/ro`` that the code under test sees as read-only. Root writes anywhere, so as root
    ``os.access`` is patched to answer as it would for an ordinary user; the mode is restored afterwards."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    yield ro
    ro.chmod(0o755)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``./run_all.sh --profile smoke`` once per test process, into a temporary runs folder (the repository's
    ``runs/`` and ``figures/`` untouched; the dataset is the shared ``data/synthetic-smoke``). Tests that read
    its outputs carry ``@pytest.mark.xdist_group("smoke")``, so ``./test.sh`` (``--dist loadgroup``) builds it
    once. Returns ``(runs root, stdout of the run, mtimes of figures/smoke before it)``."""
    import subprocess
    import sys

    repo_figs = REPO / "figures" / "smoke"
    before = {p: p.stat().st_mtime_ns for p in repo_figs.rglob("*")} if repo_figs.is_dir() else {}
    runs = tmp_path_factory.mktemp("smoke-runs")
    cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "-j", "2", "--runs-dir", str(runs)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return runs, first.stdout + first.stderr, before
