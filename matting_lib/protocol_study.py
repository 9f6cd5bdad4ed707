"""``python -m matting_lib.protocol_study``: the command of :mod:`matting_lib.studies.protocol_study`
(import from there)."""

import sys

from matting_lib.studies.protocol_study import main

if __name__ == "__main__":
    sys.exit(main())
