"""``python -m matting_lib.predict``: the command of :mod:`matting_lib.inference.predict` (import from there)."""

import sys

from matting_lib.inference.predict import main

if __name__ == "__main__":
    sys.exit(main())
