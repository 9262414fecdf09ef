"""What the billing steps need from a database: one transaction at a time, and rows.

:class:`Tx` is an open transaction that runs SQL written for Postgres (``$1`` parameters,
``FOR UPDATE`` row locks); each driver adapts it (``contracts.stores.postgres``,
``contracts.stores.sqlite``). :class:`Database` hands out transactions. The row mappers
turn result rows (plain tuples, in the column order of the ``*_COLUMNS`` constants) into
the types of :mod:`contracts.billing.store`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from contracts.billing.migrations import Dialect
from contracts.billing.rating import Rate
from contracts.billing.store import Account, Cdr, Disposition, LedgerEntry, LedgerKind, Reservation

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open transaction: committed when its context exits cleanly, else rolled back."""

    @property
    def dialect(self) -> Dialect: ...

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: object) -> Row | None: ...

    async def execute(self, sql: str, *args: object) -> None: ...

    async def executemany(self, sql: str, args: list[tuple[object, ...]]) -> None: ...


class Database(Protocol):
    """Opens transactions that lock what they read ``FOR UPDATE`` until they end."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    async def close(self) -> None: ...


ACCOUNT_COLUMNS = "tenant, account, currency, balance_micros, held_micros"
RATE_COLUMNS = (
    "rate_prefix, rate_name, per_minute_micros, connect_fee_micros, initial_s, increment_s"
)
RESERVATION_COLUMNS = (
    f"tenant, account, call_id, leg, caller, callee, {RATE_COLUMNS}, total_s, "
    "reserved_micros, started_ms, answered_ms, last_seen_ms, expires_at_ms, invoiced"
)
CDR_COLUMNS = (
    "tenant, account, call_id, leg, caller, callee, disposition, setup_ms, answered_ms, "
    f"end_ms, billable_s, amount_micros, {RATE_COLUMNS}, settled_ms"
)
LEDGER_COLUMNS = "tenant, account, kind, amount_micros, reference, at_ms"


def rate_values(rate: Rate | None) -> tuple[object, ...]:
    """A rate as the six ``RATE_COLUMNS`` values (all NULL for no rate)."""
    if rate is None:
        return (None,) * 6
    return (
        rate.prefix,
        rate.name,
        rate.per_minute_micros,
        rate.connect_fee_micros,
        rate.initial_s,
        rate.increment_s,
    )


def rate_of(values: Row) -> Rate | None:
    """The six ``RATE_COLUMNS`` values as a rate (None when they are NULL)."""
    prefix, name, per_minute, connect_fee, initial_s, increment_s = values
    if prefix is None:
        return None
    return Rate(prefix, per_minute, connect_fee, initial_s, increment_s, name)


def account_of(row: Row) -> Account:
    tenant, account, currency, balance_micros, held_micros = row
    return Account(tenant, account, currency, balance_micros, held_micros)


def reservation_of(row: Row) -> Reservation:
    tenant, account, call_id, leg, caller, callee = row[:6]
    rate = rate_of(row[6:12])
    assert rate is not None  # the schema's reservations always carry their rate
    total_s, reserved_micros, started_ms, answered_ms, last_seen_ms, expires_at_ms = row[12:18]
    return Reservation(
        tenant=tenant,
        account=account,
        call_id=call_id,
        leg=leg,
        caller=caller,
        callee=callee,
        rate=rate,
        total_s=total_s,
        reserved_micros=reserved_micros,
        started_ms=started_ms,
        answered_ms=answered_ms,
        last_seen_ms=last_seen_ms,
        expires_at_ms=expires_at_ms,
        invoiced=bool(row[18]),
    )


def cdr_of(row: Row) -> Cdr:
    tenant, account, call_id, leg, caller, callee, disposition = row[:7]
    setup_ms, answered_ms, end_ms, billable_s, amount_micros = row[7:12]
    return Cdr(
        tenant=tenant,
        account=account,
        call_id=call_id,
        leg=leg,
        caller=caller,
        callee=callee,
        disposition=Disposition(disposition),
        setup_ms=setup_ms,
        answered_ms=answered_ms,
        end_ms=end_ms,
        billable_s=billable_s,
        amount_micros=amount_micros,
        rate=rate_of(row[12:18]),
        settled_ms=row[18],
    )


def ledger_of(row: Row) -> LedgerEntry:
    tenant, account, kind, amount_micros, reference, at_ms = row
    return LedgerEntry(tenant, account, LedgerKind(kind), amount_micros, reference, at_ms)
