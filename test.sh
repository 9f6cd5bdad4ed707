#!/usr/bin/env bash
# Set up (first use) and run the test suite, notebooks on smoke parameters included.
#   ./test.sh                 # everything
#   ./test.sh --fast          # the edit-test loop: everything not marked slow (pytest -m "not slow"),
#                             # about a minute; CI runs the full suite
#   ./test.sh -k metrics      # any pytest arguments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/env.sh
ensure_env
# Two workers: the suite is dominated by notebook executions that each use one core.
args=()
for a in "$@"; do
  if [[ "$a" == "--fast" ]]; then args+=(-m "not slow"); else args+=("$a"); fi
done
exec "$MATTING_PY" -m pytest -n "${MATTING_TEST_WORKERS:-2}" ${args[@]+"${args[@]}"}
