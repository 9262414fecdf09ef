"""Benchmark: call set-ups per second through the cloudpbx edge vs through Kamailio.

Each call is a whole dialog, through the server under test, between two SIPp peers on this
machine: caller ``tests/e2e/sipp/uac.xml`` (INVITE with SDP → 407 → ACK → INVITE with
digest → 100/180 → 200 → ACK → 1 s hold → BYE → 200) and callee ``uas.xml`` (180, 200, waits
for ACK and BYE), the callee registered first with ``register.xml`` from its listening port.
Callers are users ``100001..109999`` (one per call, in turn), the callee is ``100000``; all
passwords are ``"pw" + number``, domain ``bench.cloudpbx.test``.

The caller runs with ``-t un`` (``--sipp-transport``): a UDP socket per call, as that many
phones would have. With one socket for all calls (``u1``) every call would come from one
address and port, and the kernel's SO_REUSEPORT hash would hand all of them to one of the
edge's worker processes while the other idled. Both sides get the same load. The callee is
one phone with one socket.

What each side does (the same work asked of both, one SIPp scenario for both):

* cloudpbx: the edge, started with :data:`CLOUDPBX_CMD` (``--cloudpbx-cmd`` replaces it),
  serving a generated ``bench`` tenant (10,000 extensions, ``media.anchor: false``: no RTP
  flows, none is relayed) as a B2BUA: it challenges the INVITE (407), authenticates the
  caller, finds the callee's binding and bridges two dialogs. Its Redis database
  (``--redis``, default db 14) is cleared of the ``bench`` tenant before and after.
* kamailio: ``bench/kamailio/proxy.cfg``, a transaction-stateful proxy with ``children=2``
  that also challenges the INVITE (407) and checks the digest, then record-routes and
  relays to the registered contact (in-memory usrloc). In-dialog ACK/BYE follow the route
  set. A proxy keeps one dialog where the B2BUA keeps two: that difference is the product's.

Method: the highest sustainable rate with no failure. A step offers ``R`` calls/s for
``--step-seconds`` (``-r R -m R*step``, hold ``--hold-ms``) to a callee started afresh for
that step: a new SIPp UAS on a new port, registered before the step and unregistered after
it, so that what an overloaded step leaves behind (calls still retransmitting, a callee
SIPp stuck on dead calls) cannot fail the next one. A step passes when the caller's SIPp
exits 0, every call succeeded, none failed at either end (a call the caller saw answered
may still have broken at the callee, e.g. a BYE where an ACK was due), and the step ended
within its nominal time plus slack (no backlog building up). Rates double from
``--start-rate`` until a step fails or ``--max-rate`` passes, then ``--refine`` bisection
steps narrow the gap. The reported rate is the highest passing one (0 when none passed);
``failed`` (caller and callee) and ``retrans`` (the caller's) are cloudpbx's SIPp counters
at that rate (at the first step when none passed). When the top rate passes, the figure is
a floor: the generator, not the server, set the limit.

Ends with exactly one line::

    RESULT calls cloudpbx=<n>/s kamailio=<n>/s failed=<n> retrans=<n> ratio=<cloudpbx/kamailio>

``n/a`` marks a side not measured (``--only``, or an edge that did not start). Takes about
a minute per side with the defaults.

Run: ``.venv/bin/python bench/calls.py [--only kamailio|cloudpbx] [--max-rate N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sipbench import (
    BENCH_TENANT,
    FIRST_USER,
    PROXY_CFG,
    SippOptions,
    SippProcess,
    SippResult,
    SipServer,
    SipServerError,
    call_options,
    clear_tenant_keys,
    command_server,
    free_udp_port,
    kamailio,
    make_users,
    register_options,
    result_line,
    run_sipp,
    scenario,
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
from sipbench.stats import table

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("cloudpbx", "kamailio")


@dataclass(frozen=True, slots=True)
class Files:
    """Where one invocation keeps its inputs and SIPp's outputs."""

    workdir: Path
    manifests: Path
    callee_csv: Path
    callers_csv: Path
    callee: str


@dataclass(frozen=True, slots=True)
class Step:
    """One offered rate and what SIPp saw: the caller's run and the callee's."""

    rate: int
    calls: int
    result: SippResult
    callee: SippResult
    passed: bool
    why: str

    @property
    def failed(self) -> int | None:
        """Calls that failed on either side (None without the caller's statistics)."""
        if self.result.stats is None:
            return None
        on_callee = self.callee.stats.failed if self.callee.stats is not None else 0
        return self.result.stats.failed + on_callee


@dataclass(frozen=True, slots=True)
class Outcome:
    """The highest passing rate of one side and the step that showed it."""

    rate: float
    step: Step | None
    steps: list[Step]


def start_target(
    target: str, args: argparse.Namespace, workdir: Path, manifests: Path
) -> SipServer:
    """The server under test, not yet started (use it in a ``with`` block)."""
    if target == "kamailio":
        # tm keeps every transaction ~5 s after it ends (wait timer): at 1,000+ calls/s and
        # ~5 transactions per call, 128 MB of shared memory runs out ("out of mem" -> 500).
        return kamailio(PROXY_CFG, workdir=workdir, shm_mb=512)
    port = free_udp_port()
    command = cloudpbx_command(args.cloudpbx_cmd, port=port, manifests=manifests, redis=args.redis)
    return command_server("cloudpbx", command, port, workdir=workdir, cwd=ROOT)


@contextlib.contextmanager
def callee_phone(
    label: str, server: SipServer, args: argparse.Namespace, files: Files
) -> Iterator[SippProcess]:
    """The callee for one step: registered from a fresh port, answering calls (uas.xml)
    while the block runs, then stopped and unregistered (its binding removed)."""
    port = free_udp_port()
    registered = run_sipp(
        register_options(
            server.address, files.callee_csv, local_port=port, calls=1, name=f"{label}-register"
        ),
        files.workdir,
        timeout_s=30,
    )
    if not registered.ok:
        raise SipServerError("the callee could not register\n" + registered.describe())
    try:
        callee = SippOptions(
            scenario=scenario("uas"),
            local_port=port,
            recv_timeout_ms=args.recv_timeout_ms + args.hold_ms,
            name=label,
        )
        with SippProcess(callee, files.workdir) as uas:
            uas.wait_listening()
            yield uas
    finally:
        removed = run_sipp(
            register_options(
                server.address,
                files.callee_csv,
                scenario=scenario("unregister"),
                local_port=port,
                calls=1,
                name=f"{label}-unregister",
            ),
            files.workdir,
            timeout_s=30,
        )
        if not removed.ok:  # a stale binding would fork later calls to a dead port
            raise SipServerError("the callee could not unregister\n" + removed.describe())


def run_step(
    target: str, rate: int, server: SipServer, args: argparse.Namespace, files: Files
) -> Step:
    """Offers ``rate`` calls/s for ``--step-seconds`` to a fresh callee and judges the step."""
    calls = max(1, math.ceil(rate * args.step_seconds))
    hold_s = args.hold_ms / 1000
    options = call_options(
        "uac",
        server.address,
        files.callers_csv,
        files.callee,
        calls=calls,
        rate=rate,
        # Room for 3 s of backlog before SIPp throttles itself; a lagging server shows up
        # as a step that overruns its time.
        limit=max(50, math.ceil(rate * (hold_s + 3))),
        duration_ms=args.hold_ms,
        recv_timeout_ms=args.recv_timeout_ms,
        timeout_s=int(args.step_seconds + hold_s + 30),
        name=f"calls-{target}-{rate}",
        transport=args.sipp_transport,
    )
    with callee_phone(f"calls-{target}-{rate}-callee", server, args, files) as uas:
        result = run_sipp(options, files.workdir, timeout_s=args.step_seconds + hold_s + 40)
        callee = uas.stop()
    if callee.stats is not None:
        print(f"  {target} {rate:>5}/s callee: {callee.stats.summary()}")
    passed, why = judge(
        result, callee, calls, calls / rate + hold_s + max(1.5, 0.5 * args.step_seconds)
    )
    return Step(rate, calls, result, callee, passed, why)


def judge(result: SippResult, callee: SippResult, calls: int, budget_s: float) -> tuple[bool, str]:
    """A step passes when every call succeeded on both sides, in time (no backlog)."""
    stats = result.stats
    if stats is None:
        return False, "no statistics"
    if stats.failed or not result.ok:
        return False, f"{stats.failed} failed (exit {result.returncode})"
    if stats.successful != calls:
        return False, f"{stats.successful}/{calls} completed"
    if callee.stats is not None and callee.stats.failed:
        # The caller can still count such a call a success (the edge answered it) while
        # the callee saw it break, e.g. a BYE where an ACK was due.
        return False, f"{callee.stats.failed} failed at the callee"
    if result.wall_s > budget_s:
        return False, f"took {result.wall_s:.1f}s > {budget_s:.1f}s"
    return True, "ok"


def search(target: str, server: SipServer, args: argparse.Namespace, files: Files) -> Outcome:
    """Doubling, then bisection: the highest rate whose step passes."""
    steps: list[Step] = []

    def attempt(rate: int) -> Step:
        step = run_step(target, rate, server, args, files)
        steps.append(step)
        stats = step.result.stats
        shown = stats.summary() if stats else "no statistics"
        print(f"  {target} {rate:>5}/s: {'pass' if step.passed else 'FAIL'} ({step.why}) {shown}")
        # Let the last calls' retransmission timers settle; longer after an overload.
        time.sleep(0.5 if step.passed else args.settle_s)
        return step

    best: Step | None = None
    failed_at: int | None = None
    rate = args.start_rate
    while rate <= args.max_rate:
        step = attempt(rate)
        if not step.passed:
            failed_at = rate
            break
        best = step
        rate *= 2
    low = best.rate if best else 0
    if failed_at is not None:
        high = failed_at
        for _ in range(args.refine):
            middle = (low + high) // 2
            if middle <= low or middle >= high or middle < 1:
                break
            step = attempt(middle)
            if step.passed:
                best, low = step, middle
            else:
                high = middle
    return Outcome(float(best.rate) if best else 0.0, best, steps)


def measure(target: str, args: argparse.Namespace, files: Files) -> Outcome:
    """Starts ``target``, runs the rate search (a fresh callee per step), stops it."""
    clear = target == "cloudpbx" and args.redis.startswith("redis")
    if clear:
        clear_tenant_keys(args.redis, BENCH_TENANT)
    try:
        with start_target(target, args, files.workdir, files.manifests) as server:
            outcome = search(target, server, args, files)
            if not server.alive():
                raise SipServerError(f"{target} died during the run (log: {server.log})")
            return outcome
    finally:
        if clear:
            clear_tenant_keys(args.redis, BENCH_TENANT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--only", choices=TARGETS, help="measure one side only")
    parser.add_argument("--users", type=int, default=10_000, help="tenant size (10000)")
    parser.add_argument("--first-user", type=int, default=FIRST_USER, help="the callee")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call hold time (1000)")
    parser.add_argument("--step-seconds", type=float, default=3.0, help="per rate step (3)")
    parser.add_argument("--start-rate", type=int, default=50, help="first step, calls/s (50)")
    # Kamailio passes 1,600/s here: a lower cap would report its floor, not its limit.
    parser.add_argument("--max-rate", type=int, default=3200, help="highest step (3200)")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps (2)")
    parser.add_argument("--recv-timeout-ms", type=int, default=5_000)
    parser.add_argument("--cloudpbx-cmd", default=CLOUDPBX_CMD, help="edge command template")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="the edge's Redis (db 14)")
    parser.add_argument(
        "--sipp-transport",
        choices=("un", "u1"),
        default="un",
        help="caller's SIPp -t: a UDP socket per call (un, default) or one for all (u1)",
    )
    parser.add_argument(
        "--settle-s", type=float, default=3.0, help="pause after a failed step, s (3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.users < 2 or args.start_rate < 1 or args.max_rate < args.start_rate:
        parser.error("need --users >= 2 and 1 <= --start-rate <= --max-rate")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measures the chosen sides, prints every step and the RESULT line."""
    args = parse_args(argv)
    targets = [args.only] if args.only else list(TARGETS)
    workdir = Path(tempfile.mkdtemp(prefix="cloudpbx-bench-calls-"))
    users = make_users(args.users, first=args.first_user)
    files = Files(
        workdir=workdir,
        manifests=workdir / "manifests",
        callee_csv=write_users_csv(workdir / "callee.csv", users[:1]),
        callers_csv=write_users_csv(workdir / "callers.csv", users[1:]),
        callee=users[0].number,
    )
    if "cloudpbx" in targets:
        check_manifest(args.users, args.first_user)
        write_tenant_manifest(files.manifests / "bench.yaml", users)
        print(f"cloudpbx: measuring {prepare_build(args.cloudpbx_cmd)}")
    print(
        f"calls: {users[0].number} called by {len(users) - 1} users, hold {args.hold_ms} ms,"
        f" {args.step_seconds:g} s per step from {args.start_rate}/s to at most"
        f" {args.max_rate}/s; work folder {workdir}"
    )
    outcomes: dict[str, Outcome] = {}
    healthy = True
    for target in targets:
        try:
            outcomes[target] = measure(target, args, files)
        except (SipServerError, OSError, RuntimeError) as error:
            print(f"{target}: not measured: {error}", file=sys.stderr)
            healthy = False
    rows = []
    for target, outcome in outcomes.items():
        for step in outcome.steps:
            stats = step.result.stats
            rows.append(
                [
                    target,
                    f"{step.rate}/s",
                    step.calls,
                    stats.successful if stats else "-",
                    step.failed if stats else "-",
                    stats.retransmissions if stats else "-",
                    f"{stats.response_time_ms:.0f}" if stats else "-",
                    f"{step.result.wall_s:.1f}",
                    "pass" if step.passed else step.why,
                ]
            )
        top = outcome.rate >= args.max_rate
        note = " (the top step passed: a floor, generator-bound)" if top else ""
        print(f"{target}: highest sustained rate {outcome.rate:.0f} calls/s{note}")
    if rows:
        headers = ["side", "offered", "calls", "ok", "failed", "retrans", "rt1 ms", "s", "step"]
        print(table(rows, headers))
    edge = outcomes.get("cloudpbx")
    edge_step = (edge.step or (edge.steps[0] if edge.steps else None)) if edge else None
    edge_stats = edge_step.result.stats if edge_step else None
    print(
        result_line(
            "calls",
            edge.rate if edge else None,
            outcomes["kamailio"].rate if "kamailio" in outcomes else None,
            failed=edge_step.failed if edge_step else None,
            retrans=edge_stats.retransmissions if edge_stats else None,
        )
    )
    if not args.keep and healthy:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
