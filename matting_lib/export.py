"""``python -m matting_lib.export``: the command of :mod:`matting_lib.inference.export` (import from there)."""

import sys

from matting_lib.inference.export import main

if __name__ == "__main__":
    sys.exit(main())
