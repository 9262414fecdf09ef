"""The ``cloudpbx`` command: starts the parts by module name and imports none of them.

``cloudpbx dev``: every part of cloudpbx on embedded defaults, in one process tree.
Today the parts are the SIP edge (memory stores, the demo tenant or a folder of Tenant
manifests); the media relay and the portal join the tree as they arrive. Arguments
after ``dev`` go to the edge (``--host``, ``--port``, ``--manifests``, ...).

``cloudpbx cdrs ...`` is the portal's CDR command, ``python -m portal.cdrs ...``
(``cloudpbx cdrs export --store URL --tenant T --since DAY --until DAY [--out FILE]``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

USAGE = """\
usage: cloudpbx dev [--host HOST] [--port PORT] [--manifests DIR] [--metrics-port N]
       cloudpbx cdrs export --store URL --tenant T --since DAY --until DAY [--out FILE|-]"""

#: What each command becomes: ``python -m MODULE [WORD] ARGS...``, by name only.
COMMANDS = {"dev": ("sipedge", "dev"), "cdrs": ("portal.cdrs",)}


def main(argv: Sequence[str] | None = None) -> int:  # returns only on a usage error
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    # Become the part (its signals, output and exit status are then simply its own).
    module, *words = COMMANDS[args[0]]
    os.execv(sys.executable, [sys.executable, "-m", module, *words, *args[1:]])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
