"""Choosing the billing store by URL (portal.stores): what is refused, and passwords never
shown. Opening real stores is in tests/portal/cdrs (each test on SQLite and Postgres)."""

from __future__ import annotations

import re

import pytest

from portal.stores import StoreUrlError, open_billing_store, shown


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("postgresql://u:pw@db:5432/billing?search_path=x", "postgresql://u:***@db:5432/billing?search_path=x"),
        ("postgresql://u@db/billing", "postgresql://u@db/billing"),
        ("postgres://:pw@db/billing", "postgres://:***@db/billing"),
        ("sqlite:////var/lib/cloudpbx/billing.db", "sqlite:////var/lib/cloudpbx/billing.db"),
        ("postgresql://u:pw@[::1/x", "<unparseable URL>"),
    ],
)  # fmt: skip
def test_a_url_is_shown_without_its_password(url: str, text: str) -> None:
    assert shown(url) == text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "is neither postgresql://... nor sqlite:///..."),
        ("billing.db", "is neither"),
        ("redis://u:pw@h/0", "'redis://u:***@h/0' is neither"),
        ("sqlite:billing.db", "is neither"),
        ("sqlite://host/billing.db", "a SQLite store URL is sqlite:///PATH"),
        ("sqlite:///no/such/billing.db", "no SQLite database at 'no/such/billing.db'"),
    ],
)
async def test_what_names_no_store_is_refused(url: str, error: str) -> None:
    with pytest.raises(StoreUrlError, match=re.escape(error)):
        await open_billing_store(url)
