"""The billing stores (contracts.stores), each test once on SQLite and once on Postgres:
migrations, provisioning, top-ups, authorize/extend/settle money flows with the rating
cases issue 5 names, exactly-once CDRs (settle twice, settle after recover, recover by two
edges at once), the CDR export, and bad input that changes nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from contracts.billing.migrations import LATEST_VERSION
from contracts.billing.rating import MICROS_PER_UNIT, Rate
from contracts.billing.store import (
    Disposition,
    Grant,
    InvalidRequest,
    LedgerKind,
    LegEnd,
    Refusal,
    RefusalReason,
    SchemaTooNew,
    UnknownAccount,
    UnknownTenant,
)
from contracts.stores.sql import SqlBillingStore

from .conftest import Stores

pytestmark = pytest.mark.asyncio

CENTS = MICROS_PER_UNIT // 100
#: 0.60 a minute, connect fee 0.10, whole minutes: one minute with the fee is 0.70.
BY_MINUTE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)
T0_MS = 1_780_000_000_000  # an epoch time in ms: every test's clock starts here


async def funded(store: SqlBillingStore, balance_micros: int, account: str = "alice") -> None:
    await store.upsert_tenant("acme", plan="prepaid", currency="EUR")
    await store.create_account("acme", account)
    if balance_micros:
        await store.top_up(
            "acme", account, balance_micros, reference=f"pay-{account}", now_ms=T0_MS
        )


def leg_end(
    call_id: str,
    *,
    answered_ms: int | None,
    end_ms: int,
    disposition: Disposition = Disposition.ANSWERED,
) -> LegEnd:
    return LegEnd(
        "acme", "alice", call_id, "a", "+4930111", "+4917222", disposition,
        setup_ms=T0_MS, answered_ms=answered_ms, end_ms=end_ms, rate=BY_MINUTE,
    )  # fmt: skip


async def authorize(
    store: SqlBillingStore, call_id: str, want_s: int = 60, answered_ms: int | None = None
) -> Grant | Refusal:
    return await store.authorize(
        "acme", "alice", call_id, "a", rate=BY_MINUTE, want_s=want_s, now_ms=T0_MS,
        answered_ms=answered_ms,
    )  # fmt: skip


async def test_migrating_twice_is_a_no_op(billing: Stores) -> None:
    first, second = await billing.open(), await billing.open()
    assert list(await asyncio.gather(first.migrate(), second.migrate())) == [LATEST_VERSION] * 2
    assert await first.migrate() == LATEST_VERSION
    async with first.database.transaction() as tx:
        assert await tx.fetch("SELECT version FROM schema_migrations ORDER BY version") == [
            (1,),
            (2,),
            (3,),
            (4,),
        ]


async def test_provisioning_tenants_accounts_and_rate_tables(store: SqlBillingStore) -> None:
    tenant = await store.upsert_tenant("acme", plan="trial", currency="EUR")
    assert (tenant.plan, tenant.currency) == ("trial", "EUR")
    assert (await store.upsert_tenant("acme", plan="prepaid", currency="EUR")).plan == "prepaid"
    with pytest.raises(InvalidRequest, match="bills in EUR"):
        await store.upsert_tenant("acme", plan="prepaid", currency="USD")
    with pytest.raises(InvalidRequest, match="ISO 4217"):
        await store.upsert_tenant("other", plan="prepaid", currency="euro")

    account = await store.create_account("acme", "alice")
    assert (account.currency, account.balance_micros, account.held_micros) == ("EUR", 0, 0)
    assert await store.create_account("acme", "alice") == account
    with pytest.raises(UnknownTenant):
        await store.create_account("nobody", "alice")

    germany = Rate("49", 6 * CENTS, name="Germany")
    await store.replace_rates("acme", [germany, Rate("4917", 20 * CENTS, name="Germany mobile")])
    assert (await store.rates("acme")).rate("+4917222") == Rate(
        "4917", 20 * CENTS, name="Germany mobile"
    )
    await store.replace_rates("acme", [germany])
    assert list(await store.rates("acme")) == [germany]
    with pytest.raises(InvalidRequest, match="two rates"):
        await store.replace_rates("acme", [Rate("1", CENTS), Rate("1", 2 * CENTS)])
    assert list(await store.rates("acme")) == [germany]  # the failed replacement changed nothing
    with pytest.raises(UnknownTenant):
        await store.rates("nobody")


async def test_top_up_is_once_per_reference(store: SqlBillingStore) -> None:
    await funded(store, 0)
    first = await store.top_up("acme", "alice", 5 * MICROS_PER_UNIT, reference="p1", now_ms=T0_MS)
    again = await store.top_up(
        "acme", "alice", 5 * MICROS_PER_UNIT, reference="p1", now_ms=T0_MS + 9
    )
    assert again == first
    await store.top_up("acme", "alice", CENTS, reference="r1", now_ms=T0_MS, kind=LedgerKind.REFUND)
    assert (
        await store.balance("acme", "alice")
    ).account.balance_micros == 5 * MICROS_PER_UNIT + CENTS
    assert [entry.kind for entry in await store.ledger("acme", "alice")] == ["top_up", "refund"]


@pytest.mark.parametrize(
    ("amount_micros", "reference", "kind", "error"),
    [
        (0, "p2", LedgerKind.TOP_UP, "positive"),
        (-CENTS, "p2", LedgerKind.TOP_UP, "positive"),
        (CENTS, "", LedgerKind.TOP_UP, "reference"),
        (CENTS, "p2", LedgerKind.CHARGE, "top-up or a refund"),
        (2 * CENTS, "p1", LedgerKind.TOP_UP, "was used for"),
    ],
)
async def test_a_bad_top_up_changes_nothing(
    store: SqlBillingStore, amount_micros: int, reference: str, kind: LedgerKind, error: str
) -> None:
    await funded(store, 0)
    await store.top_up("acme", "alice", CENTS, reference="p1", now_ms=T0_MS)
    with pytest.raises(InvalidRequest, match=error):
        await store.top_up(
            "acme", "alice", amount_micros, reference=reference, now_ms=T0_MS, kind=kind
        )
    with pytest.raises(UnknownAccount):
        await store.top_up("acme", "bob", CENTS, reference="p3", now_ms=T0_MS)
    assert (await store.balance("acme", "alice")).account.balance_micros == CENTS
    assert len(await store.ledger("acme", "alice")) == 1


@pytest.mark.parametrize(
    ("answered_after_ms", "duration_ms", "amount_micros", "billable_s"),
    [
        (2_000, 59_900, 70 * CENTS, 60),  # 59.9 s on 60/60: one minute plus the fee
        (2_000, 60_000, 70 * CENTS, 60),  # 60.0 s: the same
        (2_000, 0, 10 * CENTS, 0),  # answered, zero seconds: the connect fee alone
        (None, 30_000, 0, 0),  # never answered: nothing
        (2_000, 60_001, 70 * CENTS, 120),  # ran past its grant: charged what was held
    ],
)
async def test_settling_charges_the_cost_within_the_reservation(
    store: SqlBillingStore,
    answered_after_ms: int | None,
    duration_ms: int,
    amount_micros: int,
    billable_s: int,
) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    assert await authorize(store, "c1") == Grant(60, 60, 70 * CENTS, T0_MS + 60_000)
    held = await store.balance("acme", "alice")
    assert (held.account.held_micros, held.account.available_micros) == (70 * CENTS, 430 * CENTS)
    assert [r.reserved_micros for r in held.reservations] == [70 * CENTS]

    answered_ms = None if answered_after_ms is None else T0_MS + answered_after_ms
    end_ms = T0_MS + (answered_after_ms or 0) + duration_ms
    disposition = Disposition.NO_ANSWER if answered_ms is None else Disposition.ANSWERED
    cdr = await store.settle(
        leg_end("c1", answered_ms=answered_ms, end_ms=end_ms, disposition=disposition),
        now_ms=end_ms,
    )
    assert (cdr.amount_micros, cdr.billable_s, cdr.rate) == (amount_micros, billable_s, BY_MINUTE)
    after = await store.balance("acme", "alice")
    assert after.account.balance_micros == 5 * MICROS_PER_UNIT - amount_micros
    assert (after.account.held_micros, after.reservations) == (0, ())
    charges = [e for e in await store.ledger("acme", "alice") if e.kind is LedgerKind.CHARGE]
    assert [e.amount_micros for e in charges] == ([-amount_micros] if amount_micros else [])


async def test_extending_a_leg_grows_its_one_reservation_with_the_fee_once(
    store: SqlBillingStore,
) -> None:
    await funded(store, 2 * MICROS_PER_UNIT)
    assert await authorize(store, "c1") == Grant(60, 60, 70 * CENTS, T0_MS + 60_000)
    answered = T0_MS + 1_000
    second = await store.authorize(
        "acme", "alice", "c1", "a", rate=BY_MINUTE, want_s=60, now_ms=T0_MS + 50_000,
        answered_ms=answered,
    )  # fmt: skip
    assert second == Grant(60, 120, 130 * CENTS, T0_MS + 110_000)
    # 2.00 - 1.30 held = 0.70 left: the third minute (0.60) fits, a fourth does not.
    assert isinstance(await authorize(store, "c1", want_s=120), Grant)
    assert await authorize(store, "c1") == Refusal(RefusalReason.INSUFFICIENT_BALANCE)
    balance = await store.balance("acme", "alice")
    assert (balance.account.held_micros, len(balance.reservations)) == (190 * CENTS, 1)
    assert balance.reservations[0].answered_ms == answered
    cdr = await store.settle(
        leg_end("c1", answered_ms=answered, end_ms=answered + 150_000), now_ms=T0_MS + 200_000
    )
    assert cdr.amount_micros == 190 * CENTS  # fee once, three minutes
    assert (await store.balance("acme", "alice")).account.balance_micros == 10 * CENTS


async def test_settling_twice_writes_one_cdr_and_charges_once(store: SqlBillingStore) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    await authorize(store, "c1")
    end = leg_end("c1", answered_ms=T0_MS + 1_000, end_ms=T0_MS + 31_000)
    first = await store.settle(end, now_ms=T0_MS + 31_000)
    assert await store.settle(end, now_ms=T0_MS + 99_000) == first
    late = leg_end("c1", answered_ms=None, end_ms=T0_MS + 40_000, disposition=Disposition.FAILED)
    assert await store.settle(late, now_ms=T0_MS + 99_000) == first  # out of order: ignored
    assert await authorize(store, "c1") == Refusal(RefusalReason.ALREADY_SETTLED)
    assert (await store.balance("acme", "alice")).account.balance_micros == 430 * CENTS
    assert len(await store.cdrs("acme", since_ms=0, until_ms=T0_MS * 2)) == 1


async def test_a_refused_attempt_still_gets_its_cdr(store: SqlBillingStore) -> None:
    await funded(store, 69 * CENTS)  # a cent short of the first minute with the fee
    assert await authorize(store, "c1") == Refusal(RefusalReason.INSUFFICIENT_BALANCE)
    assert (await store.balance("acme", "alice")).account.held_micros == 0
    end = leg_end("c1", answered_ms=None, end_ms=T0_MS + 5, disposition=Disposition.REFUSED)
    cdr = await store.settle(end, now_ms=T0_MS + 5)
    assert (cdr.disposition, cdr.amount_micros) == (Disposition.REFUSED, 0)


async def test_recover_settles_a_dead_edges_leg_at_last_activity_plus_grace(
    store: SqlBillingStore,
) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    answered = T0_MS + 2_000
    await store.authorize(
        "acme", "alice", "c1", "a", rate=BY_MINUTE, want_s=120, now_ms=answered,
        answered_ms=answered, hold_s=30, caller="+4930111", callee="+4917222",
    )  # fmt: skip
    await store.authorize(
        "acme", "alice", "c1", "a", rate=BY_MINUTE, want_s=60, now_ms=answered + 25_000,
        hold_s=30,
    )  # fmt: skip
    # Held until 55 s after answer: not yet expired.
    assert await store.recover(now_ms=answered + 54_999, grace_s=10) == ()
    (cdr,) = await store.recover(now_ms=answered + 600_000, grace_s=10)
    assert (cdr.disposition, cdr.caller, cdr.callee) == ("recovered", "+4930111", "+4917222")
    assert (cdr.answered_ms, cdr.end_ms) == (answered, answered + 35_000)  # last seen + 10 s
    assert cdr.amount_micros == 70 * CENTS
    assert await store.recover(now_ms=answered + 900_000, grace_s=10) == ()
    # The edge comes back and settles: the recovered CDR stands, nothing is charged again.
    end = leg_end("c1", answered_ms=answered, end_ms=answered + 100_000)
    assert await store.settle(end, now_ms=answered + 900_000) == cdr
    balance = await store.balance("acme", "alice")
    assert (balance.account.balance_micros, balance.account.held_micros) == (430 * CENTS, 0)


async def test_recovery_writes_a_companion_legs_cdr_with_the_recovered_one(
    store: SqlBillingStore,
) -> None:
    """The callee's leg of a recovered caller's leg gets its CDR in the same transaction
    (free, same disposition and times), unless it has one or is held on its own."""
    await funded(store, 5 * MICROS_PER_UNIT)
    for call_id in ("c1", "c2", "c3"):
        await store.authorize(
            "acme", "alice", call_id, "a", rate=BY_MINUTE, want_s=60, now_ms=T0_MS,
            answered_ms=T0_MS, hold_s=30,
        )  # fmt: skip
    # c2's companion already has its CDR; c3's is held (recovered on its own).
    callee_end = leg_end("c2", answered_ms=T0_MS, end_ms=T0_MS + 1)
    await store.settle(replace(callee_end, leg="b", rate=None), now_ms=T0_MS + 1)
    await store.authorize(
        "acme", "alice", "c3", "b", rate=Rate("", 0), want_s=60, now_ms=T0_MS, hold_s=30
    )

    def callee_of(leg: str) -> str | None:
        return "b" if leg == "a" else None

    written = await store.recover(now_ms=T0_MS + 600_000, grace_s=10, companion=callee_of)
    by_key = {(cdr.call_id, cdr.leg): cdr for cdr in written}
    assert sorted(by_key) == [("c1", "a"), ("c1", "b"), ("c2", "a"), ("c3", "a"), ("c3", "b")]
    caller, callee = by_key["c1", "a"], by_key["c1", "b"]
    assert (callee.disposition, callee.setup_ms, callee.answered_ms, callee.end_ms) == (
        caller.disposition, caller.setup_ms, caller.answered_ms, caller.end_ms,
    )  # fmt: skip
    assert (callee.amount_micros, callee.rate, caller.amount_micros) == (0, None, 70 * CENTS)
    assert by_key["c3", "b"].disposition == Disposition.RECOVERED  # its own reservation's
    assert not (await store.balance("acme", "alice")).reservations


async def test_a_recovered_leg_is_billed_no_longer_than_its_reservation_covered(
    store: SqlBillingStore,
) -> None:
    # Per second: 61 s granted in all, last seen 50 s after answer. Last activity plus a
    # 30 s grace would be 80 s, more than the reservation paid for; the edge would have
    # cut the call at 61 s, so the CDR says 61 s and its amount pays for exactly that.
    per_second = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=1, increment_s=1)
    await funded(store, 5 * MICROS_PER_UNIT)
    answered = T0_MS + 2_000
    for now_ms, want_s in ((answered, 60), (answered + 50_000, 1)):
        await store.authorize(
            "acme", "alice", "c1", "a", rate=per_second, want_s=want_s, now_ms=now_ms,
            answered_ms=answered, hold_s=10,
        )  # fmt: skip
    (cdr,) = await store.recover(now_ms=answered + 600_000, grace_s=30)
    assert (cdr.end_ms - answered, cdr.billable_s) == (61_000, 61)
    assert cdr.amount_micros == 71 * CENTS == per_second.cost_micros(61_000)


async def test_a_postpaid_leg_is_priced_in_full_and_moves_no_money(
    store: SqlBillingStore,
) -> None:
    await store.upsert_tenant("acme", plan="postpaid", currency="EUR")
    await store.create_account("acme", "alice")
    end = LegEnd(
        "acme", "alice", "c1", "a", "+4930111", "+4917222", Disposition.ANSWERED,
        setup_ms=T0_MS, answered_ms=T0_MS + 2_000, end_ms=T0_MS + 2_000 + 121_000,
        rate=BY_MINUTE, invoiced=True,
    )  # fmt: skip
    cdr = await store.settle(end, now_ms=end.end_ms)
    assert (cdr.billable_s, cdr.amount_micros) == (180, 190 * CENTS)
    assert await store.settle(end, now_ms=end.end_ms + 5) == cdr
    balance = await store.balance("acme", "alice")
    assert (balance.account.balance_micros, balance.account.held_micros) == (0, 0)
    assert await store.ledger("acme", "alice") == ()


async def test_a_postpaid_leg_is_tracked_without_money_and_recovered_priced_in_full(
    store: SqlBillingStore,
) -> None:
    # No balance at all: a postpaid leg is granted every slice it asks for, holds
    # nothing, and when its edge dies the recovery prices it in full without moving money.
    await store.upsert_tenant("acme", plan="postpaid", currency="EUR")
    await store.create_account("acme", "alice")
    answered = T0_MS + 2_000
    for now_ms, want_s in ((T0_MS, 60), (answered, 60), (answered + 100_000, 60)):
        grant = await store.authorize(
            "acme", "alice", "c1", "a", rate=BY_MINUTE, want_s=want_s, now_ms=now_ms,
            answered_ms=None if now_ms == T0_MS else answered, hold_s=30, invoiced=True,
        )  # fmt: skip
        assert isinstance(grant, Grant)
        assert grant.reserved_micros == 0
    (held,) = (await store.balance("acme", "alice")).reservations
    assert (held.invoiced, held.total_s, held.reserved_micros) == (True, 180, 0)
    (cdr,) = await store.recover(now_ms=answered + 600_000, grace_s=10)
    assert (cdr.disposition, cdr.end_ms - answered) == (Disposition.RECOVERED, 110_000)
    assert (cdr.billable_s, cdr.amount_micros) == (120, 130 * CENTS)  # the fee, two minutes
    balance = await store.balance("acme", "alice")
    assert (balance.account.balance_micros, balance.account.held_micros) == (0, 0)
    assert await store.ledger("acme", "alice") == ()


async def test_a_free_leg_is_tracked_and_a_dead_edges_free_call_still_gets_its_cdr(
    store: SqlBillingStore,
) -> None:
    await funded(store, 0)
    free = Rate("", 0, name="free")
    grant = await store.authorize(
        "acme", "alice", "c1", "a", rate=free, want_s=60, now_ms=T0_MS,
        answered_ms=T0_MS, hold_s=30,
    )  # fmt: skip
    assert isinstance(grant, Grant)
    (cdr,) = await store.recover(now_ms=T0_MS + 600_000, grace_s=10)
    assert (cdr.answered_ms, cdr.end_ms, cdr.amount_micros) == (T0_MS, T0_MS + 10_000, 0)
    assert cdr.rate == free


async def test_a_leg_holding_prepaid_money_cannot_be_settled_as_invoiced(
    store: SqlBillingStore,
) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    await authorize(store, "c1")
    end = LegEnd(
        "acme", "alice", "c1", "a", "+4930111", "+4917222", Disposition.ANSWERED,
        setup_ms=T0_MS, answered_ms=T0_MS, end_ms=T0_MS + 1_000, rate=BY_MINUTE,
        invoiced=True,
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match="not invoiced"):
        await store.settle(end, now_ms=T0_MS + 1_000)
    assert await store.cdrs("acme", since_ms=0, until_ms=T0_MS * 2) == ()
    assert (await store.balance("acme", "alice")).account.held_micros == 70 * CENTS


async def test_an_unanswered_leg_recovers_free(store: SqlBillingStore) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    await authorize(store, "c1")
    (cdr,) = await store.recover(now_ms=T0_MS + 60_000, grace_s=10)
    assert (cdr.answered_ms, cdr.end_ms, cdr.amount_micros) == (None, T0_MS + 10_000, 0)
    assert (await store.balance("acme", "alice")).account.available_micros == 5 * MICROS_PER_UNIT


async def test_two_edges_recovering_at_once_write_one_cdr(billing: Stores) -> None:
    first = await billing.open()
    await first.migrate()
    second = await billing.open()
    await funded(first, 50 * MICROS_PER_UNIT)
    for n in range(20):
        await authorize(first, f"c{n}", answered_ms=T0_MS)
    found = await asyncio.gather(
        first.recover(now_ms=T0_MS + 3_600_000, grace_s=5),
        second.recover(now_ms=T0_MS + 3_600_000, grace_s=5),
    )
    assert sorted(cdr.call_id for cdrs in found for cdr in cdrs) == sorted(
        f"c{n}" for n in range(20)
    )
    assert len(await first.cdrs("acme", since_ms=0, until_ms=T0_MS * 2)) == 20
    charges = [e for e in await first.ledger("acme", "alice") if e.kind is LedgerKind.CHARGE]
    assert len(charges) == 20
    account = (await first.balance("acme", "alice")).account
    assert (account.balance_micros, account.held_micros) == (
        50 * MICROS_PER_UNIT - 20 * 70 * CENTS,
        0,
    )


async def test_the_cdr_export_is_the_window_in_end_order(store: SqlBillingStore) -> None:
    await funded(store, 50 * MICROS_PER_UNIT)
    for call_id, end_s in [("c3", 30), ("c1", 10), ("c2", 20), ("c4", 40)]:
        await authorize(store, call_id)
        end = leg_end(call_id, answered_ms=T0_MS, end_ms=T0_MS + end_s * 1000)
        await store.settle(end, now_ms=T0_MS + 50_000)
    window = await store.cdrs("acme", since_ms=T0_MS + 10_000, until_ms=T0_MS + 40_000)
    assert [cdr.call_id for cdr in window] == ["c1", "c2", "c3"]
    assert await store.cdrs("other", since_ms=0, until_ms=T0_MS * 2) == ()


async def test_bad_credit_control_requests_change_nothing(store: SqlBillingStore) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    await funded(store, 5 * MICROS_PER_UNIT, account="bob")
    await authorize(store, "c1")
    with pytest.raises(UnknownAccount):
        await store.authorize("acme", "carol", "c2", "a", rate=BY_MINUTE, want_s=60, now_ms=T0_MS)
    with pytest.raises(InvalidRequest, match="want_s"):
        await authorize(store, "c2", want_s=0)
    with pytest.raises(InvalidRequest, match="answered_ms"):
        await authorize(store, "c2", answered_ms=-1)
    with pytest.raises(InvalidRequest, match="call_id"):
        await authorize(store, "has space")
    with pytest.raises(InvalidRequest, match="held by account 'alice'"):
        await store.authorize("acme", "bob", "c1", "a", rate=BY_MINUTE, want_s=60, now_ms=T0_MS)
    with pytest.raises(InvalidRequest, match="out of order"):
        leg_end("c1", answered_ms=T0_MS + 5, end_ms=T0_MS + 1)
    wrong_account = LegEnd(
        "acme", "bob", "c1", "a", "", "", Disposition.ANSWERED, T0_MS, T0_MS, T0_MS + 1
    )
    with pytest.raises(InvalidRequest, match="held by account 'alice'"):
        await store.settle(wrong_account, now_ms=T0_MS)
    with pytest.raises(InvalidRequest, match="grace_s"):
        await store.recover(now_ms=T0_MS, grace_s=-1)
    alice, bob = await store.balance("acme", "alice"), await store.balance("acme", "bob")
    assert (alice.account.balance_micros, alice.account.held_micros) == (500 * CENTS, 70 * CENTS)
    assert (bob.account.held_micros, bob.reservations) == (0, ())
    assert await store.cdrs("acme", since_ms=0, until_ms=T0_MS * 2) == ()


@pytest.mark.parametrize(
    ("rate", "reserved_micros", "amount_micros"),
    [
        (Rate("800", 0), 0, 0),
        (Rate("900", 0, connect_fee_micros=50 * CENTS), 50 * CENTS, 50 * CENTS),
    ],
)
async def test_free_and_fee_only_rates_hold_what_they_can_cost(
    store: SqlBillingStore, rate: Rate, reserved_micros: int, amount_micros: int
) -> None:
    await funded(store, 1 * MICROS_PER_UNIT)
    grant = await store.authorize("acme", "alice", "c1", "a", rate=rate, want_s=3600, now_ms=T0_MS)
    assert grant == Grant(3600, 3600, reserved_micros, T0_MS + 3_600_000)
    end = LegEnd(
        "acme", "alice", "c1", "a", "", "", Disposition.ANSWERED, T0_MS, T0_MS, T0_MS + 3_000_000
    )
    assert (await store.settle(end, now_ms=T0_MS)).amount_micros == amount_micros


async def test_a_schema_from_a_newer_release_is_left_alone(store: SqlBillingStore) -> None:
    async with store.database.transaction() as tx:
        await tx.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    with pytest.raises(SchemaTooNew, match="version 99"):
        await store.migrate()


async def test_an_answer_reported_before_the_first_grant_still_recovers(
    store: SqlBillingStore,
) -> None:
    await funded(store, 5 * MICROS_PER_UNIT)
    await authorize(store, "c1")
    await authorize(store, "c1", answered_ms=T0_MS - 5_000)  # the edge's clock was behind
    (cdr,) = await store.recover(now_ms=T0_MS + 600_000, grace_s=10)
    assert (cdr.setup_ms, cdr.answered_ms, cdr.end_ms) == (
        T0_MS - 5_000,
        T0_MS - 5_000,
        T0_MS + 10_000,
    )
    assert cdr.amount_micros == 70 * CENTS
