"""``cloudpbx dev``: every part of cloudpbx on embedded defaults, in one process tree.

Today the parts are the SIP edge (memory stores, the demo tenant or a folder of Tenant
manifests); the media relay and the portal join the tree as they arrive. Arguments
after ``dev`` go to the edge (``--host``, ``--port``, ``--manifests``, ...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

USAGE = "usage: cloudpbx dev [--host HOST] [--port PORT] [--manifests DIR] [--metrics-port N]"


def main(argv: Sequence[str] | None = None) -> int:  # returns only on a usage error
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "dev":
        print(USAGE, file=sys.stderr)
        return 2
    # One part so far: become the edge (signals and exit status are then simply its own).
    os.execv(sys.executable, [sys.executable, "-m", "sipedge", "dev", *args[1:]])  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
