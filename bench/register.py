"""Benchmark: digest-authenticated registrations per second, cloudpbx edge vs Kamailio.

Both sides get the same 10,000 users (``100000..109999``, password ``"pw" + number``,
domain ``bench.cloudpbx.test``) and the same load from the same generator, SIPp running
``tests/e2e/sipp/register.xml``: REGISTER → 401 → REGISTER with digest (qop=auth) → 200.
Every user registers once: 10,000 SIPp calls, 20,000 requests per side.

* cloudpbx: the edge started with :data:`CLOUDPBX_CMD` (``--cloudpbx-cmd`` replaces it) on a
  free loopback port, serving a generated manifest folder: one YAML file with the ``bench``
  Tenant (10,000 extensions) and its ``bench-passwords`` Secret. Its Redis database
  (``--redis``, default ``/14``, not the tests' ``/15``) is cleared of the ``bench`` tenant's
  keys before and after, so every run starts with no bindings.
* kamailio: ``bench/kamailio/registrar.cfg`` (in-memory usrloc, digest against the derived
  password, ``children=2``).

SIPp runs register.xml with ``-set lean 1``: every message is the same, but the 200's
Contact is not parsed (that regexp would cost SIPp more CPU than the rest of the scenario
and make the generator the bottleneck); the e2e tests prove the bindings. ``--verify`` turns
the check on here too, at the price of lower, generator-bound figures.

Method (closed loop, the same on both sides): SIPp offers a very high rate (``-r 20000``)
but may have at most ``--window`` registrations in flight (``-l``, default 64), so a new one
starts whenever one ends. The registrar's throughput is then what it can sustain with that
many clients waiting: the rate reported is successful registrations divided by the run's
elapsed time (from SIPp's statistics file). A registration that gets no answer is
retransmitted (counted in ``retrans``) and fails after ``--recv-timeout-ms``; failures are
counted, never hidden. Both servers run on this machine's cores next to SIPp, so the ratio
compares them under identical conditions, not absolute capacity.

Ends with exactly one line::

    RESULT register cloudpbx=<n>/s kamailio=<n>/s failed=<n> retrans=<n> ratio=<cloudpbx/kamailio>

where ``failed`` and ``retrans`` are cloudpbx's; a side not measured (``--only``, or an edge
that did not start) prints ``n/a``. Exit status 1 when a measured side had failures or did
not start. Takes well under a minute for Kamailio; the edge's share depends on its speed
(capped by ``--max-seconds``).

Run: ``.venv/bin/python bench/register.py [--only kamailio|cloudpbx] [--users N]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from sipbench import (
    BENCH_TENANT,
    FIRST_USER,
    REGISTRAR_CFG,
    SippResult,
    SipServer,
    SipServerError,
    clear_tenant_keys,
    command_server,
    free_udp_port,
    kamailio,
    make_users,
    register_options,
    result_line,
    run_sipp,
    write_tenant_manifest,
    write_users_csv,
)
from sipbench.edge import (
    CLOUDPBX_CMD,
    DEFAULT_REDIS,
    check_manifest,
    cloudpbx_command,
    prepare_build,
)

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("cloudpbx", "kamailio")


def start_target(
    target: str, args: argparse.Namespace, workdir: Path, manifests: Path
) -> SipServer:
    """The server under test, not yet started (use it in a ``with`` block)."""
    if target == "kamailio":
        return kamailio(REGISTRAR_CFG, workdir=workdir)
    port = free_udp_port()
    command = cloudpbx_command(args.cloudpbx_cmd, port=port, manifests=manifests, redis=args.redis)
    return command_server("cloudpbx", command, port, workdir=workdir, cwd=ROOT)


def measure(target: str, args: argparse.Namespace, workdir: Path, csv: Path) -> SippResult:
    """Registers every user once through ``target`` (closed loop) and returns SIPp's result."""
    manifests = workdir / "manifests"
    clear = target == "cloudpbx" and args.redis.startswith("redis")
    if clear:
        clear_tenant_keys(args.redis, BENCH_TENANT)
    try:
        with start_target(target, args, workdir, manifests) as server:
            options = register_options(
                server.address,
                csv,
                calls=args.users,
                lean=not args.verify,
                rate=20_000,
                limit=args.window,
                recv_timeout_ms=args.recv_timeout_ms,
                timeout_s=args.max_seconds,
                name=f"register-{target}",
                transport=args.sipp_transport,
            )
            result = run_sipp(options, workdir, timeout_s=args.max_seconds + 30)
            if not server.alive():
                raise SipServerError(f"{target} died during the run (log: {server.log})")
            return result
    finally:
        if clear:
            clear_tenant_keys(args.redis, BENCH_TENANT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--only", choices=TARGETS, help="measure one side only")
    parser.add_argument("--users", type=int, default=10_000, help="users to register (10000)")
    parser.add_argument("--first-user", type=int, default=FIRST_USER, help="first number")
    parser.add_argument("--window", type=int, default=64, help="registrations in flight (64)")
    parser.add_argument("--recv-timeout-ms", type=int, default=5_000)
    parser.add_argument("--max-seconds", type=int, default=90, help="per side (90)")
    parser.add_argument("--cloudpbx-cmd", default=CLOUDPBX_CMD, help="edge command template")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="the edge's Redis (db 14)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check every 200's Contact (costs SIPp CPU: lower, generator-bound rates)",
    )
    parser.add_argument(
        "--sipp-transport",
        choices=("un", "u1"),
        default="un",
        help="SIPp -t: a UDP socket per registering phone (un, default) or one for all (u1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measures the chosen sides, prints their figures and the RESULT line."""
    args = parse_args(argv)
    targets = [args.only] if args.only else list(TARGETS)
    workdir = Path(tempfile.mkdtemp(prefix="cloudpbx-bench-register-"))
    users = make_users(args.users, first=args.first_user)
    csv = write_users_csv(workdir / "users.csv", users)
    if "cloudpbx" in targets:
        check_manifest(args.users, args.first_user)
        write_tenant_manifest(workdir / "manifests" / "bench.yaml", users)
        print(f"cloudpbx: measuring {prepare_build(args.cloudpbx_cmd)}")
    print(
        f"register: {args.users} users, digest auth, closed loop of {args.window}"
        f" in flight; work folder {workdir}"
    )
    rates: dict[str, float] = {}
    failures: dict[str, int] = {}
    results: dict[str, SippResult] = {}
    healthy = True
    for target in targets:
        try:
            result = measure(target, args, workdir, csv)
        except (SipServerError, OSError) as error:
            print(f"{target}: not measured: {error}", file=sys.stderr)
            healthy = False
            continue
        results[target] = result
        stats = result.stats
        if stats is None:
            print(f"{target}: no statistics\n{result.describe()}", file=sys.stderr)
            healthy = False
            continue
        rates[target] = stats.successful_rate
        # Registrations SIPp neither completed nor failed (it stopped early) count as failed.
        unfinished = max(0, args.users - stats.successful - stats.failed)
        failures[target] = stats.failed + unfinished
        print(
            f"{target:>9}: {stats.summary()}" + (f" unfinished={unfinished}" if unfinished else "")
        )
        if not result.ok or failures[target]:
            healthy = False
            print(result.describe(), file=sys.stderr)
    edge = results.get("cloudpbx")
    edge_stats = edge.stats if edge is not None else None
    print(
        result_line(
            "register",
            rates.get("cloudpbx"),
            rates.get("kamailio"),
            failed=failures.get("cloudpbx"),
            retrans=edge_stats.retransmissions if edge_stats else None,
        )
    )
    if not args.keep and healthy:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
