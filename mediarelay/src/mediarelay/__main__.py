"""``python -m mediarelay``: see :mod:`mediarelay.cli`."""

import sys

from mediarelay.cli import main

sys.exit(main())
