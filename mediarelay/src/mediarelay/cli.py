"""Command line of the media relay: ``python -m mediarelay serve``.

``serve`` runs one relay process with explicit settings (what a relay pod runs): where
*ng* control is served, the address media sockets bind, the address written into SDP
(never a wildcard: see :mod:`mediarelay.config`), the media port range, STUN and metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from mediarelay.app import serve
from mediarelay.config import RelayConfig, host_port, port_range

STUN_PORT = 3478


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mediarelay", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the media relay")
    run.add_argument("--ng", required=True, help="HOST:PORT for ng control (e.g. 127.0.0.1:2223)")
    run.add_argument("--bind", required=True, help="address the media sockets bind")
    run.add_argument("--advertise", default=None, help="address put in SDP (default: --bind)")
    run.add_argument("--ports", type=port_range, default=(30000, 39999), help="LOW-HIGH")
    run.add_argument("--stun", default=None, help=f"HOST[:PORT] for STUN (port {STUN_PORT})")
    run.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without media")
    run.add_argument("--learning-window", type=float, default=3.0, help="latching, seconds")
    run.add_argument("--metrics-port", type=int, default=None)
    run.add_argument("--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = RelayConfig(
            ng=host_port(args.ng),
            bind=args.bind,
            advertise=args.advertise or args.bind,
            ports=args.ports,
            stun=host_port(args.stun, STUN_PORT) if args.stun else None,
            idle_timeout_s=args.idle_timeout,
            learning_window_s=args.learning_window,
            metrics_port=args.metrics_port,
        )
    except ValueError as exc:
        print(f"mediarelay: {exc}", file=sys.stderr)
        return 2
    _run(config)
    return 0


def _run(config: RelayConfig) -> None:
    """On uvloop when it is installed (it roughly halves the CPU per relayed packet)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
