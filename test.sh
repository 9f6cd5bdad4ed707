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
# The linters first (configured in pyproject.toml; a second or so): ruff (pyflakes, pycodestyle, isort, pyupgrade,
# bugbear) and codespell over the whole tree, so a duplicate definition, a dead import or a typo never lands.
for tool in ruff codespell_lib; do
  "$MATTING_PY" -c "import $tool" 2>/dev/null || {
    echo "test.sh: $tool is missing from the environment of $MATTING_PY; install requirements.lock into it" >&2; exit 1; }
done
"$MATTING_PY" -m ruff check --quiet .
"$MATTING_PY" -m codespell_lib
# Two workers: the suite is dominated by notebook executions that each use one core.
args=()
for a in "$@"; do
  if [[ "$a" == "--fast" ]]; then args+=(-m "not slow"); else args+=("$a"); fi
done
exec "$MATTING_PY" -m pytest -n "${MATTING_TEST_WORKERS:-2}" ${args[@]+"${args[@]}"}
