#!/usr/bin/env bash
# Regenerate the paper's Table 1 and figures: executes the notebooks with papermill.
#   ./run_all.sh                    # default profile: the embedded synthetic benchmark, 2-core CPU
#   ./run_all.sh --profile smoke    # the whole chain in minutes
#   ./run_all.sh --help             # all options
# First use builds ./.venv from requirements.lock (or uses an active environment that already has it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# the pipeline reports the wall time from here, the environment checks below included
export MATTING_START_TIME="$(date +%s.%N)"

# Answer --help and reject bad options before any setup: the CLI module needs only the standard library.
base_py=""
for c in "${MATTING_BASE_PYTHON:-}" .venv/bin/python python3.11 python3; do
  if [[ -n "$c" ]] && command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    base_py=$c; break
  fi
done
if [[ -z "$base_py" ]]; then
  echo "run_all.sh: error: Python 3.11 or newer is required (set MATTING_BASE_PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
for a in "$@"; do
  case "$a" in -h|--help) exec env PYTHONPATH="$PWD" "$base_py" -m matting_lib.pipeline --help ;; esac
done
PYTHONPATH="$PWD" "$base_py" -m matting_lib.pipeline --check-args "$@"

source scripts/env.sh
ensure_env
exec "$MATTING_PY" -m matting_lib.pipeline "$@"
