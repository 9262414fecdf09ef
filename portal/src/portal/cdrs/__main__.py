"""``python -m portal.cdrs``: see :mod:`portal.cdrs.cli`."""

import sys

from portal.cdrs.cli import main

sys.exit(main())
