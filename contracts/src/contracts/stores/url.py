"""A billing store by URL, as every service's command line names it: ``postgresql://…``
(or ``postgres://``) for the cluster's Postgres, ``sqlite:///path`` for one file
(``sqlite:////abs/path`` with an absolute path, as SQLAlchemy spells it)."""

from __future__ import annotations

from contracts.billing.store import BillingStore
from contracts.stores.postgres import PostgresBillingStore
from contracts.stores.sqlite import SqliteBillingStore

#: Connections an edge process keeps to Postgres: credit control is one short statement
#: per request, batched under load, so a handful go a long way.
POOL_SIZE = 8


def check_url(url: str) -> str:
    """``url`` if it names a store this module opens; ValueError saying what it takes."""
    if url.startswith(("postgresql://", "postgres://")) or (
        url.startswith("sqlite:///") and len(url) > len("sqlite:///")
    ):
        return url
    raise ValueError(
        f"not a billing store URL: {url!r} (postgresql://USER:PASSWORD@HOST/DB or sqlite:///PATH)"
    )


async def open_store(url: str, *, pool_size: int = POOL_SIZE) -> BillingStore:
    """The store ``url`` names, connected (not migrated: call ``migrate()``)."""
    check_url(url)
    if url.startswith("sqlite:///"):
        return await SqliteBillingStore.open(url.removeprefix("sqlite:///"))
    return await PostgresBillingStore.connect(url, size=pool_size)
