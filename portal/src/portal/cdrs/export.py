"""Reading a tenant's CDRs out of a billing store and writing them as CSV, one window of
end times at a time.

:meth:`~contracts.billing.store.BillingStore.cdrs` returns a whole tuple. Asking it for
the export's range in consecutive windows keeps memory bounded by one window's CDRs
rather than the range's: each window comes back in end order, so their concatenation is
the range in end order. A window is a day long (a tenant with millions of CDRs a month
has tens of thousands a day), half as long after one that held more than
``rows_per_read`` CDRs, and twice as long again (up to a day) after one that held fewer
than half as many. A sparse year is 365 short reads. (A store method that yields rows
from a server-side cursor or by key-set pages would bound memory by a page whatever the
traffic, in fewer reads; that belongs to the billing store.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TextIO

from contracts.billing.rating import RateTable
from contracts.billing.store import Balance, Cdr
from portal.cdrs.table import write_header, write_rows
from portal.cdrs.window import Window

DAY_MS = 86_400_000
ROWS_PER_READ = 10_000


class CdrSource(Protocol):
    """What an export reads of a :class:`~contracts.billing.store.BillingStore`."""

    async def rates(self, tenant: str) -> RateTable: ...

    async def balance(self, tenant: str, account: str) -> Balance: ...

    async def cdrs(self, tenant: str, *, since_ms: int, until_ms: int) -> tuple[Cdr, ...]: ...


async def check_tenant(store: CdrSource, tenant: str) -> None:
    """Raise :class:`~contracts.billing.store.UnknownTenant` for a tenant never
    provisioned (``cdrs`` alone would just find none)."""
    await store.rates(tenant)


async def cdr_windows(
    store: CdrSource,
    tenant: str,
    window: Window,
    *,
    step_ms: int = DAY_MS,
    rows_per_read: int = ROWS_PER_READ,
) -> AsyncIterator[tuple[Cdr, ...]]:
    """The tenant's CDRs in ``window``, in end order, one read at a time, each at most
    ``step_ms`` long (module docstring)."""
    longest_ms = step_ms
    since_ms = window.since_ms
    while since_ms < window.until_ms:
        until_ms = min(since_ms + step_ms, window.until_ms)
        cdrs = await store.cdrs(tenant, since_ms=since_ms, until_ms=until_ms)
        yield cdrs
        since_ms = until_ms
        if len(cdrs) < rows_per_read // 2:
            step_ms = min(step_ms * 2, longest_ms)
        elif len(cdrs) > rows_per_read:
            step_ms = max(step_ms // 2, 1)


async def export_csv(
    store: CdrSource,
    tenant: str,
    window: Window,
    out: TextIO,
    *,
    step_ms: int = DAY_MS,
    rows_per_read: int = ROWS_PER_READ,
) -> int:
    """Write the header and every CDR of ``tenant`` in ``window`` to ``out``; returns how
    many rows. The currency comes from the account of the first CDR (every account of a
    tenant bills in the tenant's currency)."""
    write_header(out)
    currency = ""
    rows = 0
    async for cdrs in cdr_windows(
        store, tenant, window, step_ms=step_ms, rows_per_read=rows_per_read
    ):
        if cdrs and not currency:
            currency = (await store.balance(tenant, cdrs[0].account)).account.currency
        write_rows(out, cdrs, currency)
        rows += len(cdrs)
    return rows
