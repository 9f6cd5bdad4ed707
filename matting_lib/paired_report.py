"""``python -m matting_lib.paired_report``: the command of :mod:`matting_lib.reporting.paired_report`
(import from there)."""

import sys

from matting_lib.reporting.paired_report import main

if __name__ == "__main__":
    sys.exit(main())
