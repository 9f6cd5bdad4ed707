"""``python -m matting_lib.checkpoints``: the command of :mod:`matting_lib.networks.checkpoints` (import from there)."""

import sys

from matting_lib.networks.checkpoints import main

if __name__ == "__main__":
    sys.exit(main())
