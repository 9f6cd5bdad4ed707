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


@pytest.fixture(autouse=True)
def _no_leaked_cpu_pin():
    """A test that runs the pipeline in-process (``cli.main``) pins the CPU kernels in ``os.environ``
    (:func:`matting_lib.cpu_env.pin`); undo it afterwards, so later subprocesses (torchrun ranks, notebooks) start
    with the kernels this test process's torch was initialised with."""
    from matting_lib import cpu_env

    before = {k: os.environ.get(k) for k in cpu_env.PINNED_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
    """``./run_all.sh --profile smoke`` once per test run, into a temporary runs folder (the repository's ``runs/``
    and ``figures/`` untouched; the dataset is the shared ``data/synthetic-smoke``). Under pytest-xdist the
    workers share it: the first to need it builds it under a file lock, the others wait and reuse it (``--dist
    loadgroup`` cannot group them: pytest-xdist 3.8 sets a node id attribute that pytest 9 no longer reads).
    Returns ``(runs root, output of the run, {path: mtime_ns} of figures/smoke before it)``."""
    import json
    import subprocess
    import sys

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder for all workers
    runs, record = shared / "smoke-runs", shared / "smoke-runs.json"
    with FileLock(str(shared / "smoke-runs.lock")):
        if not record.is_file():
            repo_figs = REPO / "figures" / "smoke"
            before = {str(p): p.stat().st_mtime_ns for p in repo_figs.rglob("*")} if repo_figs.is_dir() else {}
            cmd = [sys.executable, "-m", "matting_lib.pipeline", "--profile", "smoke", "-j", "2", "--runs-dir",
                   str(runs)]
            first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
            record.write_text(json.dumps({"returncode": first.returncode, "output": first.stdout + first.stderr,
                                          "before": before}))
    done = json.loads(record.read_text())
    assert done["returncode"] == 0, done["output"][-6000:]
    return runs, done["output"], done["before"]
