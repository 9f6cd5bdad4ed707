#!/usr/bin/env bash
# JupyterLab on this checkout, reachable only from this machine (127.0.0.1), as a user or as root (containers).
#   ./lab.sh                           # opens notebooks/
#   ./lab.sh runs/smoke/notebooks      # the executed copies of a run (they carry that run's parameters)
#   ./lab.sh notebooks --port 8890     # any further jupyter lab option
# The server's root is the repository, so runs/ and figures/ are reachable from the file browser too. The first
# use builds ./.venv like run_all.sh. Open the URL with the token that JupyterLab prints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
folder=notebooks
if [[ $# -gt 0 && "$1" != -* ]]; then folder=${1%/}; shift; fi
rel=$([[ -d "$folder" ]] && realpath --relative-to="$PWD" "$folder" || echo "..")
if [[ "$rel" == .. || "$rel" == ../* ]]; then
  echo "lab.sh: error: $folder is not a folder inside $PWD; give one such as notebooks or runs/smoke/notebooks" >&2
  exit 2
fi
folder=$rel
args=(--ServerApp.ip=127.0.0.1 "--ServerApp.root_dir=$PWD" "--LabApp.default_url=/lab/tree/$folder")
# Jupyter refuses to start as root without this flag ("Running as root is not recommended"); as in containers
if [[ "$(id -u)" == 0 ]]; then args+=(--allow-root); fi
if [[ -n "${MATTING_LAB_DRY_RUN:-}" ]]; then  # tests: print the arguments instead of starting the server
  echo -m jupyterlab "${args[@]}" "$@"; exit 0
fi
source scripts/env.sh
ensure_env
exec "$MATTING_PY" -m jupyterlab "${args[@]}" "$@"
