"""``python -m matting_lib.metrics --pred DIR --gt DIR --trimap DIR [--out CSV]``: see
:func:`matting_lib.metrics.folder.main`."""

import sys

from matting_lib.metrics.folder import main

sys.exit(main())
