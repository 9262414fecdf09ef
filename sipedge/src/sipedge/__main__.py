"""``python -m sipedge``: see :mod:`sipedge.cli`."""

import sys

from sipedge.cli import main

sys.exit(main())
