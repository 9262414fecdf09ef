"""Prepaid billing on real Postgres: authorize-and-settle pairs per second, and p99.

Creates a throwaway database on the server of ``CLOUDPBX_TEST_POSTGRES_DSN`` (default:
the one ``./pbx test`` uses), migrates it, loads ``--accounts`` accounts with
``--history`` CDRs each (a live CDR table is never empty, and the planner sizes its plans
by it), and runs ``--calls`` concurrent calls per account through the public
:class:`~contracts.billing.store.BillingStore` interface of
:class:`~contracts.stores.postgres.PostgresBillingStore`. Each call is an ``authorize`` of
its leg's first slice; once every call is authorized (so each account has all its calls
up at once, each holding money), each granted call is settled, in a shuffled order,
answered for exactly that slice, so it is charged what it reserved. Requests of all
accounts are interleaved, at most ``--inflight`` at once. A *pair* is one granted
authorize and its settle; its latency is the two requests' (the time the call is held is
not counted).

Double grants are measured, not assumed: each account is funded with exactly k first
increments, k drawn between 90% of ``--calls`` and ``--calls``, so some of its calls must
be refused. Any grant beyond k is a double grant. At the end every account must show
balance 0, held 0, no reservation left, and a ledger summing to its balance.

The store is the one the edge runs, with its defaults: a pool of ``--pool`` connections,
and requests that queue while ``--batches`` batches are under way sent together as one
statement (``contracts.stores.batching``). The client runs on uvloop, as the edge does.
CPU per pair is the whole machine's busy time (/proc/stat: this process and Postgres)
over the pairs, and this process's alone.

The yardstick, run in the same invocation on the same server: pgbench's built-in
simple-update transaction (16 clients, ``--yardstick-s`` seconds), the standard measure
of what this Postgres commits per second right now. The machine is shared and its speed
varies between runs; read the rate against it.

A run drops the databases earlier runs left behind (killed by SIGKILL); SIGTERM and
SIGINT stop it with its own database dropped. Run one at a time.

Run: ``.venv/bin/python bench/billing.py [--accounts N] [--calls M] [--inflight C]``.
Prints ``YARDSTICK pgbench simple-update tps=<n>``, then the run, ending with
``RESULT billing rate=<pairs/s> p99_ms=<n> double_grants=<n>``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop

from contracts.billing.rating import MICROS_PER_UNIT, Rate
from contracts.billing.store import Disposition, Grant, LegEnd
from contracts.stores.postgres import PostgresBillingStore

POSTGRES_DSN = os.environ.get(
    "CLOUDPBX_TEST_POSTGRES_DSN", "postgresql://cloudpbx:cloudpbx@127.0.0.1:5432/cloudpbx_test"
)
CENTS = MICROS_PER_UNIT // 100
#: 0.60 a minute in 60/60 steps, connect fee 0.10: a first increment holds 0.70.
RATE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)
FIRST_MICROS = 70 * CENTS
SETUP_MS = 1_000


@dataclass
class Tally:
    grants: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    refusals: int = 0


def database_dsn(dsn: str, database: str) -> str:
    """``dsn`` pointed at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass(frozen=True)
class Up:
    """A granted call, waiting to be settled."""

    account: str
    call_id: str
    grant: Grant
    authorized_s: float


async def authorize(
    store: PostgresBillingStore, account: str, call_id: str, gate: asyncio.Semaphore
) -> Up | None:
    async with gate:
        started = time.perf_counter()
        outcome = await store.authorize(
            "bench", account, call_id, "a", rate=RATE, want_s=60, now_ms=SETUP_MS
        )
        took_s = time.perf_counter() - started
    return Up(account, call_id, outcome, took_s) if isinstance(outcome, Grant) else None


async def settle(
    store: PostgresBillingStore, up: Up, tally: Tally, gate: asyncio.Semaphore
) -> None:
    """Answered for exactly the slice granted: charged what it reserved."""
    answered_ms = SETUP_MS + 10
    end = LegEnd(
        "bench", up.account, up.call_id, "a", "1001", "4930123", Disposition.ANSWERED,
        SETUP_MS, answered_ms, answered_ms + up.grant.granted_s * 1_000,
    )  # fmt: skip
    async with gate:
        started = time.perf_counter()
        await store.settle(end, now_ms=end.end_ms)
        tally.latencies_s.append(up.authorized_s + time.perf_counter() - started)
    tally.grants[up.account] = tally.grants.get(up.account, 0) + 1


async def calls(
    store: PostgresBillingStore, per_account: int, accounts: list[str], inflight: int
) -> Tally:
    """Every account's calls up at once, then all of them ended, in a shuffled order (calls
    end when they end, not in the order they began); requests of all accounts
    interleaved, at most ``inflight`` to the store at a time."""
    gate, tally = asyncio.Semaphore(inflight), Tally()
    outcomes = await asyncio.gather(
        *(
            authorize(store, account, f"call-{account}-{n}", gate)
            for n in range(per_account)
            for account in accounts
        )
    )
    ups = [up for up in outcomes if up is not None]
    tally.refusals = len(outcomes) - len(ups)
    random.Random(per_account).shuffle(ups)
    await asyncio.gather(*(settle(store, up, tally, gate) for up in ups))
    return tally


async def load(store: PostgresBillingStore, funded: dict[str, int]) -> None:
    await store.migrate()
    await store.upsert_tenant("bench", plan="prepaid", currency="EUR")
    for account, k in funded.items():
        await store.create_account("bench", account)
        await store.top_up("bench", account, k * FIRST_MICROS, reference="bench", now_ms=0)


async def warm_up(store: PostgresBillingStore, inflight: int) -> None:
    """Opens every pool connection and prepares its statements, on accounts of its own."""
    warm = {f"warm-{n}": 10 for n in range(10)}
    await load(store, warm)
    await calls(store, 10, list(warm), inflight)


async def audit(store: PostgresBillingStore, funded: dict[str, int], tally: Tally) -> list[str]:
    """What is wrong with the accounts after the run (nothing, when all is well)."""
    wrong: list[str] = []
    for account, k in funded.items():
        granted = tally.grants.get(account, 0)
        if granted != k:
            wrong.append(f"{account}: {granted} grants for {k} funded")
        balance = await store.balance("bench", account)
        ledger = await store.ledger("bench", account)
        held = balance.account.held_micros
        if balance.account.balance_micros < 0 or held < 0 or balance.reservations:
            wrong.append(f"{account}: balance {balance.account.balance_micros} held {held}")
        if sum(entry.amount_micros for entry in ledger) != balance.account.balance_micros:
            wrong.append(f"{account}: ledger does not sum to its balance")
    return wrong


async def seed_history(dsn: str, funded: dict[str, int], per_account: int) -> None:
    """Yesterday's CDRs, ``per_account`` for each account, then fresh statistics.

    A running platform's CDR table is never empty, and the planner sizes its plans by
    it: on an empty, analyzed table it looks a leg's CDR up by scanning the table, a plan
    the billing functions then keep (autovacuum, which would re-analyze as the table
    grows, may be off, as it is on this machine), so every call would cost more than the
    last. Loaded in one statement, outside the measured part."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO cdrs (tenant, call_id, leg, account, caller, callee, disposition, "
            "setup_ms, answered_ms, end_ms, billable_s, amount_micros, settled_ms) "
            "SELECT 'bench', 'old-' || a || '-' || n, 'a', a, '1001', '4930123', 'answered', "
            "0, 10, 60010, 60, 0, 60010 FROM unnest($1::text[]) AS a, "
            "generate_series(1, $2) AS n",
            list(funded),
            per_account,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def busy_s() -> float:
    """The machine's busy CPU time so far (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def run(dsn: str, args: argparse.Namespace) -> str:
    """The run's report lines, RESULT last."""
    chance = random.Random(2026)
    per_account = args.calls
    funded = {
        f"acct-{n}": chance.randint(per_account * 9 // 10, per_account)
        for n in range(args.accounts)
    }
    store = await PostgresBillingStore.connect(dsn, size=args.pool, batches=args.batches)
    try:
        await load(store, funded)
        await seed_history(dsn, funded, args.history)
        await warm_up(store, args.inflight)
        busy, cpu, started = busy_s(), time.process_time(), time.perf_counter()
        tally = await calls(store, per_account, list(funded), args.inflight)
        elapsed = time.perf_counter() - started
        busy, cpu = busy_s() - busy, time.process_time() - cpu
        wrong = await audit(store, funded, tally)
    finally:
        await store.close()
    pairs = len(tally.latencies_s)
    latencies = sorted(tally.latencies_s)
    p99_ms = latencies[int(0.99 * (pairs - 1))] * 1_000 if pairs else 0.0
    double = sum(max(0, n - funded[a]) for a, n in tally.grants.items())
    return "\n".join(
        [
            *(f"WRONG {line}" for line in wrong[:10]),
            f"pairs={pairs} refusals={tally.refusals} elapsed_s={elapsed:.1f} "
            f"cpu_us_per_pair={busy / max(pairs, 1) * 1e6:.0f} "
            f"client_cpu_us_per_pair={cpu / max(pairs, 1) * 1e6:.0f} problems={len(wrong)}",
            f"RESULT billing rate={pairs / elapsed:.0f} p99_ms={p99_ms:.0f} double_grants={double}",
        ]
    )


def pgbench() -> str | None:
    """The server's pgbench (Debian keeps it out of PATH), or None."""
    found = shutil.which("pgbench")
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), key=lambda p: p.parts)
    return str(versions[-1]) if versions else None


async def yardstick(dsn: str, seconds: int) -> str:
    """pgbench's simple-update transaction (TPC-B without the branch and teller updates: a
    row update, a read, an insert, durable commit) on the same server, now: what this
    machine's Postgres does per second, to read the rate against (the machine is shared
    and its speed varies from run to run)."""
    binary = pgbench()
    if binary is None:
        return "YARDSTICK pgbench not found"
    parts = urlsplit(dsn)
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    where = [
        "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
        "-U", parts.username or "postgres",
    ]  # fmt: skip
    database = parts.path.lstrip("/")

    async def pgbench_run(*argv: str) -> str:
        done = await asyncio.create_subprocess_exec(
            binary, *where, *argv, database, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await done.communicate()
        if done.returncode != 0:
            raise RuntimeError(f"pgbench {' '.join(argv)}: {output.decode()[-400:]}")
        return output.decode()

    await pgbench_run("-i", "-q", "-s", "10")
    output = await pgbench_run("-N", "-M", "prepared", "-c", "16", "-j", "2", "-T", str(seconds))
    tps = next(
        line.split("=")[1].split()[0] for line in output.splitlines() if line.startswith("tps")
    )
    return f"YARDSTICK pgbench simple-update tps={float(tps):.0f} (16 clients, {seconds} s)"


async def main_async(args: argparse.Namespace) -> None:
    admin = await asyncpg.connect(args.dsn)
    try:
        # A run killed before its clean-up (SIGKILL) leaves its database behind.
        for (stale,) in await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cloudpbx\\_bench\\_%'"
        ):
            await admin.execute(f'DROP DATABASE "{stale}" WITH (FORCE)')
        name = f"cloudpbx_bench_{uuid.uuid4().hex[:12]}"
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            scratch = database_dsn(args.dsn, name)
            report = await run(scratch, args)
            if args.yardstick_s:
                print(await yardstick(scratch, args.yardstick_s))
            print(report)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def until_terminated(args: argparse.Namespace) -> None:
    """main_async, cancelled (so its clean-up runs) on SIGTERM or SIGINT."""
    main = asyncio.ensure_future(main_async(args))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)
    await main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=POSTGRES_DSN)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls per account")
    parser.add_argument("--inflight", type=int, default=256, help="requests at once, in all")
    parser.add_argument("--pool", type=int, default=16, help="Postgres connections")
    parser.add_argument("--batches", type=int, default=4, help="batches of a step at once")
    parser.add_argument(
        "--history", type=int, default=100, help="CDRs per account already in the table"
    )
    parser.add_argument(
        "--yardstick-s", type=int, default=10, help="pgbench seconds (0: no yardstick)"
    )
    # The edge runs on uvloop (sipedge.cli); so does the client here.
    uvloop.run(until_terminated(parser.parse_args()))


if __name__ == "__main__":
    main()
