"""Fuzz target (atheris/libFuzzer): peer bytes only ever raise the SIP core's ParseError.

Seeded with the RFC 4475/5118 torture messages. ``./pbx fuzz [seconds]`` runs it for
as long as you like; ``test_fuzz.py`` runs it briefly in every test run. Any other
exception, a hang or a crash is a finding, saved under ``.fuzz/``.

    python tests/sipedge/sip/fuzz_parser.py [libFuzzer flags] NEW_CORPUS SEED_CORPUS...
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["sipedge"]):
    from test_properties import feed_peer_bytes


def main() -> None:
    atheris.Setup(sys.argv, feed_peer_bytes)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
