"""``python -m matting_lib.pipeline``: the command line behind ``run_all.sh`` (:mod:`matting_lib.pipeline.cli`)."""

import sys

from matting_lib.pipeline.cli import main

sys.exit(main())
