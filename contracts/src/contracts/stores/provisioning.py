"""The billing store's slow path, as steps run inside one transaction: schema migration,
tenants, accounts, rate tables, top-ups and refunds, and reading balances and ledgers.

Every step validates first and raises :class:`~contracts.billing.store.InvalidRequest`
(or an ``Unknown…`` error) before it writes anything.
"""

from __future__ import annotations

import re

from contracts.billing.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    SCHEMA_MIGRATIONS,
    statements,
)
from contracts.billing.rating import Rate, RateTable, RatingError
from contracts.billing.store import (
    Account,
    Balance,
    InvalidRequest,
    LedgerEntry,
    LedgerKind,
    SchemaTooNew,
    Tenant,
    UnknownAccount,
    UnknownTenant,
)
from contracts.stores.tx import (
    ACCOUNT_COLUMNS,
    LEDGER_COLUMNS,
    RESERVATION_COLUMNS,
    Tx,
    account_of,
    ledger_of,
    rate_values,
    reservation_of,
)

_CURRENCY = re.compile(r"[A-Z]{3}")
#: A key part (tenant, account, call id, leg) is printable text without spaces.
_KEY = re.compile(r"[!-~]{1,256}")


def check_key(**parts: str) -> None:
    """Each part is a non-empty printable word (what makes ``call_id leg`` unambiguous)."""
    for name, value in parts.items():
        if not _KEY.fullmatch(value):
            raise InvalidRequest(f"{name} must be 1..256 printable characters, not {value!r}")


#: The Postgres advisory lock that makes processes migrating at once take turns.
MIGRATION_LOCK = 0x63_70_62_78_62_69_6C  # "cpbxbil"


async def migrate(tx: Tx) -> int:
    """Apply the missing migrations; a second process waits, then finds nothing to do
    (Postgres: an advisory lock; SQLite: the write lock the transaction already holds)."""
    if tx.dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
    await tx.execute(SCHEMA_MIGRATIONS)
    applied = {row[0] for row in await tx.fetch("SELECT version FROM schema_migrations")}
    if applied and max(applied) > LATEST_VERSION:
        raise SchemaTooNew(
            f"the billing schema is at version {max(applied)}; this release knows up to "
            f"{LATEST_VERSION}"
        )
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in statements(migration, tx.dialect):
            await tx.execute(statement)
        await tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )
    return LATEST_VERSION


async def tenant_currency(tx: Tx, tenant: str, *, lock: bool = False) -> str:
    sql = "SELECT currency FROM tenants WHERE tenant = $1" + (" FOR UPDATE" if lock else "")
    row = await tx.fetchrow(sql, tenant)
    if row is None:
        raise UnknownTenant(f"no tenant {tenant!r}")
    currency: str = row[0]
    return currency


async def upsert_tenant(tx: Tx, tenant: str, plan: str, currency: str) -> Tenant:
    check_key(tenant=tenant)
    if not _CURRENCY.fullmatch(currency):
        raise InvalidRequest(f"currency must be an ISO 4217 code like 'EUR', not {currency!r}")
    row = await tx.fetchrow("SELECT currency FROM tenants WHERE tenant = $1 FOR UPDATE", tenant)
    if row is not None and row[0] != currency:
        raise InvalidRequest(
            f"tenant {tenant!r} bills in {row[0]}: its currency cannot become {currency}"
        )
    await tx.execute(
        "INSERT INTO tenants (tenant, plan, currency) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant) DO UPDATE SET plan = excluded.plan",
        tenant,
        plan,
        currency,
    )
    return Tenant(tenant, plan, currency)


async def create_account(tx: Tx, tenant: str, account: str) -> Account:
    check_key(tenant=tenant, account=account)
    currency = await tenant_currency(tx, tenant)
    await tx.execute(
        "INSERT INTO accounts (tenant, account, currency) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant, account) DO NOTHING",
        tenant,
        account,
        currency,
    )
    return await lock_account(tx, tenant, account)


async def lock_account(tx: Tx, tenant: str, account: str) -> Account:
    """The account, locked until the transaction ends: every money step starts here, so
    steps on one account run one after the other (and always lock in this order)."""
    row = await tx.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 AND account = $2 FOR UPDATE",
        tenant,
        account,
    )
    if row is None:
        raise UnknownAccount(f"no account {account!r} for tenant {tenant!r}")
    return account_of(row)


async def replace_rates(tx: Tx, tenant: str, rates: list[Rate]) -> RateTable:
    try:
        table = RateTable(rates)
    except RatingError as error:
        raise InvalidRequest(str(error)) from error
    await tenant_currency(tx, tenant, lock=True)
    await tx.execute("DELETE FROM rates WHERE tenant = $1", tenant)
    await tx.executemany(
        "INSERT INTO rates (tenant, prefix, name, per_minute_micros, connect_fee_micros, "
        "initial_s, increment_s) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(tenant, *rate_values(rate)) for rate in table],
    )
    return table


async def rates(tx: Tx, tenant: str) -> RateTable:
    await tenant_currency(tx, tenant)
    rows = await tx.fetch(
        "SELECT prefix, per_minute_micros, connect_fee_micros, initial_s, increment_s, name "
        "FROM rates WHERE tenant = $1",
        tenant,
    )
    return RateTable(Rate(*row) for row in rows)


async def top_up(
    tx: Tx,
    tenant: str,
    account: str,
    amount_micros: int,
    reference: str,
    now_ms: int,
    kind: LedgerKind,
) -> LedgerEntry:
    if kind not in (LedgerKind.TOP_UP, LedgerKind.REFUND):
        raise InvalidRequest(f"a credit is a top-up or a refund, not a {kind}")
    if type(amount_micros) is not int or amount_micros <= 0:
        raise InvalidRequest(f"a {kind} must be a positive whole number of micros")
    if not reference:
        raise InvalidRequest(f"a {kind} needs a reference (what makes repeating it safe)")
    await lock_account(tx, tenant, account)
    row = await tx.fetchrow(
        f"SELECT {LEDGER_COLUMNS} FROM ledger "
        "WHERE tenant = $1 AND account = $2 AND kind = $3 AND reference = $4",
        tenant,
        account,
        kind.value,
        reference,
    )
    if row is not None:
        entry = ledger_of(row)
        if entry.amount_micros != amount_micros:
            raise InvalidRequest(
                f"{kind} reference {reference!r} was used for {entry.amount_micros} micros"
            )
        return entry
    entry = LedgerEntry(tenant, account, kind, amount_micros, reference, now_ms)
    await tx.execute(
        f"INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
        tenant,
        account,
        kind.value,
        amount_micros,
        reference,
        now_ms,
    )
    await tx.execute(
        "UPDATE accounts SET balance_micros = balance_micros + $3 "
        "WHERE tenant = $1 AND account = $2",
        tenant,
        account,
        amount_micros,
    )
    return entry


async def balance(tx: Tx, tenant: str, account: str) -> Balance:
    row = await tx.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant = $1 AND account = $2",
        tenant,
        account,
    )
    if row is None:
        raise UnknownAccount(f"no account {account!r} for tenant {tenant!r}")
    rows = await tx.fetch(
        f"SELECT {RESERVATION_COLUMNS} FROM reservations "
        "WHERE tenant = $1 AND account = $2 ORDER BY started_ms, call_id, leg",
        tenant,
        account,
    )
    return Balance(account_of(row), tuple(reservation_of(r) for r in rows))


async def ledger(tx: Tx, tenant: str, account: str) -> tuple[LedgerEntry, ...]:
    rows = await tx.fetch(
        f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE tenant = $1 AND account = $2 ORDER BY id",
        tenant,
        account,
    )
    return tuple(ledger_of(row) for row in rows)
