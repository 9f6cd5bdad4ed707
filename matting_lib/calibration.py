"""``python -m matting_lib.calibration``: the command of :mod:`matting_lib.studies.calibration` (import from there)."""

import sys

from matting_lib import cpu_env

if __name__ == "__main__":
    cpu_env.reexec_pinned()  # before NumPy and torch load: the CPU pin only works from the start
    # imported after the CPU pin: it only works before NumPy and torch load
    from matting_lib.studies.calibration import main

    sys.exit(main())
