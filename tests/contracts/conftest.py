"""Fixtures for the billing stores: one on a SQLite file, one on a real Postgres server.

``billing`` runs a test once per implementation and hands it a :class:`Stores`: each
``open()`` is another store on the same database, as another edge process would have.
The Postgres side connects to ``CLOUDPBX_TEST_POSTGRES_DSN`` (default: the database
``./pbx test`` creates), gives each test a schema of its own (``search_path`` set through
the pool's server settings) and drops it afterwards, so concurrent runs never collide. It
FAILS, never skips, when the server cannot be reached: a store suite that quietly ran
against SQLite only would prove nothing about the cluster. ``store`` is one migrated store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from contracts.stores.postgres import PostgresBillingStore
from contracts.stores.sql import SqlBillingStore
from contracts.stores.sqlite import SqliteBillingStore

POSTGRES_DSN = os.environ.get(
    "CLOUDPBX_TEST_POSTGRES_DSN", "postgresql://cloudpbx:cloudpbx@127.0.0.1:5432/cloudpbx_test"
)


class Stores:
    """Opens stores on one database (one SQLite file, or one Postgres schema)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "billing.sqlite3"
        self.schema = f"billing_test_{uuid.uuid4().hex}"
        self.opened: list[SqlBillingStore] = []
        self.schema_made = False

    async def open(self, *, pool_size: int = 4) -> SqlBillingStore:
        """Another store on the same database (not migrated)."""
        store: SqlBillingStore
        if self.kind == "sqlite":
            store = await SqliteBillingStore.open(self.path)
        else:
            if not self.schema_made:
                await self._admin(f"CREATE SCHEMA {self.schema}")
                self.schema_made = True
            store = await PostgresBillingStore.connect(
                POSTGRES_DSN, size=pool_size, server_settings={"search_path": self.schema}
            )
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()
        if self.schema_made:
            await self._admin(f"DROP SCHEMA {self.schema} CASCADE")

    @staticmethod
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
async def billing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Each billing store in turn: the same suite must pass against both."""
    stores = Stores(request.param, tmp_path)
    try:
        yield stores
    finally:
        await stores.close()


@pytest_asyncio.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[Stores]:
    """The Postgres store alone (the concurrency tests that need real row locks)."""
    stores = Stores("postgres", tmp_path)
    try:
        yield stores
    finally:
        await stores.close()


@pytest_asyncio.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Stores]:
    """The SQLite store alone."""
    stores = Stores("sqlite", tmp_path)
    try:
        yield stores
    finally:
        await stores.close()


@pytest_asyncio.fixture
async def store(billing: Stores) -> SqlBillingStore:
    opened = await billing.open()
    await opened.migrate()
    return opened
