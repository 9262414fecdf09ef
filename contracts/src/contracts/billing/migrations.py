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
    #: The databases it changes; on the others it is recorded and does nothing.
    dialects: tuple[Dialect, ...] = ("postgres", "sqlite")


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

UNAMBIGUOUS_LEG_LOOKUP = Migration(
    3,
    "the index of reservations by account leads with the account",
    (
        # A leg is looked up by (tenant, call_id, leg), its primary key. An index that
        # also leads with the tenant lets the planner, when statistics say the table is
        # (nearly) empty, match on the tenant alone and filter the rest: a plan that
        # reads every open call of the tenant, kept for the connection's life by the
        # billing functions. Led by the account, this index cannot match a leg lookup;
        # it still serves a balance (tenant and account).
        "DROP INDEX reservations_by_account",
        "CREATE INDEX reservations_by_account ON reservations (account, tenant)",
    ),
)

# Migration 4: the two steps of every call, authorize and settle, as Postgres functions,
# so a request is one statement run by the server, not six to eight round trips. They run
# the rules of ``contracts.billing.credit`` and ``contracts.stores.credit_control`` (the
# steps SQLite runs), in the same order, on the same rows, and answer an outcome where
# those raise (an unknown account, a leg held by another account), so one bad request
# never fails the others of its batch. The store tests run both stores, and
# test_billing_functions compares the arithmetic with the Python rules on random rates.
# A change to either is a new migration with ``CREATE OR REPLACE``.

_BILLED_S = """
CREATE OR REPLACE FUNCTION cloudpbx_billed_s(
    p_initial_s BIGINT, p_increment_s BIGINT, p_duration_ms BIGINT
) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_duration_ms <= 0 THEN 0
        WHEN p_duration_ms <= p_initial_s * 1000 THEN p_initial_s
        ELSE p_initial_s + (p_duration_ms - p_initial_s * 1000 + p_increment_s * 1000 - 1)
            / (p_increment_s * 1000) * p_increment_s
    END
$$"""

_COST_MICROS = """
CREATE OR REPLACE FUNCTION cloudpbx_cost_micros(
    p_per_minute BIGINT, p_connect_fee BIGINT, p_initial_s BIGINT, p_increment_s BIGINT,
    p_duration_ms BIGINT
) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_connect_fee
        + (p_per_minute * cloudpbx_billed_s(p_initial_s, p_increment_s, p_duration_ms) + 59)
        / 60
$$"""

_ALLOWANCE_S = """
CREATE OR REPLACE FUNCTION cloudpbx_allowance_s(
    p_per_minute BIGINT, p_connect_fee BIGINT, p_initial_s BIGINT, p_increment_s BIGINT,
    p_held_s BIGINT, p_budget BIGINT, p_want_s BIGINT
) RETURNS BIGINT LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_target BIGINT := p_held_s + p_want_s;
    v_spare BIGINT := p_budget - p_connect_fee;
    v_most BIGINT;
BEGIN
    IF p_per_minute = 0 AND p_connect_fee = 0 THEN  -- free
        RETURN v_target;
    END IF;
    IF p_per_minute = 0 THEN  -- a connect fee only: no limit once it is paid
        RETURN CASE WHEN p_budget >= p_connect_fee THEN v_target ELSE p_held_s END;
    END IF;
    IF v_spare < (p_per_minute * p_initial_s + 59) / 60 THEN  -- not even the initial step
        RETURN p_held_s;
    END IF;
    v_most := v_spare * 60 / p_per_minute;
    RETURN greatest(p_held_s, least(
        v_target, p_initial_s + (v_most - p_initial_s) / p_increment_s * p_increment_s
    ));
END
$$"""

_AUTHORIZE = """
CREATE OR REPLACE FUNCTION cloudpbx_authorize(
    p_tenant TEXT, p_account TEXT, p_call_id TEXT, p_leg TEXT,
    p_prefix TEXT, p_name TEXT, p_per_minute BIGINT, p_connect_fee BIGINT,
    p_initial_s INTEGER, p_increment_s INTEGER,
    p_want_s BIGINT, p_now_ms BIGINT, p_answered_ms BIGINT, p_hold_s BIGINT,
    p_caller TEXT, p_callee TEXT, p_invoiced BOOLEAN,
    OUT o_outcome TEXT, OUT o_holder TEXT, OUT o_granted_s BIGINT, OUT o_total_s BIGINT,
    OUT o_reserved_micros BIGINT, OUT o_expires_at_ms BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    v_available BIGINT;
    v_settled BOOLEAN;
    v_holder TEXT;
    v_total_s BIGINT;
    v_reserved BIGINT;
    v_expires_at_ms BIGINT;
    v_invoiced INTEGER;
BEGIN
    -- The lock first, in a statement of its own: the next one then reads the leg as the
    -- step that held the lock left it.
    SELECT balance_micros - held_micros INTO v_available FROM accounts
        WHERE tenant = p_tenant AND account = p_account FOR UPDATE;
    IF NOT FOUND THEN
        o_outcome := 'unknown account';
        RETURN;
    END IF;
    -- The leg's reservation, or a new leg's empty one at the rate it is rated at.
    SELECT EXISTS (SELECT FROM cdrs
                   WHERE tenant = p_tenant AND call_id = p_call_id AND leg = p_leg),
           r.account, coalesce(r.per_minute_micros, p_per_minute),
           coalesce(r.connect_fee_micros, p_connect_fee), coalesce(r.initial_s, p_initial_s),
           coalesce(r.increment_s, p_increment_s), coalesce(r.total_s, 0),
           coalesce(r.reserved_micros, 0), coalesce(r.expires_at_ms, p_now_ms),
           coalesce(r.invoiced, p_invoiced::INTEGER)
        INTO v_settled, v_holder, p_per_minute, p_connect_fee, p_initial_s, p_increment_s,
             v_total_s, v_reserved, v_expires_at_ms, v_invoiced
        FROM (SELECT) AS one LEFT JOIN reservations AS r
            ON r.tenant = p_tenant AND r.call_id = p_call_id AND r.leg = p_leg;
    IF v_settled THEN
        o_outcome := 'settled';
        RETURN;
    END IF;
    IF v_holder <> p_account THEN
        o_outcome := 'held by another';
        o_holder := v_holder;
        RETURN;
    END IF;
    IF v_invoiced = 1 THEN  -- postpaid: tracked, nothing held
        o_total_s := v_total_s + p_want_s;
        o_reserved_micros := 0;
    ELSE
        o_total_s := cloudpbx_allowance_s(
            p_per_minute, p_connect_fee, p_initial_s, p_increment_s, v_total_s,
            v_reserved + v_available, p_want_s
        );
        o_reserved_micros := cloudpbx_cost_micros(
            p_per_minute, p_connect_fee, p_initial_s, p_increment_s, o_total_s * 1000
        );
    END IF;
    o_granted_s := o_total_s - v_total_s;
    IF o_granted_s = 0 THEN
        o_outcome := 'insufficient';
        RETURN;
    END IF;
    o_expires_at_ms := greatest(p_now_ms + 1000 * coalesce(p_hold_s, o_granted_s), v_expires_at_ms);
    -- The leg and the account's held money, in one statement.
    WITH held AS (
        INSERT INTO reservations AS r (
            tenant, account, call_id, leg, caller, callee, rate_prefix, rate_name,
            per_minute_micros, connect_fee_micros, initial_s, increment_s, total_s,
            reserved_micros, started_ms, answered_ms, last_seen_ms, expires_at_ms, invoiced
        ) VALUES (
            p_tenant, p_account, p_call_id, p_leg, p_caller, p_callee, p_prefix, p_name,
            p_per_minute, p_connect_fee, p_initial_s, p_increment_s, o_total_s,
            o_reserved_micros, p_now_ms, p_answered_ms, p_now_ms, o_expires_at_ms, v_invoiced
        ) ON CONFLICT (tenant, call_id, leg) DO UPDATE SET
            total_s = excluded.total_s,
            reserved_micros = excluded.reserved_micros,
            answered_ms = coalesce(r.answered_ms, excluded.answered_ms),
            last_seen_ms = greatest(excluded.last_seen_ms, r.last_seen_ms),
            expires_at_ms = excluded.expires_at_ms
    )
    UPDATE accounts SET held_micros = held_micros + o_reserved_micros - v_reserved
        WHERE tenant = p_tenant AND account = p_account AND o_reserved_micros <> v_reserved;
    o_outcome := 'granted';
END
$$"""

_SETTLE = """
CREATE OR REPLACE FUNCTION cloudpbx_settle(
    p_tenant TEXT, p_account TEXT, p_call_id TEXT, p_leg TEXT, p_caller TEXT, p_callee TEXT,
    p_disposition TEXT, p_setup_ms BIGINT, p_answered_ms BIGINT, p_end_ms BIGINT,
    p_prefix TEXT, p_name TEXT, p_per_minute BIGINT, p_connect_fee BIGINT,
    p_initial_s INTEGER, p_increment_s INTEGER, p_invoiced BOOLEAN, p_now_ms BIGINT,
    OUT o_outcome TEXT, OUT o_holder TEXT,
    OUT o_tenant TEXT, OUT o_account TEXT, OUT o_call_id TEXT, OUT o_leg TEXT,
    OUT o_caller TEXT, OUT o_callee TEXT, OUT o_disposition TEXT, OUT o_setup_ms BIGINT,
    OUT o_answered_ms BIGINT, OUT o_end_ms BIGINT, OUT o_billable_s BIGINT,
    OUT o_amount_micros BIGINT, OUT o_rate_prefix TEXT, OUT o_rate_name TEXT,
    OUT o_per_minute_micros BIGINT, OUT o_connect_fee_micros BIGINT, OUT o_initial_s INTEGER,
    OUT o_increment_s INTEGER, OUT o_settled_ms BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    v_was reservations%ROWTYPE;
    v_invoiced BOOLEAN;
    v_charged BIGINT;
BEGIN
    PERFORM FROM accounts WHERE tenant = p_tenant AND account = p_account FOR UPDATE;
    IF NOT FOUND THEN
        o_outcome := 'unknown account';
        RETURN;
    END IF;
    -- A settled leg has no reservation (authorize never opens one for it), so this takes
    -- nothing when the CDR below turns out to exist.
    DELETE FROM reservations
        WHERE tenant = p_tenant AND call_id = p_call_id AND leg = p_leg
            AND account = p_account AND NOT (p_invoiced AND reserved_micros > 0)
        RETURNING * INTO v_was;
    IF NOT FOUND THEN  -- no reservation, or one this step must not take
        SELECT account INTO o_holder FROM reservations
            WHERE tenant = p_tenant AND call_id = p_call_id AND leg = p_leg;
        IF FOUND THEN
            o_outcome := CASE WHEN o_holder <> p_account THEN 'held by another'
                              ELSE 'holds prepaid money' END;
            RETURN;
        END IF;
    END IF;
    v_invoiced := p_invoiced OR coalesce(v_was.invoiced = 1, false);
    -- A held leg is priced at the rate it was authorized at (its rate is never NULL).
    INSERT INTO cdrs (
        tenant, account, call_id, leg, caller, callee, disposition, setup_ms, answered_ms,
        end_ms, billable_s, amount_micros, rate_prefix, rate_name, per_minute_micros,
        connect_fee_micros, initial_s, increment_s, settled_ms
    ) SELECT
        p_tenant, p_account, p_call_id, p_leg, p_caller, p_callee, p_disposition, p_setup_ms,
        p_answered_ms, p_end_ms, billed.s,
        CASE WHEN v_invoiced THEN billed.micros
             ELSE least(billed.micros, coalesce(v_was.reserved_micros, 0)) END,
        rate.prefix, rate.name, rate.per_minute, rate.connect_fee, rate.initial_s,
        rate.increment_s, p_now_ms
    FROM (SELECT
        CASE WHEN v_was.account IS NULL THEN p_prefix ELSE v_was.rate_prefix END AS prefix,
        CASE WHEN v_was.account IS NULL THEN p_name ELSE v_was.rate_name END AS name,
        coalesce(v_was.per_minute_micros, p_per_minute) AS per_minute,
        coalesce(v_was.connect_fee_micros, p_connect_fee) AS connect_fee,
        coalesce(v_was.initial_s, p_initial_s) AS initial_s,
        coalesce(v_was.increment_s, p_increment_s) AS increment_s
    ) AS rate, LATERAL (SELECT
        CASE WHEN rate.prefix IS NULL OR p_answered_ms IS NULL THEN 0
             ELSE cloudpbx_billed_s(rate.initial_s, rate.increment_s, p_end_ms - p_answered_ms)
        END AS s,
        CASE WHEN rate.prefix IS NULL OR p_answered_ms IS NULL THEN 0
             ELSE cloudpbx_cost_micros(
                rate.per_minute, rate.connect_fee, rate.initial_s, rate.increment_s,
                p_end_ms - p_answered_ms
             )
        END AS micros
    ) AS billed
    ON CONFLICT (tenant, call_id, leg) DO NOTHING
    RETURNING tenant, account, call_id, leg, caller, callee, disposition, setup_ms,
        answered_ms, end_ms, billable_s, amount_micros, rate_prefix, rate_name,
        per_minute_micros, connect_fee_micros, initial_s, increment_s, settled_ms
    INTO o_tenant, o_account, o_call_id, o_leg, o_caller, o_callee, o_disposition,
        o_setup_ms, o_answered_ms, o_end_ms, o_billable_s, o_amount_micros, o_rate_prefix,
        o_rate_name, o_per_minute_micros, o_connect_fee_micros, o_initial_s, o_increment_s,
        o_settled_ms;
    o_outcome := CASE WHEN FOUND THEN 'written' ELSE 'settled' END;
    IF o_outcome = 'settled' THEN  -- a repeat or a late event: the leg's one CDR stands
        SELECT tenant, account, call_id, leg, caller, callee, disposition, setup_ms,
            answered_ms, end_ms, billable_s, amount_micros, rate_prefix, rate_name,
            per_minute_micros, connect_fee_micros, initial_s, increment_s, settled_ms
        INTO o_tenant, o_account, o_call_id, o_leg, o_caller, o_callee, o_disposition,
            o_setup_ms, o_answered_ms, o_end_ms, o_billable_s, o_amount_micros,
            o_rate_prefix, o_rate_name, o_per_minute_micros, o_connect_fee_micros,
            o_initial_s, o_increment_s, o_settled_ms
        FROM cdrs WHERE tenant = p_tenant AND call_id = p_call_id AND leg = p_leg;
        RETURN;
    END IF;
    v_charged := CASE WHEN v_invoiced THEN 0 ELSE o_amount_micros END;
    -- The charge's ledger entry and the account, in one statement.
    WITH entry AS (
        INSERT INTO ledger (tenant, account, kind, amount_micros, reference, at_ms)
            SELECT p_tenant, p_account, 'charge', -v_charged, p_call_id || ' ' || p_leg,
                   p_now_ms
            WHERE v_charged > 0
    )
    UPDATE accounts SET balance_micros = balance_micros - v_charged,
                        held_micros = held_micros - coalesce(v_was.reserved_micros, 0)
        WHERE tenant = p_tenant AND account = p_account
            AND (v_charged > 0 OR coalesce(v_was.reserved_micros, 0) > 0);
END
$$"""

# Many requests in one statement and one transaction (one commit, one round trip): the
# store sends whatever requests queued while its connections were busy. The items run one
# after the other, ordered by account (then as sent), so two batches lock accounts in the
# same order and never deadlock; each item's outcome comes back with its index (from 1).
# These are the entry points (the single-request functions run inside them). Every
# lookup they make is by key, and ``enable_seqscan = off`` keeps it so: a plan made while
# a table was (nearly) empty would scan it, and plpgsql keeps a plan for the
# connection's life, so each call would cost more than the last as the table grows.

_AUTHORIZE_MANY = """
CREATE OR REPLACE FUNCTION cloudpbx_authorize_many(
    p_tenant TEXT[], p_account TEXT[], p_call_id TEXT[], p_leg TEXT[],
    p_prefix TEXT[], p_name TEXT[], p_per_minute BIGINT[], p_connect_fee BIGINT[],
    p_initial_s INTEGER[], p_increment_s INTEGER[],
    p_want_s BIGINT[], p_now_ms BIGINT[], p_answered_ms BIGINT[], p_hold_s BIGINT[],
    p_caller TEXT[], p_callee TEXT[], p_invoiced BOOLEAN[]
) RETURNS TABLE (
    o_item INTEGER, o_outcome TEXT, o_holder TEXT, o_granted_s BIGINT, o_total_s BIGINT,
    o_reserved_micros BIGINT, o_expires_at_ms BIGINT
) LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    i INTEGER;
BEGIN
    FOR i IN SELECT n FROM generate_subscripts(p_tenant, 1) AS n
             ORDER BY p_tenant[n], p_account[n], n LOOP
        RETURN QUERY SELECT i, a.* FROM cloudpbx_authorize(
            p_tenant[i], p_account[i], p_call_id[i], p_leg[i], p_prefix[i], p_name[i],
            p_per_minute[i], p_connect_fee[i], p_initial_s[i], p_increment_s[i], p_want_s[i],
            p_now_ms[i], p_answered_ms[i], p_hold_s[i], p_caller[i], p_callee[i],
            p_invoiced[i]
        ) AS a;
    END LOOP;
END
$$"""

_SETTLE_MANY = """
CREATE OR REPLACE FUNCTION cloudpbx_settle_many(
    p_tenant TEXT[], p_account TEXT[], p_call_id TEXT[], p_leg TEXT[], p_caller TEXT[],
    p_callee TEXT[], p_disposition TEXT[], p_setup_ms BIGINT[], p_answered_ms BIGINT[],
    p_end_ms BIGINT[], p_prefix TEXT[], p_name TEXT[], p_per_minute BIGINT[],
    p_connect_fee BIGINT[], p_initial_s INTEGER[], p_increment_s INTEGER[],
    p_invoiced BOOLEAN[], p_now_ms BIGINT[]
) RETURNS TABLE (
    o_item INTEGER, o_outcome TEXT, o_holder TEXT,
    o_tenant TEXT, o_account TEXT, o_call_id TEXT, o_leg TEXT, o_caller TEXT, o_callee TEXT,
    o_disposition TEXT, o_setup_ms BIGINT, o_answered_ms BIGINT, o_end_ms BIGINT,
    o_billable_s BIGINT, o_amount_micros BIGINT, o_rate_prefix TEXT, o_rate_name TEXT,
    o_per_minute_micros BIGINT, o_connect_fee_micros BIGINT, o_initial_s INTEGER,
    o_increment_s INTEGER, o_settled_ms BIGINT
) LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    i INTEGER;
BEGIN
    FOR i IN SELECT n FROM generate_subscripts(p_tenant, 1) AS n
             ORDER BY p_tenant[n], p_account[n], n LOOP
        RETURN QUERY SELECT i, s.* FROM cloudpbx_settle(
            p_tenant[i], p_account[i], p_call_id[i], p_leg[i], p_caller[i], p_callee[i],
            p_disposition[i], p_setup_ms[i], p_answered_ms[i], p_end_ms[i], p_prefix[i],
            p_name[i], p_per_minute[i], p_connect_fee[i], p_initial_s[i], p_increment_s[i],
            p_invoiced[i], p_now_ms[i]
        ) AS s;
    END LOOP;
END
$$"""

ONE_CALL_STEPS = Migration(
    4,
    "authorize and settle as Postgres functions, one statement for many requests",
    (
        _BILLED_S,
        _COST_MICROS,
        _ALLOWANCE_S,
        _AUTHORIZE,
        _SETTLE,
        _AUTHORIZE_MANY,
        _SETTLE_MANY,
    ),
    dialects=("postgres",),
)

MIGRATIONS: tuple[Migration, ...] = (
    PREPAID,
    TRACKED_LEGS,
    UNAMBIGUOUS_LEG_LOOKUP,
    ONE_CALL_STEPS,
)
LATEST_VERSION = MIGRATIONS[-1].version


def statements(migration: Migration, dialect: Dialect) -> tuple[str, ...]:
    """The migration's statements with the dialect's words filled in (none when the
    migration is not for that database)."""
    if dialect not in migration.dialects:
        return ()
    words = _WORDS[dialect]
    return tuple(statement.format_map(words) for statement in migration.statements)
