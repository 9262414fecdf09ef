"""The portal's billing store, chosen by URL: ``postgresql://USER:PASSWORD@HOST/DB`` (or
``postgres://``; asyncpg's DSN, whose unknown query parameters become server settings,
e.g. ``?search_path=acme``) for the cluster, ``sqlite:///PATH`` for one SQLite file
(``cloudpbx dev``; the path is what follows the third slash, so ``sqlite:////var/x.db`` is
absolute and ``sqlite:///x.db`` relative, as SQLAlchemy writes them).

Opening never creates anything: a SQLite path must be an existing file. What went wrong
is told with the URL's password left out (:func:`shown`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from contracts.billing.store import BillingStore
from contracts.stores.postgres import PostgresBillingStore
from contracts.stores.sqlite import SqliteBillingStore

#: What a driver raises when a database cannot be reached or read (its schema missing).
STORE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
)
#: What asyncpg raises for a DSN it cannot even parse, besides the above.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, ValueError)
CONNECT_TIMEOUT_S = 10.0


class StoreUrlError(ValueError):
    """A store URL that names no store this portal can open; the message says why."""


async def open_billing_store(url: str) -> BillingStore:
    """The billing store at ``url`` (module docstring), not migrated: a reader must not
    change the schema under the services that own it."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("postgresql", "postgres"):
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=1, timeout=CONNECT_TIMEOUT_S)
        except _CONNECT_ERRORS as error:
            raise StoreUrlError(f"cannot connect to {shown(url)}: {error}") from None
        return PostgresBillingStore(pool)
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise StoreUrlError(f"a SQLite store URL is sqlite:///PATH, not {url!r}")
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StoreUrlError(f"no SQLite database at {str(path)!r} ({url})")
        try:
            return await SqliteBillingStore.open(path)
        except sqlite3.Error as error:
            raise StoreUrlError(f"cannot open {url}: {error}") from None
    raise StoreUrlError(f"store URL {shown(url)!r} is neither postgresql://... nor sqlite:///...")


def shown(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "<unparseable URL>"
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
