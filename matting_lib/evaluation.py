"""``python -m matting_lib.evaluation``: the command of :mod:`matting_lib.inference.evaluation` (import from there)."""

import sys

from matting_lib.inference.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
