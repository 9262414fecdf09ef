"""The billing store on any SQL database: :class:`SqlBillingStore` runs each operation of
:class:`~contracts.billing.store.BillingStore` as one transaction of the steps in
:mod:`.provisioning` and :mod:`.credit_control`, on a :class:`~.tx.Database` that
``contracts.stores.postgres`` or ``contracts.stores.sqlite`` provides. One body of SQL
and rules for both, so the two stores cannot drift apart; the one exception, the
Postgres store's authorize and settle as server-side functions (for speed), is held to
the same rules by the store suite run against both and by a comparison of their
arithmetic (tests/contracts/test_billing_functions.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.billing.rating import Rate, RateTable
from contracts.billing.store import (
    Account,
    Balance,
    BillingStore,
    Cdr,
    Companion,
    Grant,
    InvalidRequest,
    LedgerEntry,
    LedgerKind,
    LegEnd,
    Refusal,
    Tenant,
)
from contracts.stores import credit_control, provisioning
from contracts.stores.tx import Database


class SqlBillingStore(BillingStore):
    """A :class:`BillingStore` on one database; closing it closes the database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def migrate(self) -> int:
        async with self.database.transaction() as tx:
            return await provisioning.migrate(tx)

    async def upsert_tenant(self, tenant: str, *, plan: str, currency: str) -> Tenant:
        async with self.database.transaction() as tx:
            return await provisioning.upsert_tenant(tx, tenant, plan, currency)

    async def create_account(self, tenant: str, account: str) -> Account:
        async with self.database.transaction() as tx:
            return await provisioning.create_account(tx, tenant, account)

    async def replace_rates(self, tenant: str, rates: Iterable[Rate]) -> RateTable:
        listed = list(rates)
        async with self.database.transaction() as tx:
            return await provisioning.replace_rates(tx, tenant, listed)

    async def rates(self, tenant: str) -> RateTable:
        async with self.database.transaction() as tx:
            return await provisioning.rates(tx, tenant)

    async def top_up(
        self,
        tenant: str,
        account: str,
        amount_micros: int,
        *,
        reference: str,
        now_ms: int,
        kind: LedgerKind = LedgerKind.TOP_UP,
    ) -> LedgerEntry:
        async with self.database.transaction() as tx:
            return await provisioning.top_up(
                tx, tenant, account, amount_micros, reference, now_ms, kind
            )

    async def balance(self, tenant: str, account: str) -> Balance:
        async with self.database.transaction() as tx:
            return await provisioning.balance(tx, tenant, account)

    async def ledger(self, tenant: str, account: str) -> tuple[LedgerEntry, ...]:
        async with self.database.transaction() as tx:
            return await provisioning.ledger(tx, tenant, account)

    async def authorize(
        self,
        tenant: str,
        account: str,
        call_id: str,
        leg: str,
        *,
        rate: Rate,
        want_s: int,
        now_ms: int,
        answered_ms: int | None = None,
        hold_s: int | None = None,
        caller: str = "",
        callee: str = "",
        invoiced: bool = False,
    ) -> Grant | Refusal:
        async with self.database.transaction() as tx:
            return await credit_control.authorize(
                tx,
                tenant,
                account,
                call_id,
                leg,
                rate=rate,
                want_s=want_s,
                now_ms=now_ms,
                answered_ms=answered_ms,
                hold_s=hold_s,
                caller=caller,
                callee=callee,
                invoiced=invoiced,
            )

    async def settle(self, end: LegEnd, *, now_ms: int) -> Cdr:
        async with self.database.transaction() as tx:
            return await credit_control.settle(tx, end, now_ms)

    async def recover(
        self, *, now_ms: int, grace_s: int, companion: Companion | None = None
    ) -> tuple[Cdr, ...]:
        """One short transaction per expired leg (and its companion's CDR), so recovery
        never holds many locks."""
        if type(grace_s) is not int or grace_s < 0:
            raise InvalidRequest(f"grace_s must be a whole number of seconds >= 0: {grace_s!r}")
        async with self.database.transaction() as tx:
            legs = await credit_control.expired(tx, now_ms)
        written: list[Cdr] = []
        for tenant, account, call_id, leg in legs:
            async with self.database.transaction() as tx:
                cdrs = await credit_control.recover(
                    tx, tenant, account, call_id, leg, now_ms, grace_s, companion
                )
            written.extend(cdrs)
        return tuple(written)

    async def cdrs(self, tenant: str, *, since_ms: int, until_ms: int) -> tuple[Cdr, ...]:
        async with self.database.transaction() as tx:
            return await credit_control.cdrs(tx, tenant, since_ms, until_ms)

    async def close(self) -> None:
        await self.database.close()
