"""The billing store's hot path, as steps run inside one short transaction each:
authorize (reserve or extend a leg), settle (write the leg's one CDR and charge it),
recover (settle a leg whose edge died), and the CDR export.

Each money step first locks the account row (``lock_account``), then reads the leg's
reservation and CDR: the lock serializes every step on one account, so reading and
writing balance, held money, reservation and CDR cannot interleave, and the CDR's primary
key ``(tenant, call_id, leg)`` makes a second CDR for a leg impossible. The arithmetic is
:mod:`contracts.billing.credit`; the bound it keeps is stated in
:mod:`contracts.billing.store`.

The SQLite store runs these steps for everything. The Postgres store runs
:func:`authorize` and :func:`settle` as the server-side functions of billing migration 4
(the same steps, in the same order, one statement per request or batch of requests) and
the rest from here; the store suite runs against both.
"""

from __future__ import annotations

from dataclasses import replace

from contracts.billing import credit
from contracts.billing.rating import Rate
from contracts.billing.store import (
    Cdr,
    Companion,
    Disposition,
    Grant,
    InvalidRequest,
    LedgerKind,
    LegEnd,
    Refusal,
    RefusalReason,
    Reservation,
)
from contracts.stores.provisioning import check_key, lock_account
from contracts.stores.tx import (
    CDR_COLUMNS,
    RESERVATION_COLUMNS,
    Tx,
    cdr_of,
    rate_values,
    reservation_of,
)

_LEG = "tenant = $1 AND call_id = $2 AND leg = $3"


async def authorize(
    tx: Tx,
    tenant: str,
    account: str,
    call_id: str,
    leg: str,
    *,
    rate: Rate,
    want_s: int,
    now_ms: int,
    answered_ms: int | None,
    hold_s: int | None,
    caller: str,
    callee: str,
    invoiced: bool = False,
) -> Grant | Refusal:
    """Reserve or extend the leg: lock, read, one write to the leg, one to the account."""
    check_key(tenant=tenant, account=account, call_id=call_id, leg=leg)
    check_request(want_s=want_s, hold_s=hold_s, now_ms=now_ms, answered_ms=answered_ms)
    available_micros = (await lock_account(tx, tenant, account)).available_micros
    held_leg, settled = await _leg(tx, tenant, call_id, leg)
    if settled:
        return Refusal(RefusalReason.ALREADY_SETTLED)
    if held_leg is not None and held_leg.account != account:
        raise held_by_another(call_id, leg, held_leg.account)
    # A new leg starts from an empty reservation at the rate it was rated at.
    was = held_leg or Reservation(
        tenant, account, call_id, leg, caller, callee, rate, 0, 0, now_ms, None, now_ms, now_ms,
        invoiced,
    )  # fmt: skip
    if was.invoiced:  # postpaid: tracked, nothing held
        total_s = was.total_s + want_s
    else:
        total_s = credit.allowance_s(
            was.rate,
            held_s=was.total_s,
            budget_micros=was.reserved_micros + available_micros,
            want_s=want_s,
        )
    granted_s = total_s - was.total_s
    if granted_s == 0:
        return Refusal(RefusalReason.INSUFFICIENT_BALANCE)
    grown = replace(
        was,
        total_s=total_s,
        reserved_micros=0 if was.invoiced else credit.held_micros(was.rate, total_s),
        answered_ms=answered_ms if was.answered_ms is None else was.answered_ms,
        last_seen_ms=max(now_ms, was.last_seen_ms),
        expires_at_ms=max(now_ms + 1000 * (hold_s or granted_s), was.expires_at_ms),
    )
    await (_insert_reservation if held_leg is None else _update_reservation)(tx, grown)
    await _move(tx, tenant, account, balance=0, held=grown.reserved_micros - was.reserved_micros)
    return Grant(granted_s, total_s, grown.reserved_micros, grown.expires_at_ms)


def check_request(*, want_s: int, hold_s: int | None, now_ms: int, answered_ms: int | None) -> None:
    """What :func:`authorize` refuses to do before it touches the store."""
    for name, time_ms in (("now_ms", now_ms), ("answered_ms", answered_ms)):
        if time_ms is not None and (type(time_ms) is not int or time_ms < 0):
            raise InvalidRequest(f"{name} must be epoch milliseconds, not {time_ms!r}")
    if type(want_s) is not int or want_s < 1:
        raise InvalidRequest(f"want_s must be a positive whole number of seconds, not {want_s!r}")
    if hold_s is not None and (type(hold_s) is not int or hold_s < 1):
        raise InvalidRequest(f"hold_s must be a positive whole number of seconds, not {hold_s!r}")


async def settle(tx: Tx, end: LegEnd, now_ms: int) -> Cdr:
    """Write the leg's CDR and charge it; when the CDR exists, return it unchanged."""
    check_key(tenant=end.tenant, account=end.account, call_id=end.call_id, leg=end.leg)
    await lock_account(tx, end.tenant, end.account)
    held_leg, settled = await _leg(tx, end.tenant, end.call_id, end.leg)
    if settled:  # a repeat or a late event: the leg's one CDR stands
        written = await _cdr(tx, end.tenant, end.call_id, end.leg)
        assert written is not None  # a CDR is never deleted
        return written
    if held_leg is not None and held_leg.account != end.account:
        raise held_by_another(end.call_id, end.leg, held_leg.account)
    return await _write_cdr(tx, end, held_leg, now_ms)


async def expired(tx: Tx, now_ms: int) -> list[tuple[str, str, str, str]]:
    """(tenant, account, call_id, leg) of every reservation expired at ``now_ms``."""
    rows = await tx.fetch(
        "SELECT tenant, account, call_id, leg FROM reservations WHERE expires_at_ms <= $1 "
        "ORDER BY expires_at_ms, tenant, call_id, leg",
        now_ms,
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def recover(
    tx: Tx,
    tenant: str,
    account: str,
    call_id: str,
    leg: str,
    now_ms: int,
    grace_s: int,
    companion: Companion | None = None,
) -> tuple[Cdr, ...]:
    """Settle the leg if its reservation is still there and expired (another process may
    have settled or extended it since :func:`expired` listed it), with its companion's
    CDR if it names one and that has none yet; else nothing."""
    await lock_account(tx, tenant, account)
    held_leg = await _reservation(tx, tenant, call_id, leg)
    if held_leg is None or held_leg.account != account or held_leg.expires_at_ms > now_ms:
        return ()
    start_ms = held_leg.started_ms if held_leg.answered_ms is None else held_leg.answered_ms
    covered_ms = None if held_leg.answered_ms is None else start_ms + 1000 * held_leg.total_s
    end_ms = credit.recovered_end_ms(
        last_seen_ms=held_leg.last_seen_ms,
        grace_s=grace_s,
        now_ms=now_ms,
        covered_until_ms=covered_ms,
    )
    end = LegEnd(
        tenant,
        account,
        call_id,
        leg,
        held_leg.caller,
        held_leg.callee,
        Disposition.RECOVERED,
        min(held_leg.started_ms, start_ms),  # an answer time before the first grant: skew
        held_leg.answered_ms,
        max(start_ms, end_ms),
        held_leg.rate,
    )
    cdr = await _write_cdr(tx, end, held_leg, now_ms)
    other = None if companion is None else companion(leg)
    if other is None:
        return (cdr,)
    other_held, other_settled = await _leg(tx, tenant, call_id, other)
    if other_settled or other_held is not None:  # written, or recovered on its own
        return (cdr,)
    free = replace(end, leg=other, rate=None, invoiced=False)
    return cdr, await _write_cdr(tx, free, None, now_ms)


async def cdrs(tx: Tx, tenant: str, since_ms: int, until_ms: int) -> tuple[Cdr, ...]:
    rows = await tx.fetch(
        f"SELECT {CDR_COLUMNS} FROM cdrs WHERE tenant = $1 AND end_ms >= $2 AND end_ms < $3 "
        "ORDER BY end_ms, call_id, leg",
        tenant,
        since_ms,
        until_ms,
    )
    return tuple(cdr_of(row) for row in rows)


async def _write_cdr(tx: Tx, end: LegEnd, held_leg: Reservation | None, now_ms: int) -> Cdr:
    """The leg's CDR, its charge and the release of its reservation (account locked)."""
    rate = end.rate if held_leg is None else held_leg.rate
    answered = end.answered_ms is not None
    held = 0 if held_leg is None else held_leg.reserved_micros
    if end.invoiced and held:
        raise holds_prepaid_money(end)
    invoiced = end.invoiced or (held_leg is not None and held_leg.invoiced)
    cdr = Cdr(
        end.tenant,
        end.account,
        end.call_id,
        end.leg,
        end.caller,
        end.callee,
        end.disposition,
        end.setup_ms,
        end.answered_ms,
        end.end_ms,
        credit.billable_s(rate, end.duration_ms, answered=answered),
        credit.charge_micros(
            rate, end.duration_ms, answered=answered, held=held, invoiced=invoiced
        ),
        rate,
        now_ms,
    )
    await tx.execute(
        f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12, $13, $14, $15, $16, $17, $18, $19)",
        *_cdr_values(cdr),
    )
    if held_leg is not None:
        await tx.execute("DELETE FROM reservations WHERE " + _LEG, end.tenant, end.call_id, end.leg)
    charged = 0 if invoiced else cdr.amount_micros  # postpaid: invoiced from CDRs
    if charged:
        await tx.execute(
            "INSERT INTO ledger (tenant, account, kind, amount_micros, reference, at_ms) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            end.tenant,
            end.account,
            LedgerKind.CHARGE.value,
            -charged,
            f"{end.call_id} {end.leg}",
            now_ms,
        )
    if held or charged:
        await _move(tx, end.tenant, end.account, balance=-charged, held=-held)
    return cdr


def held_by_another(call_id: str, leg: str, holder: str) -> InvalidRequest:
    return InvalidRequest(f"leg {call_id} {leg} is held by account {holder!r}")


def holds_prepaid_money(end: LegEnd) -> InvalidRequest:
    return InvalidRequest(f"leg {end.call_id} {end.leg} holds prepaid money: not invoiced")


async def _move(tx: Tx, tenant: str, account: str, *, balance: int, held: int) -> None:
    await tx.execute(
        "UPDATE accounts SET balance_micros = balance_micros + $3, "
        "held_micros = held_micros + $4 WHERE tenant = $1 AND account = $2",
        tenant,
        account,
        balance,
        held,
    )


async def _reservation(tx: Tx, tenant: str, call_id: str, leg: str) -> Reservation | None:
    row = await tx.fetchrow(
        f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE " + _LEG, tenant, call_id, leg
    )
    return None if row is None else reservation_of(row)


async def _cdr(tx: Tx, tenant: str, call_id: str, leg: str) -> Cdr | None:
    row = await tx.fetchrow(f"SELECT {CDR_COLUMNS} FROM cdrs WHERE " + _LEG, tenant, call_id, leg)
    return None if row is None else cdr_of(row)


async def _leg(tx: Tx, tenant: str, call_id: str, leg: str) -> tuple[Reservation | None, bool]:
    """The leg's reservation, and whether its CDR is written, in one round trip."""
    row = await tx.fetchrow(
        f"SELECT {RESERVATION_COLUMNS}, EXISTS (SELECT 1 FROM cdrs WHERE {_LEG}) "
        f"FROM (SELECT 1) AS one LEFT JOIN reservations ON {_LEG}",
        tenant,
        call_id,
        leg,
    )
    assert row is not None  # (SELECT 1) LEFT JOIN …: always one row
    return (None if row[0] is None else reservation_of(row[:-1])), bool(row[-1])


async def _update_reservation(tx: Tx, grown: Reservation) -> None:
    await tx.execute(
        "UPDATE reservations SET total_s = $4, reserved_micros = $5, answered_ms = $6, "
        "last_seen_ms = $7, expires_at_ms = $8 WHERE " + _LEG,
        grown.tenant,
        grown.call_id,
        grown.leg,
        grown.total_s,
        grown.reserved_micros,
        grown.answered_ms,
        grown.last_seen_ms,
        grown.expires_at_ms,
    )


async def _insert_reservation(tx: Tx, held: Reservation) -> None:
    await tx.execute(
        f"INSERT INTO reservations ({RESERVATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        held.tenant,
        held.account,
        held.call_id,
        held.leg,
        held.caller,
        held.callee,
        *rate_values(held.rate),
        held.total_s,
        held.reserved_micros,
        held.started_ms,
        held.answered_ms,
        held.last_seen_ms,
        held.expires_at_ms,
        int(held.invoiced),
    )


def _cdr_values(cdr: Cdr) -> tuple[object, ...]:
    return (
        cdr.tenant,
        cdr.account,
        cdr.call_id,
        cdr.leg,
        cdr.caller,
        cdr.callee,
        cdr.disposition.value,
        cdr.setup_ms,
        cdr.answered_ms,
        cdr.end_ms,
        cdr.billable_s,
        cdr.amount_micros,
        *rate_values(cdr.rate),
        cdr.settled_ms,
    )
