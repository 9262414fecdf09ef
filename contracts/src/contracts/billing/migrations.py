"""The billing schema's one home: versioned migrations for Postgres and SQLite.

Each :class:`Migration` is a version number and its statements, written once in the SQL
both databases understand; the few words that differ (an identity column) are named
placeholders filled per dialect by :func:`statements`. The stores apply what is missing
in one transaction and record each version in ``schema_migrations``
(``contracts.stores.sql.migrate``). A migration, once released, is never edited: a change
is a new version.

Money columns are BIGINT micros; times BIGINT epoch milliseconds. The checks are the
last line of defence: the stores validate first and say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["postgres", "sqlite"]

_WORDS: dict[Dialect, dict[str, str]] = {
    "postgres": {"identity": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
    "sqlite": {"identity": "INTEGER PRIMARY KEY AUTOINCREMENT"},
}

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_RATE_COLUMNS = """
    rate_prefix TEXT,
    rate_name TEXT,
    per_minute_micros BIGINT,
    connect_fee_micros BIGINT,
    initial_s INTEGER,
    increment_s INTEGER"""

PREPAID = Migration(
    1,
    "prepaid accounts, rates, reservations, CDRs, ledger",
    (
        """CREATE TABLE tenants (
            tenant TEXT PRIMARY KEY,
            plan TEXT NOT NULL,
            currency TEXT NOT NULL CHECK (length(currency) = 3)
        )""",
        """CREATE TABLE accounts (
            tenant TEXT NOT NULL REFERENCES tenants (tenant),
            account TEXT NOT NULL,
            currency TEXT NOT NULL,
            balance_micros BIGINT NOT NULL DEFAULT 0,
            held_micros BIGINT NOT NULL DEFAULT 0 CHECK (held_micros >= 0),
            PRIMARY KEY (tenant, account),
            CHECK (balance_micros >= held_micros)
        )""",
        """CREATE TABLE rates (
            tenant TEXT NOT NULL REFERENCES tenants (tenant),
            prefix TEXT NOT NULL,
            name TEXT NOT NULL,
            per_minute_micros BIGINT NOT NULL CHECK (per_minute_micros >= 0),
            connect_fee_micros BIGINT NOT NULL CHECK (connect_fee_micros >= 0),
            initial_s INTEGER NOT NULL CHECK (initial_s > 0),
            increment_s INTEGER NOT NULL CHECK (increment_s > 0),
            PRIMARY KEY (tenant, prefix)
        )""",
        f"""CREATE TABLE reservations (
            tenant TEXT NOT NULL,
            call_id TEXT NOT NULL,
            leg TEXT NOT NULL,
            account TEXT NOT NULL,
            caller TEXT NOT NULL,
            callee TEXT NOT NULL,{_RATE_COLUMNS},
            total_s BIGINT NOT NULL CHECK (total_s >= 0),
            reserved_micros BIGINT NOT NULL CHECK (reserved_micros >= 0),
            started_ms BIGINT NOT NULL,
            answered_ms BIGINT,
            last_seen_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            PRIMARY KEY (tenant, call_id, leg),
            FOREIGN KEY (tenant, account) REFERENCES accounts (tenant, account)
        )""",
        "CREATE INDEX reservations_by_expiry ON reservations (expires_at_ms)",
        "CREATE INDEX reservations_by_account ON reservations (tenant, account)",
        f"""CREATE TABLE cdrs (
            tenant TEXT NOT NULL,
            call_id TEXT NOT NULL,
            leg TEXT NOT NULL,
            account TEXT NOT NULL,
            caller TEXT NOT NULL,
            callee TEXT NOT NULL,
            disposition TEXT NOT NULL,
            setup_ms BIGINT NOT NULL,
            answered_ms BIGINT,
            end_ms BIGINT NOT NULL,
            billable_s BIGINT NOT NULL CHECK (billable_s >= 0),
            amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),{_RATE_COLUMNS},
            settled_ms BIGINT NOT NULL,
            PRIMARY KEY (tenant, call_id, leg),
            FOREIGN KEY (tenant, account) REFERENCES accounts (tenant, account)
        )""",
        "CREATE INDEX cdrs_by_end ON cdrs (tenant, end_ms, call_id, leg)",
        """CREATE TABLE ledger (
            id {identity},
            tenant TEXT NOT NULL,
            account TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('top_up', 'charge', 'refund')),
            amount_micros BIGINT NOT NULL,
            reference TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            UNIQUE (tenant, account, kind, reference),
            FOREIGN KEY (tenant, account) REFERENCES accounts (tenant, account)
        )""",
    ),
)

TRACKED_LEGS = Migration(
    2,
    "reservations of postpaid legs, tracked without money and priced in full on settling",
    (
        "ALTER TABLE reservations ADD COLUMN invoiced INTEGER NOT NULL DEFAULT 0 "
        "CHECK (invoiced IN (0, 1))",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (PREPAID, TRACKED_LEGS)
LATEST_VERSION = MIGRATIONS[-1].version


def statements(migration: Migration, dialect: Dialect) -> tuple[str, ...]:
    """The migration's statements with the dialect's words filled in."""
    words = _WORDS[dialect]
    return tuple(statement.format_map(words) for statement in migration.statements)
