# Sourced by run_all.sh and test.sh: find or build the Python environment this project runs in.
#
# ensure_env sets MATTING_PY to a Python interpreter that has the locked dependencies and an editable
# install of matting_lib. Order of preference:
#   1. the active virtualenv / conda environment, if it already imports matting_lib from this checkout
#      with torch 2.14.1 (e.g. the conda environment from environment.yml);
#   2. ./.venv, if it carries a ready-marker matching the current requirements.lock and pyproject.toml;
#   3. otherwise (re)build ./.venv from requirements.lock. A half-built .venv (interrupted install, wrong
#      Python, missing marker) is repaired: pip re-runs over it, and a broken interpreter is recreated.

_env_fingerprint() {
  cat requirements.lock pyproject.toml | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-16
}

_find_python311() {
  local c
  for c in "${MATTING_BASE_PYTHON:-}" python3.11 python3 python; do
    [[ -n "$c" ]] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

_env_ok() {  # $1 = interpreter; true if it imports everything from this checkout
  "$1" - <<'PY' 2>/dev/null
import os, sys
import torch, torchvision, cv2, numpy, scipy, papermill, ipywidgets, tqdm, onnx, onnxruntime, onnxscript, tensorboard, matting_lib
assert torch.__version__.split("+")[0] == "2.14.1", torch.__version__
here = os.path.realpath(os.getcwd())
assert os.path.realpath(os.path.dirname(os.path.dirname(matting_lib.__file__))) == here
PY
}

ensure_env() {
  local want active
  want=$(_env_fingerprint)
  active="${VIRTUAL_ENV:-${CONDA_PREFIX:-}}"
  if [[ -n "$active" && "$active" != "$PWD/.venv" ]] && _env_ok python; then
    MATTING_PY=$(command -v python); return 0
  fi
  if [[ -f .venv/.matting-ready && "$(cat .venv/.matting-ready)" == "$want" ]] && _env_ok .venv/bin/python; then
    MATTING_PY=.venv/bin/python; return 0
  fi
  echo "[setup] preparing .venv from requirements.lock (first run: a few minutes)" >&2
  if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    local base
    base=$(_find_python311) || { echo "[setup] error: Python 3.11 is required; set MATTING_BASE_PYTHON=/path/to/python3.11" >&2; return 1; }
    rm -rf .venv
    "$base" -m venv .venv || { echo "[setup] error: '$base -m venv .venv' failed (Debian/Ubuntu: apt install python3.11-venv)" >&2; return 1; }
  fi
  rm -f .venv/.matting-ready
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  if ! _env_ok .venv/bin/python; then
    echo "[setup] error: .venv is still incomplete after installing requirements.lock; see pip's messages above." >&2
    echo "[setup] To start over: rm -rf .venv && $0" >&2
    return 1
  fi
  echo "$want" > .venv/.matting-ready
  MATTING_PY=.venv/bin/python
}
