"""Credit control's arithmetic (contracts.billing.credit), as tables: a leg's allowance on
the money it can hold, what it holds, what settling charges, where a recovered leg ends."""

from __future__ import annotations

import pytest

from contracts.billing import credit
from contracts.billing.rating import MICROS_PER_UNIT, Rate

CENTS = MICROS_PER_UNIT // 100
BY_MINUTE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)
HALF_THEN_SIX = Rate("1", 60 * CENTS, initial_s=30, increment_s=6)
FREE = Rate("800", 0)
FEE_ONLY = Rate("900", 0, connect_fee_micros=50 * CENTS)


@pytest.mark.parametrize(
    ("rate", "held_s", "budget_micros", "want_s", "allowance_s"),
    [
        (BY_MINUTE, 0, 70 * CENTS, 60, 60),  # the fee and one minute, exactly
        (BY_MINUTE, 0, 70 * CENTS - 1, 60, 0),  # a micro short
        (BY_MINUTE, 0, 500 * CENTS, 30, 30),  # no more than wanted
        (BY_MINUTE, 60, 129 * CENTS, 60, 60),  # extending: the second minute does not fit
        (BY_MINUTE, 60, 130 * CENTS, 60, 120),  # the fee is in the budget once
        (HALF_THEN_SIX, 30, 36 * CENTS, 60, 36),  # one 6 s step more
        (FREE, 0, 0, 600, 600),
        (FEE_ONLY, 0, 50 * CENTS, 600, 600),
        (FEE_ONLY, 0, 49 * CENTS, 600, 0),
    ],
)
def test_a_legs_allowance_is_what_its_budget_pays_for(
    rate: Rate, held_s: int, budget_micros: int, want_s: int, allowance_s: int
) -> None:
    got = credit.allowance_s(rate, held_s=held_s, budget_micros=budget_micros, want_s=want_s)
    assert got == allowance_s
    if allowance_s:
        assert credit.held_micros(rate, allowance_s) <= max(budget_micros, 0)


@pytest.mark.parametrize(
    ("rate", "duration_ms", "answered", "held", "charge_micros"),
    [
        (BY_MINUTE, 59_900, True, 70 * CENTS, 70 * CENTS),
        (BY_MINUTE, 60_001, True, 70 * CENTS, 70 * CENTS),  # capped at what was held
        (BY_MINUTE, 0, True, 70 * CENTS, 10 * CENTS),
        (BY_MINUTE, 30_000, False, 70 * CENTS, 0),
        (None, 30_000, True, 0, 0),  # never rated
        (FREE, 30_000, True, 0, 0),
    ],
)
def test_a_charge_is_the_cost_never_more_than_was_held(
    rate: Rate | None, duration_ms: int, answered: bool, held: int, charge_micros: int
) -> None:
    assert credit.charge_micros(rate, duration_ms, answered=answered, held=held) == charge_micros


@pytest.mark.parametrize(
    ("last_seen_ms", "grace_s", "now_ms", "end_ms"),
    [(1_000, 10, 100_000, 11_000), (1_000, 10, 5_000, 5_000), (1_000, 0, 100_000, 1_000)],
)
def test_a_recovered_leg_ends_at_last_activity_plus_grace_not_after_now(
    last_seen_ms: int, grace_s: int, now_ms: int, end_ms: int
) -> None:
    got = credit.recovered_end_ms(last_seen_ms=last_seen_ms, grace_s=grace_s, now_ms=now_ms)
    assert got == end_ms


@pytest.mark.parametrize(("covered_until_ms", "end_ms"), [(60_000, 11_000), (8_000, 8_000)])
def test_a_recovered_leg_never_runs_past_what_its_reservation_covered(
    covered_until_ms: int, end_ms: int
) -> None:
    got = credit.recovered_end_ms(
        last_seen_ms=1_000, grace_s=10, now_ms=100_000, covered_until_ms=covered_until_ms
    )
    assert got == end_ms


def test_an_invoiced_leg_is_charged_its_whole_cost_with_nothing_held() -> None:
    # Postpaid: 2 min 1 s on 60/60 is three minutes and the fee; not answered is free.
    assert credit.charge_micros(
        BY_MINUTE, 121_000, answered=True, held=0, invoiced=True
    ) == credit.held_micros(BY_MINUTE, 180)
    assert credit.charge_micros(BY_MINUTE, 121_000, answered=False, held=0, invoiced=True) == 0
