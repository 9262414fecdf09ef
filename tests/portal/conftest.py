"""Fixtures for the portal: billing stores reached by URL, as the portal's commands reach
them, one a SQLite file and one a schema of its own on a real Postgres server.

``store_url`` runs a test once per implementation and hands it the URL of a migrated,
empty store. The Postgres side connects to ``CLOUDPBX_TEST_POSTGRES_DSN`` (the database
``./pbx test`` creates), puts each test in a fresh schema (``?search_path=`` on the URL,
which asyncpg passes on as a server setting) and drops it afterwards. It FAILS, never
skips, when the server cannot be reached. ``known_cdrs`` fills the store through the
billing store's own API (authorize, settle) with the CDRs whose CSV ``KNOWN_CSV`` is.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from contracts.billing.rating import Rate
from contracts.billing.store import BillingStore, Disposition, LegEnd
from portal.stores import open_billing_store

POSTGRES_DSN = os.environ.get(
    "CLOUDPBX_TEST_POSTGRES_DSN", "postgresql://cloudpbx:cloudpbx@127.0.0.1:5432/cloudpbx_test"
)

NOV_1_MS = 1_793_491_200_000  # 2026-11-01T00:00:00.000Z
DEC_1_MS = 1_796_083_200_000  # 2026-12-01T00:00:00.000Z
T0_MS = 1_793_525_400_250  # 2026-11-01T09:30:00.250Z
#: 1.00 a minute by the second, connect fee 0.05; a name that CSV must quote.
MOBILE = Rate("4917", 1_000_000, connect_fee_micros=50_000, initial_s=1, increment_s=1,
              name='Germany "mobile", D2')  # fmt: skip
#: 0.60 a minute in whole minutes, no connect fee.
BERLIN = Rate("4930", 600_000, initial_s=60, increment_s=60, name="Berlin")

HEADER = (
    "call_id,leg,account,caller,callee,disposition,setup_utc,answered_utc,ended_utc,"
    "duration_ms,billable_s,currency,amount,rate_prefix,rate_name,rate_per_minute,"
    "rate_connect_fee,rate_initial_s,rate_increment_s\r\n"
)
#: November 2026 of tenant acme, as :func:`fill_known` leaves it, in end order: a call
#: refused before rating (ended at the first instant of the window, so in it) whose
#: caller id is a formula, an unanswered call (amount 0), an answered call by the second
#: (61.5 s billed as 62 s: 1.033333... rounded up to a micro, plus the fee), and an
#: answered call by the minute ending in the window's last millisecond. The busy call
#: that ended at 2026-12-01T00:00:00.000Z is outside it.
KNOWN_CSV = HEADER + (
    'c0,a,alice,"\'=HYPERLINK(""http://evil.example"")",1001,refused,'
    "2026-10-31T23:59:57.000Z,,2026-11-01T00:00:00.000Z,0,0,EUR,0.000000,,,,,,\r\n"
    "c2,a,alice,+4930111,1002,no answer,"
    "2026-11-01T09:30:10.250Z,,2026-11-01T09:30:40.250Z,0,0,EUR,0.000000,"
    "4930,Berlin,0.600000,0.000000,60,60\r\n"
    "c1,a,alice,+4930111,+4917222,answered,"
    "2026-11-01T09:30:00.250Z,2026-11-01T09:30:02.250Z,2026-11-01T09:31:03.750Z,61500,62,"
    'EUR,1.083334,4917,"Germany ""mobile"", D2",1.000000,0.050000,1,1\r\n'
    "c4,b,alice,+4930111,+4930999,answered,"
    "2026-11-30T23:59:25.000Z,2026-11-30T23:59:29.999Z,2026-11-30T23:59:59.999Z,30000,60,"
    "EUR,0.600000,4930,Berlin,0.600000,0.000000,60,60\r\n"
)


#: (setup, answered, end) in epoch ms; answered is None when the leg never was.
Times = tuple[int, int | None, int]
#: call id, leg, caller, callee, disposition, times, rate.
KNOWN_LEGS: list[tuple[str, str, str, str, Disposition, Times, Rate | None]] = [
    ("c0", "a", '=HYPERLINK("http://evil.example")', "1001", Disposition.REFUSED,
     (NOV_1_MS - 3_000, None, NOV_1_MS), None),
    ("c1", "a", "+4930111", "+4917222", Disposition.ANSWERED,
     (T0_MS, T0_MS + 2_000, T0_MS + 63_500), MOBILE),
    ("c2", "a", "+4930111", "1002", Disposition.NO_ANSWER,
     (T0_MS + 10_000, None, T0_MS + 40_000), BERLIN),
    ("c4", "b", "+4930111", "+4930999", Disposition.ANSWERED,
     (DEC_1_MS - 35_000, DEC_1_MS - 30_001, DEC_1_MS - 1), BERLIN),
    ("c3", "a", "+4930111", "1003", Disposition.BUSY, (DEC_1_MS - 4_000, None, DEC_1_MS), None),
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoreUrl:
    kind: str
    url: str


async def fill_known(url: str) -> None:
    """Tenant acme (EUR) with account alice and the CDRs of :data:`KNOWN_CSV`, written
    the way the edge writes them: authorize at call start, settle at the end."""
    store = await open_billing_store(url)
    try:
        await store.upsert_tenant("acme", plan="prepaid", currency="EUR")
        await store.create_account("acme", "alice")
        await store.top_up("acme", "alice", 10_000_000, reference="pay-1", now_ms=NOV_1_MS - 10)
        for call_id, leg, caller, callee, disposition, times, rate in KNOWN_LEGS:
            await _leg(store, call_id, leg, caller, callee, disposition, *times, rate=rate)
    finally:
        await store.close()


async def _leg(
    store: BillingStore, call_id: str, leg: str, caller: str, callee: str,
    disposition: Disposition, setup_ms: int, answered_ms: int | None, end_ms: int,
    *, rate: Rate | None,
) -> None:  # fmt: skip
    if rate is not None:
        await store.authorize(
            "acme", "alice", call_id, leg, rate=rate, want_s=120, now_ms=setup_ms,
            caller=caller, callee=callee,
        )  # fmt: skip
    end = LegEnd(
        "acme", "alice", call_id, leg, caller, callee, disposition,
        setup_ms=setup_ms, answered_ms=answered_ms, end_ms=end_ms, rate=rate,
    )  # fmt: skip
    await store.settle(end, now_ms=end_ms)


async def _admin(sql: str) -> None:
    try:
        connection = await asyncpg.connect(POSTGRES_DSN)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"Postgres at {POSTGRES_DSN} is unreachable ({type(error).__name__}: {error}); "
            "start it (./pbx test does) or set CLOUDPBX_TEST_POSTGRES_DSN"
        )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUrl]:
    """The URL of a migrated, empty billing store of each kind in turn."""
    if request.param == "sqlite":
        path = tmp_path / "billing.sqlite3"
        path.touch()
        made = StoreUrl("sqlite", f"sqlite:///{path}")
    else:
        schema = f"portal_test_{uuid.uuid4().hex}"
        await _admin(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in POSTGRES_DSN else "?"
        made = StoreUrl("postgres", f"{POSTGRES_DSN}{separator}search_path={schema}")
    try:
        store = await open_billing_store(made.url)
        try:
            await store.migrate()
        finally:
            await store.close()
        yield made
    finally:
        if made.kind == "postgres":
            await _admin(f"DROP SCHEMA {made.url.rpartition('=')[2]} CASCADE")


@pytest_asyncio.fixture
async def known_cdrs(store_url: StoreUrl) -> StoreUrl:
    """``store_url`` filled by :func:`fill_known`."""
    await fill_known(store_url.url)
    return store_url
