"""The billing store on Postgres through an asyncpg pool: what the cluster runs.

:class:`PostgresDatabase` hands the SQL steps one pooled connection in one transaction
(READ COMMITTED; the steps lock the account row ``FOR UPDATE``). The pool belongs to the
caller, who chooses its size and server settings (a ``search_path`` for a schema of its
own, as the tests do); :meth:`PostgresBillingStore.close` closes it.
:meth:`PostgresBillingStore.connect` makes such a pool that skips asyncpg's reset query
on every release: the steps leave no session state behind (no ``SET``, advisory lock or
``LISTEN``), and asyncpg still rolls back a transaction left open, so that query was a
round trip per call for nothing.

The two steps of every call, :meth:`~PostgresBillingStore.authorize` and
:meth:`~PostgresBillingStore.settle`, run in the functions of billing migration 4, which
do what :mod:`.credit_control` does for SQLite, on the server: one round trip instead of
six to eight. Requests that queue while the pool is busy go together, as one statement
and one transaction (:mod:`.batching`), so under load a commit serves many calls
(``bench/billing.py``). Validation stays here, before the call, and each request's
outcome becomes what the SQLite store answers or raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import asyncpg

from contracts.billing.migrations import Dialect
from contracts.billing.rating import Rate
from contracts.billing.store import (
    Cdr,
    Grant,
    LegEnd,
    Refusal,
    RefusalReason,
    UnknownAccount,
)
from contracts.stores.batching import Batcher
from contracts.stores.credit_control import check_request, held_by_another, holds_prepaid_money
from contracts.stores.provisioning import check_key
from contracts.stores.sql import SqlBillingStore
from contracts.stores.tx import Row, cdr_of, rate_values

_AUTHORIZE = (
    "SELECT * FROM cloudpbx_authorize_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
    "$12, $13, $14, $15, $16, $17)"
)
_SETTLE = (
    "SELECT * FROM cloudpbx_settle_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
    "$13, $14, $15, $16, $17, $18)"
)
_REFUSALS = {
    "settled": RefusalReason.ALREADY_SETTLED,
    "insufficient": RefusalReason.INSUFFICIENT_BALANCE,
}


class PostgresTx:
    """A :class:`~.tx.Tx` on one asyncpg connection inside its transaction."""

    def __init__(self, connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._connection = connection

    @property
    def dialect(self) -> Dialect:
        return "postgres"

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        return [tuple(record) for record in await self._connection.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        record = await self._connection.fetchrow(sql, *args)
        return None if record is None else tuple(record)

    async def execute(self, sql: str, *args: object) -> None:
        await self._connection.execute(sql, *args)

    async def executemany(self, sql: str, args: list[tuple[object, ...]]) -> None:
        await self._connection.executemany(sql, args)


class PostgresDatabase:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield PostgresTx(connection)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        """One statement, in a transaction of its own."""
        async with self.pool.acquire() as connection:
            return [tuple(record) for record in await connection.fetch(sql, *args)]

    async def close(self) -> None:
        await self.pool.close()


class PostgresBillingStore(SqlBillingStore):
    """The billing store on an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, batches: int = 4) -> None:
        """``batches``: how many batches of each step may run at once (at most the pool's
        size). Few and large beat many and small: each runs on a server core, and what
        waits meanwhile joins the next batch (4 measured best on 2 cores, bench/billing.py)."""
        postgres = PostgresDatabase(pool)
        super().__init__(postgres)
        connections = max(1, min(batches, pool.get_max_size()))

        async def authorize_many(columns: list[Sequence[object]]) -> list[Row]:
            return await postgres.fetch(_AUTHORIZE, *columns)

        async def settle_many(columns: list[Sequence[object]]) -> list[Row]:
            return await postgres.fetch(_SETTLE, *columns)

        self._authorizing = Batcher(authorize_many, connections=connections)
        self._settling = Batcher(settle_many, connections=connections)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        size: int = 16,
        batches: int = 4,
        server_settings: Mapping[str, str] | None = None,
    ) -> PostgresBillingStore:
        """A store on a new pool of up to ``size`` connections to ``dsn`` (opened as
        needed), without the per-release reset query (see the module docstring)."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            reset=_keep_session,
            server_settings=dict(server_settings or {}),
        )
        return cls(pool, batches=batches)

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
        check_key(tenant=tenant, account=account, call_id=call_id, leg=leg)
        check_request(want_s=want_s, hold_s=hold_s, now_ms=now_ms, answered_ms=answered_ms)
        outcome, holder, *granted = await self._authorizing.submit(
            (
                tenant,
                account,
                call_id,
                leg,
                *rate_values(rate),
                want_s,
                now_ms,
                answered_ms,
                hold_s,
                caller,
                callee,
                invoiced,
            )
        )
        if outcome == "granted":
            return Grant(*granted)
        if outcome in _REFUSALS:
            return Refusal(_REFUSALS[outcome])
        raise _error(outcome, tenant, account, call_id, leg, holder)

    async def settle(self, end: LegEnd, *, now_ms: int) -> Cdr:
        check_key(tenant=end.tenant, account=end.account, call_id=end.call_id, leg=end.leg)
        outcome, holder, *cdr = await self._settling.submit(
            (
                end.tenant,
                end.account,
                end.call_id,
                end.leg,
                end.caller,
                end.callee,
                end.disposition.value,
                end.setup_ms,
                end.answered_ms,
                end.end_ms,
                *rate_values(end.rate),
                end.invoiced,
                now_ms,
            )
        )
        if outcome == "holds prepaid money":
            raise holds_prepaid_money(end)
        if outcome not in ("written", "settled"):
            raise _error(outcome, end.tenant, end.account, end.call_id, end.leg, holder)
        return cdr_of(tuple(cdr))

    async def close(self) -> None:
        await self._authorizing.close()
        await self._settling.close()
        await super().close()


def _error(
    outcome: str, tenant: str, account: str, call_id: str, leg: str, holder: str | None
) -> Exception:
    """What the SQLite store raises for the function's outcome."""
    if outcome == "unknown account":
        return UnknownAccount(f"no account {account!r} for tenant {tenant!r}")
    if outcome == "held by another" and holder is not None:
        return held_by_another(call_id, leg, holder)
    return RuntimeError(f"the billing function answered {outcome!r} for {call_id} {leg}")


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """A pool's reset that sends nothing: asyncpg's own clean-up (rolling back a
    transaction left open, dropping listeners) still runs before it."""
