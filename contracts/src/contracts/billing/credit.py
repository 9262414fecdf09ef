"""Credit control's arithmetic: how long a leg may run on the money it can hold, what a
leg holds, what settling it charges and how long a recovered leg is taken to have run.

Pure (no store, no clock): both billing stores run these same rules inside their
transactions, so the Postgres and SQLite stores cannot disagree about money.

A leg's reservation always holds the cost of its whole allowance: the connect fee once
plus the price of ``total_s`` seconds (rounded up to the rate's increments). Extending a
leg grows that one allowance, so the connect fee is held once per leg however often the
edge extends it.
"""

from __future__ import annotations

from contracts.billing.rating import Rate


def allowance_s(rate: Rate, *, held_s: int, budget_micros: int, want_s: int) -> int:
    """The leg's new allowance: up to ``held_s + want_s`` seconds, as far as
    ``budget_micros`` (what the leg holds now plus what the account has available)
    pays for with the connect fee; never less than ``held_s``."""
    target_s = held_s + want_s
    if rate.free:
        return target_s
    if rate.per_minute_micros == 0:  # a connect fee only: no limit once it is paid
        return target_s if budget_micros >= rate.connect_fee_micros else held_s
    return max(held_s, min(target_s, rate.affordable_s(budget_micros)))


def held_micros(rate: Rate, total_s: int) -> int:
    """What a leg allowed ``total_s`` seconds holds: its most expensive outcome."""
    return rate.cost_micros(total_s * 1000)


def charge_micros(
    rate: Rate | None, duration_ms: int, *, answered: bool, held: int, invoiced: bool = False
) -> int:
    """What settling a leg charges: its cost, never more than it held (module
    :mod:`contracts.billing.store` states that bound); an invoiced (postpaid) leg's
    whole cost, which no reservation held."""
    if rate is None or not answered:
        return 0
    cost = rate.cost_micros(duration_ms)
    return cost if invoiced else min(cost, held)


def billable_s(rate: Rate | None, duration_ms: int, *, answered: bool) -> int:
    """The seconds the CDR says were billed (before any cap by the reservation)."""
    if rate is None or not answered:
        return 0
    return rate.billed_s(duration_ms)


def recovered_end_ms(
    *, last_seen_ms: int, grace_s: int, now_ms: int, covered_until_ms: int | None = None
) -> int:
    """Where a leg whose edge died is taken to have ended: its last known activity plus
    a bounded grace, not after now, and not after ``covered_until_ms`` (an answered
    leg's answer plus the seconds its reservation paid for: the edge would have cut
    it off there)."""
    end_ms = min(now_ms, last_seen_ms + grace_s * 1000)
    return end_ms if covered_until_ms is None else min(end_ms, covered_until_ms)
