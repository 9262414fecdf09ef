"""The Postgres billing functions (billing migration 4) against the Python rules that
the SQLite store runs, on real Postgres: their arithmetic agrees on random rates and
durations; requests batched into one statement keep their own outcomes (an unknown
account or a leg held by another account fails that request, not its batch); and batches
that lock the same accounts in different orders never deadlock."""

from __future__ import annotations

import asyncio
import random

import pytest

from contracts.billing import credit
from contracts.billing.rating import MICROS_PER_UNIT, Rate
from contracts.billing.store import (
    Disposition,
    Grant,
    InvalidRequest,
    LegEnd,
    Refusal,
    UnknownAccount,
)
from contracts.stores.postgres import PostgresBillingStore
from contracts.stores.sql import SqlBillingStore

from .conftest import Stores

pytestmark = pytest.mark.asyncio

CENTS = MICROS_PER_UNIT // 100
RATE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)


def random_rate(chance: random.Random) -> Rate:
    increments = chance.choice([(60, 60), (30, 6), (1, 1), (60, 1), (6, 6), (45, 15)])
    return Rate(
        str(chance.randrange(1, 999)),
        chance.choice([0, 1, 7, 59, 60, 61, 999, 12 * CENTS, 3 * MICROS_PER_UNIT]),
        connect_fee_micros=chance.choice([0, 0, 1, 5 * CENTS, 99 * CENTS]),
        initial_s=increments[0],
        increment_s=increments[1],
    )


async def postgres_store(postgres: Stores, *, pool_size: int = 4) -> PostgresBillingStore:
    store = await postgres.open(pool_size=pool_size)
    assert isinstance(store, PostgresBillingStore)
    await store.migrate()
    return store


async def test_the_functions_arithmetic_agrees_with_the_python_rules(postgres: Stores) -> None:
    store = await postgres_store(postgres)
    chance = random.Random(2026)
    cases = []
    for _ in range(400):
        rate = random_rate(chance)
        duration_ms = chance.choice(
            [0, 1, 999, 1000, 59_900, 60_000, 60_001, chance.randrange(10**7)]
        )
        held_s = chance.choice([0, rate.initial_s, chance.randrange(3_600)])
        budget = chance.choice([0, 1, rate.connect_fee_micros, chance.randrange(10**9)])
        want_s = chance.choice([1, 30, 60, 600])
        cases.append((rate, duration_ms, held_s, budget, want_s))
    async with store.database.transaction() as tx:
        for rate, duration_ms, held_s, budget, want_s in cases:
            fields = (
                rate.per_minute_micros,
                rate.connect_fee_micros,
                rate.initial_s,
                rate.increment_s,
            )
            row = await tx.fetchrow(
                "SELECT cloudpbx_billed_s($3, $4, $5), cloudpbx_cost_micros($1, $2, $3, $4, $5), "
                "cloudpbx_allowance_s($1, $2, $3, $4, $6, $7, $8)",
                *fields,
                duration_ms,
                held_s,
                budget,
                want_s,
            )
            expected = (
                rate.billed_s(duration_ms),
                rate.cost_micros(duration_ms),
                credit.allowance_s(rate, held_s=held_s, budget_micros=budget, want_s=want_s),
            )
            assert row == expected, (rate, duration_ms, held_s, budget, want_s)


async def test_one_bad_request_in_a_batch_fails_alone(postgres: Stores) -> None:
    store = await postgres_store(postgres, pool_size=1)  # one connection: the rest queue
    await store.upsert_tenant("acme", plan="prepaid", currency="EUR")
    for account in ("alice", "bob"):
        await store.create_account("acme", account)
        await store.top_up("acme", account, 10 * MICROS_PER_UNIT, reference="p", now_ms=0)
    await store.authorize("acme", "alice", "held", "a", rate=RATE, want_s=60, now_ms=1_000)

    def authorize(account: str, call_id: str) -> asyncio.Future[Grant | Refusal]:
        return asyncio.ensure_future(
            store.authorize("acme", account, call_id, "a", rate=RATE, want_s=60, now_ms=2_000)
        )

    outcomes = await asyncio.gather(
        authorize("alice", "c1"),  # goes alone; the next four queue into one batch
        authorize("bob", "c2"),
        authorize("nobody", "c3"),
        authorize("bob", "held"),  # alice's leg
        authorize("alice", "c4"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Grant)
    assert isinstance(outcomes[1], Grant)
    assert isinstance(outcomes[2], UnknownAccount)
    assert isinstance(outcomes[3], InvalidRequest)
    assert "held by account 'alice'" in str(outcomes[3])
    assert isinstance(outcomes[4], Grant)
    alice = await store.balance("acme", "alice")
    assert sorted(r.call_id for r in alice.reservations) == ["c1", "c4", "held"]
    bob = await store.balance("acme", "bob")
    assert [r.call_id for r in bob.reservations] == ["c2"]

    ends = [
        LegEnd("acme", "alice", "c1", "a", "", "", Disposition.ANSWERED, 2_000, 2_000, 32_000),
        LegEnd("acme", "nobody", "c3", "a", "", "", Disposition.NO_ANSWER, 2_000, None, 9_000),
        LegEnd("acme", "bob", "held", "a", "", "", Disposition.ANSWERED, 1_000, 1_000, 5_000),
        LegEnd(
            "acme",
            "alice",
            "held",
            "a",
            "",
            "",
            Disposition.ANSWERED,
            1_000,
            1_000,
            5_000,
            invoiced=True,
        ),
        LegEnd("acme", "bob", "c2", "a", "", "", Disposition.ANSWERED, 2_000, 2_000, 3_000),
    ]
    settled = await asyncio.gather(
        *(store.settle(end, now_ms=40_000) for end in ends), return_exceptions=True
    )
    assert not isinstance(settled[0], BaseException)
    assert settled[0].amount_micros == 70 * CENTS
    assert isinstance(settled[1], UnknownAccount)
    assert isinstance(settled[2], InvalidRequest)
    assert "held by account 'alice'" in str(settled[2])
    assert isinstance(settled[3], InvalidRequest)
    assert "holds prepaid money" in str(settled[3])
    assert not isinstance(settled[4], BaseException)
    assert settled[4].amount_micros == 70 * CENTS
    # The refused settles changed nothing: alice's "held" leg is still open.
    alice = await store.balance("acme", "alice")
    assert sorted(r.call_id for r in alice.reservations) == ["c4", "held"]
    assert alice.account.balance_micros == 10 * MICROS_PER_UNIT - 70 * CENTS


async def test_batches_locking_shared_accounts_in_any_order_do_not_deadlock(
    postgres: Stores,
) -> None:
    # Two stores, as two edges, each with two batches at once on a small pool, all on
    # the same eight accounts in shuffled orders.
    stores: list[SqlBillingStore] = [await postgres_store(postgres, pool_size=2) for _ in range(2)]
    first = stores[0]
    await first.upsert_tenant("acme", plan="prepaid", currency="EUR")
    accounts = [f"acct-{n}" for n in range(8)]
    for account in accounts:
        await first.create_account("acme", account)
        await first.top_up("acme", account, 100 * MICROS_PER_UNIT, reference="p", now_ms=0)
    chance = random.Random(11)
    requests = [(account, n) for account in accounts for n in range(40)]
    chance.shuffle(requests)
    outcomes = await asyncio.gather(
        *(
            stores[n % 2].authorize(
                "acme", account, f"call-{account}-{n}", "a", rate=RATE, want_s=60, now_ms=1_000
            )
            for account, n in requests
        )
    )
    assert all(isinstance(outcome, Grant) for outcome in outcomes)
    chance.shuffle(requests)
    cdrs = await asyncio.gather(
        *(
            stores[n % 3 % 2].settle(
                LegEnd(
                    "acme", account, f"call-{account}-{n}", "a", "", "", Disposition.ANSWERED,
                    1_000, 1_000, 61_000,
                ),
                now_ms=61_000,
            )
            for account, n in requests
        )
    )  # fmt: skip
    assert {cdr.amount_micros for cdr in cdrs} == {70 * CENTS}
    for account in accounts:
        balance = await first.balance("acme", account)
        assert balance.account.balance_micros == 100 * MICROS_PER_UNIT - 40 * 70 * CENTS
        assert balance.account.held_micros == 0
        assert not balance.reservations
