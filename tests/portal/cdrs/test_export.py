"""Exporting from the billing stores (portal.cdrs.export), each test once on SQLite and
once on Postgres, the stores filled through their own API (authorize, settle)."""

from __future__ import annotations

import io

import pytest

from contracts.billing.store import UnknownTenant
from portal.cdrs.export import check_tenant, export_csv
from portal.cdrs.window import Window
from portal.stores import open_billing_store

from ..conftest import DEC_1_MS, HEADER, KNOWN_CSV, NOV_1_MS, StoreUrl

pytestmark = pytest.mark.asyncio
NOVEMBER = Window(NOV_1_MS, DEC_1_MS)


async def export(
    url: str, tenant: str, window: Window, step_ms: int, rows_per_read: int
) -> tuple[int, str]:
    store = await open_billing_store(url)
    try:
        out = io.StringIO(newline="")
        rows = await export_csv(
            store, tenant, window, out, step_ms=step_ms, rows_per_read=rows_per_read
        )
    finally:
        await store.close()
    return rows, out.getvalue()


@pytest.mark.parametrize(
    ("step_ms", "rows_per_read"),
    [
        (86_400_000, 10_000),  # a day at a time: what the command does
        (30 * 86_400_000, 10_000),  # all at once
        (86_400_000, 1),  # windows halved after each with two CDRs, then grown again
        (3_600_000, 10_000),  # an hour at a time: 720 reads, most of them empty
    ],
)
async def test_a_month_of_known_cdrs(
    known_cdrs: StoreUrl, step_ms: int, rows_per_read: int
) -> None:
    rows, text = await export(known_cdrs.url, "acme", NOVEMBER, step_ms, rows_per_read)
    assert (rows, text) == (4, KNOWN_CSV)


async def test_windows_end_where_the_next_begins(known_cdrs: StoreUrl) -> None:
    """A millisecond at a time around c0, which ended at 2026-11-01T00:00:00.000Z."""
    window = Window(NOV_1_MS - 10, NOV_1_MS + 10)
    rows, text = await export(known_cdrs.url, "acme", window, 1, 10_000)
    assert (rows, text) == (1, KNOWN_CSV[: KNOWN_CSV.index("c2,")])


async def test_an_empty_window_is_the_header_alone(known_cdrs: StoreUrl) -> None:
    week_before = Window(NOV_1_MS - 7 * 86_400_000, NOV_1_MS)
    assert await export(known_cdrs.url, "acme", week_before, 86_400_000, 10_000) == (0, HEADER)


async def test_an_unknown_tenant_is_refused(store_url: StoreUrl) -> None:
    store = await open_billing_store(store_url.url)
    try:
        with pytest.raises(UnknownTenant):
            await check_tenant(store, "nobody")
    finally:
        await store.close()
