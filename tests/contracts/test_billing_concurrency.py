"""Concurrent authorizations against one account (issue 5): an account whose balance
covers exactly k first increments (connect fee included) gets exactly k grants out of
many at once, and its balance less its reservations never goes below zero. On Postgres
2,000 at once through a pool of 20 connections (real row locks); on SQLite 200 (it
serializes writers). k is drawn from a seeded random, three times."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

import pytest

from contracts.billing.rating import MICROS_PER_UNIT, Rate
from contracts.billing.store import Disposition, Grant, LedgerKind, LegEnd, Refusal, RefusalReason
from contracts.stores.sql import SqlBillingStore

from .conftest import Stores

pytestmark = pytest.mark.asyncio

CENTS = MICROS_PER_UNIT // 100
#: 0.60 a minute in 60/60 steps, connect fee 0.10: a first increment holds 0.70.
RATE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)
FIRST_MICROS = 70 * CENTS


async def exactly_k_granted(store: SqlBillingStore, calls: int, seed: int) -> None:
    await store.upsert_tenant("acme", plan="prepaid", currency="EUR")
    chance = random.Random(seed)
    for attempt in range(3):
        k = chance.randint(0, calls)
        account = f"a{attempt}"
        await store.create_account("acme", account)
        if k:
            await store.top_up("acme", account, k * FIRST_MICROS, reference="p", now_ms=0)
        outcomes = await asyncio.gather(
            *(
                store.authorize(
                    "acme", account, f"call-{attempt}-{n}", "a", rate=RATE, want_s=60, now_ms=1_000
                )
                for n in range(calls)
            )
        )
        grants = [o for o in outcomes if isinstance(o, Grant)]
        refusals = [o for o in outcomes if isinstance(o, Refusal)]
        assert len(grants) == k, f"k={k}"
        assert {r.reason for r in refusals} <= {RefusalReason.INSUFFICIENT_BALANCE}
        assert all(g.reserved_micros == FIRST_MICROS for g in grants)
        balance = await store.balance("acme", account)
        assert balance.account.balance_micros == k * FIRST_MICROS
        assert balance.account.held_micros == sum(r.reserved_micros for r in balance.reservations)
        assert balance.account.available_micros == 0
        assert len(balance.reservations) == k


async def test_2000_authorizations_at_once_on_postgres_grant_exactly_k(postgres: Stores) -> None:
    store = await postgres.open(pool_size=20)
    await store.migrate()
    await exactly_k_granted(store, 2_000, seed=5)


async def test_200_authorizations_at_once_on_sqlite_grant_exactly_k(sqlite: Stores) -> None:
    store = await sqlite.open()
    await store.migrate()
    await exactly_k_granted(store, 200, seed=7)


async def one_legs_events(store: SqlBillingStore, call_id: str, chance: random.Random) -> None:
    """A leg's events as a flaky edge sends them: extensions, then settles repeated with
    different ends, some of them before a late extension."""
    answered_ms = 10_000 + chance.randrange(5_000)
    events: list[Awaitable[object]] = [
        store.authorize("acme", "payer", call_id, "a", rate=RATE, want_s=60, now_ms=10_000)
    ]
    for n in range(chance.randrange(3)):
        events.append(
            store.authorize(
                "acme", "payer", call_id, "a", rate=RATE, want_s=60, now_ms=answered_ms + n,
                answered_ms=answered_ms,
            )
        )  # fmt: skip
    for _ in range(1 + chance.randrange(3)):
        end_ms = answered_ms + chance.randrange(200_000)
        end = LegEnd(
            "acme", "payer", call_id, "a", "", "", Disposition.ANSWERED, 10_000, answered_ms, end_ms
        )  # fmt: skip
        events.insert(1 + chance.randrange(len(events)), store.settle(end, now_ms=end_ms))
    for event in events:
        await event


@pytest.mark.parametrize("seed", [11, 12])
async def test_duplicate_and_out_of_order_events_never_charge_twice(
    billing: Stores, seed: int
) -> None:
    store, recoverer = await billing.open(pool_size=10), await billing.open()
    await store.migrate()
    chance = random.Random(seed)
    top_up = chance.randrange(20, 80) * FIRST_MICROS
    await store.upsert_tenant("acme", plan="prepaid", currency="EUR")
    await store.create_account("acme", "payer")
    await store.top_up("acme", "payer", top_up, reference="p", now_ms=0)
    calls = [f"call-{n}" for n in range(100)]
    await asyncio.gather(
        *(one_legs_events(store, call_id, random.Random(chance.random())) for call_id in calls),
        store.recover(now_ms=10**9, grace_s=30),
        recoverer.recover(now_ms=10**9, grace_s=30),
    )
    await store.recover(now_ms=10**9, grace_s=30)  # whatever the edge left open

    cdrs = await store.cdrs("acme", since_ms=0, until_ms=10**10)
    assert sorted(cdr.call_id for cdr in cdrs) == sorted(calls)  # one CDR per leg
    charges = [e for e in await store.ledger("acme", "payer") if e.kind is LedgerKind.CHARGE]
    assert sorted(-e.amount_micros for e in charges) == sorted(
        cdr.amount_micros for cdr in cdrs if cdr.amount_micros
    )
    account = (await store.balance("acme", "payer")).account
    assert account.held_micros == 0
    assert account.balance_micros == top_up - sum(cdr.amount_micros for cdr in cdrs) >= 0
