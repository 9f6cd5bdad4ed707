#!/usr/bin/env bash
# Set up (first use) and run the test suite, notebooks on smoke parameters included.
#   ./test.sh                 # everything
#   ./test.sh -k metrics      # any pytest arguments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/env.sh
ensure_env
# Two workers: the suite is dominated by notebook executions that each use one core.
exec "$MATTING_PY" -m pytest -n "${MATTING_TEST_WORKERS:-2}" "$@"
