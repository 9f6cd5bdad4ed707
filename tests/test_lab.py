"""``./lab.sh``: JupyterLab on 127.0.0.1, as root (containers) and as a user."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO


def _env(**extra: str) -> dict[str, str]:
    """This interpreter's environment as the active one (scripts/env.sh uses it instead of building .venv)."""
    prefix = Path(sys.executable).parent
    return {**os.environ, "VIRTUAL_ENV": str(prefix.parent), "PATH": f"{prefix}{os.pathsep}{os.environ['PATH']}",
            **extra}


def _dry_run(*args: str, path_prefix: str = "") -> subprocess.CompletedProcess:
    env = _env(MATTING_LAB_DRY_RUN="1")
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run([str(REPO / "lab.sh"), *args], capture_output=True, text=True, timeout=120, env=env)


def test_command_binds_localhost_and_adds_allow_root_only_as_root(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    for uid in (0, 1000):  # `id -u` answering as root and as an ordinary user
        (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake / "id").chmod(0o755)
        out = _dry_run("matting_lib/..//notebooks/", "--port", "8899", path_prefix=str(fake))
        assert out.returncode == 0, out.stderr
        cmd = out.stdout.split()
        assert "-m" in cmd and "jupyterlab" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
        assert f"--ServerApp.root_dir={REPO}" in cmd and "--LabApp.default_url=/lab/tree/notebooks" in cmd
        assert cmd[-2:] == ["--port", "8899"]
        assert ("--allow-root" in cmd) == (uid == 0)
    bad = _dry_run("/etc")
    assert bad.returncode == 2 and "not a folder inside" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_lab_starts_for_this_user_and_listens_on_localhost_only(tmp_path):
    port, token = _free_port(), "t0k3n"
    env = _env(JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen([str(REPO / "lab.sh"), "--port", str(port), f"--IdentityProvider.token={token}",
                               "--no-browser", "--ServerApp.port_retries=0"], stdout=log, stderr=subprocess.STDOUT,
                              env=env)
    try:
        status = None
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    status = r.status
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
                time.sleep(0.5)
        assert status == 200, (tmp_path / "lab.log").read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", timeout=10) as r:
            assert b"05_similarity_explorer.ipynb" in r.read()  # its root is the repository
        # bound to the loopback address only: /proc/net/tcp lists the listening socket's local address
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert listening == [f"0100007F:{port:04X}"]
        assert "Running as root is not recommended" not in (tmp_path / "lab.log").read_text()
    finally:
        server.terminate()  # the server this test started
        server.wait(timeout=30)
        log.close()
