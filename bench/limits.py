"""Benchmark: hostile input costs time in proportion to its size, never more.

For each hostile shape (many Via values, many URI or header parameters, an
unterminated quoted string, many header lines, many folded lines) it builds inputs of
growing size, parses them with the configured limits lifted (so the parser does the
whole job) and with the default limits (so it refuses them), and prints the time per
kilobyte. Linear means the per-kilobyte figure stays flat as the size grows 100-fold.
It ends with ``RESULT limits worst_growth=<x>``: the largest ratio between the
per-kilobyte cost at the largest and the smallest size (1.0 = perfectly linear; a
quadratic parser would show ~100).

Run: ``.venv/bin/python bench/limits.py``. A benchmark, not a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sipedge.sip.errors import ParseError
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request
from sipedge.sip.parser import Limits, check_request

BASE = (Path(__file__).resolve().parents[1] / "tests/data/sip-torture/wsinv.sip").read_bytes()
UNLIMITED = Limits(max_message_bytes=10**9, max_line_bytes=10**9, max_header_lines=10**9)
SHAPES: dict[str, Callable[[int], bytes]] = {
    "via-values": lambda n: b"Via: " + b",".join([b"SIP/2.0/UDP h"] * n) + b"\r\n",
    "contact-params": lambda n: b"Contact: <sip:a@b>" + b";p" * n + b"\r\n",
    "uri-params": lambda n: b"Route: <sip:a@b" + b";p" * n + b">\r\n",
    "open-quote": lambda n: b'To: "' + b"a" * n + b"\r\n",
    "header-lines": lambda n: b"X: y\r\n" * n,
    "folded-lines": lambda n: b"X: y" + b"\r\n z" * n + b"\r\n",
}
SIZES = (1_000, 10_000, 100_000)


def cost_s(data: bytes, limits: Limits) -> float:
    """Best of three: parse and run the sanity stage; refusals count as work done."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        try:
            message = parse_datagram(data, limits)
            if isinstance(message, Request):
                check_request(message)
        except ParseError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    worst = 0.0
    print(f"{'shape':15} {'n':>8} {'bytes':>9} {'lifted us/KB':>13} {'default us/KB':>14}")
    for name, make in SHAPES.items():
        per_kb: list[float] = []
        for n in SIZES:
            data = BASE.replace(b"Content-Type", make(n) + b"Content-Type", 1)
            kilobytes = len(data) / 1024
            lifted = cost_s(data, UNLIMITED) / kilobytes * 1e6
            default = cost_s(data, Limits()) / kilobytes * 1e6
            per_kb.append(lifted)
            print(f"{name:15} {n:>8} {len(data):>9} {lifted:>13.1f} {default:>14.1f}")
        worst = max(worst, per_kb[-1] / per_kb[0])
    print(f"RESULT limits worst_growth={worst:.2f}")


if __name__ == "__main__":
    main()
