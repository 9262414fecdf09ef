"""The billing store on Postgres through an asyncpg pool: what the cluster runs.

:class:`PostgresDatabase` hands the SQL steps one pooled connection in one transaction
(READ COMMITTED; the steps lock the account row ``FOR UPDATE``). The pool belongs to the
caller, who chooses its size and server settings (a ``search_path`` for a schema of its
own, as the tests do); :meth:`PostgresBillingStore.close` closes it.
:meth:`PostgresBillingStore.connect` makes such a pool that skips asyncpg's reset query
on every release: the steps leave no session state behind (no ``SET``, advisory lock or
``LISTEN``), and asyncpg still rolls back a transaction left open, so that query was a
round trip per call for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import asyncpg

from contracts.billing.migrations import Dialect
from contracts.stores.sql import SqlBillingStore
from contracts.stores.tx import Row


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

    async def close(self) -> None:
        await self.pool.close()


class PostgresBillingStore(SqlBillingStore):
    """The billing store on an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        super().__init__(PostgresDatabase(pool))

    @classmethod
    async def connect(
        cls, dsn: str, *, size: int = 16, server_settings: Mapping[str, str] | None = None
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
        return cls(pool)


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """A pool's reset that sends nothing: asyncpg's own clean-up (rolling back a
    transaction left open, dropping listeners) still runs before it."""
