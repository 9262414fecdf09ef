"""Rating (contracts.billing.rating): billed seconds, cost and affordable duration, as
tables of the cases issue 5 names (59.9 s and 60.0 s on 60/60, 1/1, the connect fee once,
answered zero-second calls, unanswered calls never charged)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.billing.rating import MICROS_PER_UNIT, Rate, RateTable, RatingError

#: 0.60 a minute (10,000 micros a second), connect fee 0.10.
CENTS = MICROS_PER_UNIT // 100
BY_MINUTE = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=60, increment_s=60)
BY_SECOND = Rate("49", 60 * CENTS, connect_fee_micros=10 * CENTS, initial_s=1, increment_s=1)
HALF_THEN_SIX = Rate("49", 60 * CENTS, initial_s=30, increment_s=6)


@pytest.mark.parametrize(
    ("rate", "duration_ms", "billed_s"),
    [
        (BY_MINUTE, 0, 0),
        (BY_MINUTE, 1, 60),
        (BY_MINUTE, 59_900, 60),
        (BY_MINUTE, 60_000, 60),
        (BY_MINUTE, 60_001, 120),
        (BY_MINUTE, 119_999, 120),
        (BY_SECOND, 0, 0),
        (BY_SECOND, 1, 1),
        (BY_SECOND, 59_900, 60),
        (BY_SECOND, 60_000, 60),
        (BY_SECOND, 60_001, 61),
        (HALF_THEN_SIX, 5_000, 30),
        (HALF_THEN_SIX, 30_000, 30),
        (HALF_THEN_SIX, 30_001, 36),
        (HALF_THEN_SIX, 36_000, 36),
        (HALF_THEN_SIX, 95_000, 96),
    ],
)
def test_billed_seconds_round_up_to_the_increments(
    rate: Rate, duration_ms: int, billed_s: int
) -> None:
    assert rate.billed_s(duration_ms) == billed_s


@pytest.mark.parametrize(
    ("rate", "duration_ms", "answered", "cost_micros"),
    [
        (BY_MINUTE, 59_900, True, 70 * CENTS),  # fee once + one minute
        (BY_MINUTE, 60_000, True, 70 * CENTS),
        (BY_MINUTE, 60_001, True, 130 * CENTS),  # fee once + two minutes
        (BY_SECOND, 59_900, True, 70 * CENTS),
        (BY_SECOND, 1_000, True, 10 * CENTS + CENTS),
        (BY_MINUTE, 0, True, 10 * CENTS),  # answered, zero seconds: the fee alone
        (BY_SECOND, 0, True, 10 * CENTS),
        (BY_MINUTE, 0, False, 0),  # unanswered: never charged
        (BY_MINUTE, 300_000, False, 0),
    ],
)
def test_cost_is_the_connect_fee_once_plus_the_billed_seconds(
    rate: Rate, duration_ms: int, answered: bool, cost_micros: int
) -> None:
    assert rate.cost_micros(duration_ms, answered=answered) == cost_micros


def test_a_price_per_second_that_is_not_whole_micros_rounds_up() -> None:
    odd = Rate("1", 1_000_001, initial_s=1, increment_s=1)  # 16,666.68… micros a second
    assert odd.price_micros(1) == 16_667
    assert odd.price_micros(60) == 1_000_001
    assert odd.price_micros(0) == 0


@pytest.mark.parametrize(
    ("rate", "available_micros", "connect_fee", "affordable_s"),
    [
        (BY_MINUTE, 70 * CENTS, True, 60),  # fee + exactly one minute
        (BY_MINUTE, 70 * CENTS - 1, True, 0),  # a micro short of the first increment
        (BY_MINUTE, 129 * CENTS, True, 60),  # not enough for the second minute
        (BY_MINUTE, 130 * CENTS, True, 120),
        (BY_MINUTE, 60 * CENTS, False, 60),  # already answered: no fee to cover
        (BY_SECOND, 10 * CENTS + 59 * CENTS, True, 59),
        (BY_SECOND, 10 * CENTS, True, 0),
        (HALF_THEN_SIX, 30 * CENTS, True, 30),
        (HALF_THEN_SIX, 36 * CENTS - 1, True, 30),
        (HALF_THEN_SIX, 36 * CENTS, True, 36),
        (BY_MINUTE, 0, True, 0),
        (BY_MINUTE, -5, True, 0),  # an account already below zero affords nothing
    ],
)
def test_affordable_duration_is_the_longest_increment_boundary_that_fits(
    rate: Rate, available_micros: int, connect_fee: bool, affordable_s: int
) -> None:
    assert rate.affordable_s(available_micros, connect_fee=connect_fee) == affordable_s


@given(
    per_minute=st.integers(1, 10**9),
    fee=st.integers(0, 10**8),
    initial_s=st.integers(1, 120),
    increment_s=st.integers(1, 120),
    available=st.integers(0, 10**11),
)
def test_a_call_cut_off_at_the_affordable_duration_never_costs_more_than_was_there(
    per_minute: int, fee: int, initial_s: int, increment_s: int, available: int
) -> None:
    rate = Rate(
        "", per_minute, connect_fee_micros=fee, initial_s=initial_s, increment_s=increment_s
    )
    limit_s = rate.affordable_s(available)
    if limit_s == 0:
        assert rate.cost_micros(1) > available  # not even the first increment
        return
    assert rate.billed_s(limit_s * 1000) == limit_s  # on a boundary
    assert rate.cost_micros(limit_s * 1000) <= available
    assert rate.cost_micros(limit_s * 1000 + 1) > available  # the next increment is not


def test_the_longest_prefix_wins_and_plus_is_ignored() -> None:
    table = RateTable(
        [
            Rate("", 1 * CENTS, name="world"),
            Rate("49", 2 * CENTS, name="Germany"),
            Rate("4915", 20 * CENTS, name="Germany mobile"),
        ]
    )
    assert table.rate("+4915112345678") is not None
    assert [table.rate(n).name for n in ("4915112345678", "4930123", "1212555", "4")] == [  # type: ignore[union-attr]
        "Germany mobile",
        "Germany",
        "world",
        "world",
    ]
    assert len(table) == 3


def test_no_matching_prefix_and_no_default_rate_means_no_rate() -> None:
    assert RateTable([Rate("49", CENTS)]).rate("1212555") is None


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"prefix": "49a", "per_minute_micros": 1}, "not digits"),
        ({"prefix": "49", "per_minute_micros": -1}, "per_minute_micros"),
        ({"prefix": "49", "per_minute_micros": 1.5}, "per_minute_micros"),
        ({"prefix": "49", "per_minute_micros": 1, "connect_fee_micros": -1}, "connect_fee"),
        ({"prefix": "49", "per_minute_micros": 1, "initial_s": 0}, "initial_s"),
        ({"prefix": "49", "per_minute_micros": 1, "increment_s": 3601}, "increment_s"),
    ],
)
def test_a_rate_that_cannot_be_says_which_value(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(RatingError, match=says):
        Rate(**kwargs)  # type: ignore[arg-type]


def test_two_rates_for_one_prefix_are_refused() -> None:
    with pytest.raises(RatingError, match="two rates"):
        RateTable([Rate("49", 1), Rate("49", 2)])


def test_a_free_rate_has_no_affordable_limit_to_ask_for() -> None:
    free = Rate("", 0)
    assert free.free
    assert free.cost_micros(3_600_000) == 0
    with pytest.raises(RatingError, match="free"):
        free.affordable_s(100)
