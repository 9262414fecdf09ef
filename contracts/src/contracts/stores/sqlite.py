"""The billing store on one SQLite file through aiosqlite: the embedded default
(``cloudpbx dev``).

SQLite has one writer at a time, so :class:`SqliteDatabase` runs every transaction as
``BEGIN IMMEDIATE`` (the database's write lock, held to the end: the steps' ``FOR UPDATE``
row locks are implied and dropped from their SQL) on one connection, one transaction at a
time (an asyncio lock). Other processes on the same file wait up to ``busy_timeout_ms``.
The steps' Postgres parameters (``$1``) become SQLite's numbered ones (``?1``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

import aiosqlite

from contracts.billing.migrations import Dialect
from contracts.stores.sql import SqlBillingStore
from contracts.stores.tx import Row

_PARAMETER = re.compile(r"\$(\d+)")
_ROW_LOCK = re.compile(r"\s+FOR UPDATE\b")


@lru_cache(maxsize=256)
def sqlite_sql(sql: str) -> str:
    """Postgres-flavoured step SQL as SQLite runs it."""
    return _PARAMETER.sub(r"?\1", _ROW_LOCK.sub("", sql))


class SqliteTx:
    """A :class:`~.tx.Tx` on the connection, inside ``BEGIN IMMEDIATE``."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        async with self._connection.execute(sqlite_sql(sql), args) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        async with self._connection.execute(sqlite_sql(sql), args) as cursor:
            row = await cursor.fetchone()
        return None if row is None else tuple(row)

    async def execute(self, sql: str, *args: object) -> None:
        await self._connection.execute(sqlite_sql(sql), args)

    async def executemany(self, sql: str, args: list[tuple[object, ...]]) -> None:
        await self._connection.executemany(sqlite_sql(sql), args)


class SqliteDatabase:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection
        #: Gives the one connection to one transaction at a time.
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        connection = await aiosqlite.connect(str(path), isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA foreign_keys = ON",
            f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
        ):
            await connection.execute(pragma)
        return cls(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._turn:
            await self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTx(self.connection)
            except BaseException:
                await self.connection.rollback()
                raise
            await self.connection.commit()

    async def close(self) -> None:
        await self.connection.close()


class SqliteBillingStore(SqlBillingStore):
    """The billing store on one SQLite file."""

    def __init__(self, database: SqliteDatabase) -> None:
        super().__init__(database)

    @classmethod
    async def open(cls, path: str | Path) -> SqliteBillingStore:
        return cls(await SqliteDatabase.open(path))
