"""Command line of the edge: ``python -m sipedge serve`` and ``python -m sipedge dev``.

``serve`` runs the edge with explicit settings (what a pod runs). ``dev`` runs it on
embedded defaults — memory stores, the demo tenant shipped in the package (or a
folder of manifests) — and prints how to point a softphone at it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import cast

from contracts.stores.url import check_url
from sipedge import logs
from sipedge.app import serve
from sipedge.config import EdgeConfig, Listen
from sipedge.media import RelayAddress
from sipedge.tenants import demo_manifests, load_manifest_folder

log = logging.getLogger("sipedge.cli")

DEFAULT_PORT = 5060


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sipedge", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the SIP edge")
    run.add_argument(
        "--listen",
        action="append",
        type=Listen.parse,
        required=True,
        help="udp:HOST:PORT or tcp:HOST:PORT (repeatable; IPv6 as [::1])",
    )
    run.add_argument(
        "--manifests",
        type=Path,
        default=None,
        help="folder of Tenant YAML (default: the snapshots the operator publishes in --redis)",
    )
    run.add_argument(
        "--relay",
        action="append",
        type=RelayAddress.parse,
        default=[],
        help="a media relay's ng control address HOST:PORT (repeatable; none: no anchoring)",
    )
    run.add_argument(
        "--relay-timeout",
        type=float,
        default=1.0,
        help="seconds to wait for an ng reply before sending the command again",
    )
    run.add_argument("--relay-tries", type=int, default=5, help="sends of an ng command")
    run.add_argument(
        "--relay-ping-interval", type=float, default=10.0, help="seconds between relay pings"
    )
    run.add_argument(
        "--only-tenant",
        dest="only_tenants",
        action="append",
        default=[],
        help="serve only this tenant's snapshot (repeatable): an edge dedicated to a tenant",
    )
    run.add_argument(
        "--billing",
        dest="billing_url",
        type=check_url,
        default=None,
        help="billing store: postgresql://… or sqlite:///PATH (prepaid credit control, CDRs)",
    )
    run.add_argument(
        "--credit-slice",
        type=int,
        default=60,
        help="seconds of talk time a prepaid call reserves ahead, extended as it runs",
    )
    run.add_argument(
        "--dns-server",
        type=host_port,
        default=None,
        help="HOST:PORT of the DNS server for trunk providers' SRV and A records "
        "(default: the system's resolver)",
    )
    run.add_argument(
        "--trunk-lease-ttl",
        type=float,
        default=30.0,
        help="seconds a trunk registration's lease lasts unless renewed (takeover time)",
    )
    run.add_argument(
        "--trunk-lease-renew",
        type=float,
        default=None,
        help="seconds between renewals of a held trunk lease (default: a third of the TTL)",
    )
    run.add_argument(
        "--trunk-backoff-base",
        type=float,
        default=None,
        help="seconds before the first retry of a failed trunk registration (doubling)",
    )
    _common(run)
    dev = commands.add_parser("dev", help="run on embedded defaults with the demo tenant")
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT)
    dev.add_argument("--manifests", type=Path, default=None, help="folder of Tenant YAML")
    dev.add_argument("--metrics-port", type=int, default=9060)
    dev.add_argument(
        "--billing",
        dest="billing_url",
        type=check_url,
        default=None,
        help="billing store (default: sqlite:/// a file in $XDG_DATA_HOME/cloudpbx)",
    )
    dev.add_argument(
        "--relay",
        action="append",
        type=RelayAddress.parse,
        default=[],
        help="anchor media on this relay's ng address HOST:PORT (repeatable; default: none)",
    )
    dev.add_argument("--log-level", default="info")
    return parser


def host_port(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353``, ``[::1]:53``: a server's address, for argparse."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--redis",
        dest="redis_url",
        default=None,
        help="redis:// URL; without it bindings and calls stay in memory",
    )
    command.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the ports (SO_REUSEPORT); needs --redis if > 1",
    )
    command.add_argument("--advertise", default=None, help="host for Via/Contact")
    command.add_argument("--metrics-port", type=int, default=None)
    command.add_argument("--nonce-secret-file", type=Path, default=None)
    command.add_argument(
        "--keepalive-interval",
        type=float,
        default=25.0,
        help="seconds between OPTIONS pings to phones behind NAT (UDP)",
    )
    command.add_argument(
        "--digest-algorithms",
        default="MD5",
        help="challenge with these, most preferred first: MD5, SHA-256",
    )
    command.add_argument("--log-level", default="info")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level)
    if args.command == "dev":
        return _dev(args)
    if args.workers > 1 and not args.redis_url:
        print("--workers > 1 needs --redis: memory stores are per process", file=sys.stderr)
        return 2
    if args.only_tenants and args.manifests is not None:
        print("--only-tenant picks among the snapshots: not with --manifests", file=sys.stderr)
        return 2
    if args.manifests is None and not args.redis_url:
        print(
            "serve needs --manifests DIR, or --redis for the operator's snapshots", file=sys.stderr
        )
        return 2
    secret = args.nonce_secret_file.read_bytes().strip() if args.nonce_secret_file else None
    config = EdgeConfig(
        listens=tuple(args.listen),
        manifests=args.manifests,
        redis_url=args.redis_url,
        advertise=args.advertise,
        workers=args.workers,
        metrics_port=args.metrics_port,
        digest_algorithms=tuple(a.strip() for a in args.digest_algorithms.split(",")),
        keepalive_interval_s=args.keepalive_interval,
        relays=tuple(args.relay),
        relay_timeout_s=args.relay_timeout,
        relay_tries=args.relay_tries,
        relay_ping_interval_s=args.relay_ping_interval,
        billing_url=args.billing_url,
        credit_slice_s=args.credit_slice,
        only_tenants=tuple(args.only_tenants),
        dns_server=args.dns_server,
        trunk_lease_ttl_s=args.trunk_lease_ttl,
        trunk_lease_renew_s=args.trunk_lease_renew,
        trunk_backoff_base_s=args.trunk_backoff_base,
        **({"nonce_secret": secret} if secret else {}),
    )
    if config.manifests is not None:
        load_manifest_folder(config.manifests)  # fail fast, with the file and field named
    return _run_workers(config)


#: A worker that dies is started again, but not more often than this in RESTART_WINDOW_S:
#: beyond it the edge stops and exits non-zero, for its supervisor (Kubernetes) to act.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def _run_workers(config: EdgeConfig) -> int:
    """Run ``config.workers`` processes sharing the port; restart one that dies.

    SIGTERM and SIGINT are passed on to every worker (each drains, then exits), after
    which nothing is restarted. A worker that dies otherwise (a crash, the OOM killer)
    is replaced under the same index, so its branch prefix and hand-over inbox come
    back; its transactions are lost, as a restarted Kamailio child's would be.
    """
    if config.workers == 1:
        _run(config, 0)
        return 0
    logs.setup("info")
    config = replace(config, worker_group=f"cloudpbx-edge-{os.getpid()}-{secrets.token_hex(4)}")
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> multiprocessing.process.BaseProcess:
        worker = context.Process(target=_worker, args=(config, index), daemon=False)
        worker.start()
        return worker

    workers = {index: start(index) for index in range(config.workers)}

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers.values():
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    restarts: list[float] = []
    exit_codes: dict[int, int] = {}
    while len(exit_codes) < len(workers):
        running = {w.sentinel: i for i, w in workers.items() if i not in exit_codes}
        for sentinel in multiprocessing.connection.wait(list(running)):
            index = running[cast(int, sentinel)]
            worker = workers[index]
            worker.join()
            code = worker.exitcode or 0
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_S]
            if stopping or len(restarts) >= MAX_RESTARTS:
                exit_codes[index] = code
                if not stopping:
                    log.error(
                        "edge worker %d exited (%d): too many restarts, stopping", index, code
                    )
                    forward(signal.SIGTERM, None)
                    exit_codes[index] = code or 1
                continue
            log.warning("edge worker %d exited (%d); starting it again", index, code)
            restarts.append(now)
            workers[index] = start(index)
    return max(exit_codes.values())


def _worker(config: EdgeConfig, index: int) -> None:
    logs.setup("info")
    _run(config, index)


def _run(config: EdgeConfig, index: int) -> None:
    """Run one worker on uvloop when it is installed (3x less CPU per UDP packet)."""
    work = serve(config, index, on_ready=lambda: print("READY", flush=True))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        asyncio.run(work)
    else:
        uvloop.run(work)


def _dev(args: argparse.Namespace) -> int:
    folder = args.manifests or Path(str(demo_manifests()))
    tenants = load_manifest_folder(folder)
    config = EdgeConfig(
        listens=(Listen("UDP", args.host, args.port), Listen("TCP", args.host, args.port)),
        manifests=folder,
        metrics_port=args.metrics_port,
        relays=tuple(args.relay),
        billing_url=args.billing_url or _dev_billing_url(),
    )
    print(_banner(config, [t.name for t in tenants], folder), flush=True)
    return _run_workers(config)


def _dev_billing_url() -> str:
    """The embedded billing store: one SQLite file that outlives the process (balances
    and CDRs are money and history), under ``$XDG_DATA_HOME`` (``~/.local/share``)."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    folder = data / "cloudpbx"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'billing.db'}"


def _banner(config: EdgeConfig, tenants: list[str], folder: Path) -> str:
    listen = config.listens[0]
    lines = [
        "cloudpbx dev: the SIP edge on embedded defaults (memory stores, no Postgres/Redis)",
        f"  billing (balances, CDRs): {config.billing_url}",
        f"  SIP server / registrar / outbound proxy: {listen.host}:{listen.port} (UDP and TCP)",
        f"  tenants from {folder}: {', '.join(tenants)}",
        f"  metrics: http://127.0.0.1:{config.metrics_port}/metrics",
        "  media relays: "
        + (", ".join(str(r) for r in config.relays) or "none (media flows phone to phone)"),
    ]
    lines += _demo_accounts(folder)
    lines.append("Stop with Ctrl-C.")
    return "\n".join(lines)


def _demo_accounts(folder: Path) -> list[str]:
    """The demo tenant's users and passwords, read from its manifest (demo-only secrets)."""
    import yaml

    lines: list[str] = []
    for path in sorted(folder.glob("*.y*ml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        secrets = {
            d["metadata"]["name"]: d.get("stringData", {})
            for d in documents
            if d.get("kind") == "Secret"
        }
        for document in documents:
            if document.get("kind") != "Tenant":
                continue
            spec = document["spec"]
            lines.append(f"  tenant {document['metadata']['name']}: domain {spec['domain']}")
            for extension in spec.get("extensions", []):
                ref = extension.get("passwordSecretRef", {})
                password = secrets.get(ref.get("name"), {}).get(ref.get("key"), "(in a Secret)")
                lines.append(
                    f"    user {extension['number']} password {password}"
                    f"  ({extension.get('displayName', '')})"
                )
    return lines


if __name__ == "__main__":
    sys.exit(main())
