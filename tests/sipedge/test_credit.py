"""What a call is rated at (sipedge.calls.credit.rate_of) and whether money caps it, as
tables."""

from __future__ import annotations

import pytest

from contracts.billing.rating import Rate
from contracts.snapshot import BillingPlan, Limits, TenantSnapshot
from sipedge.calls.admission import Refused
from sipedge.calls.credit import FREE_CALL, Billed, Credit, callee_leg_of, rate_of

GERMANY = Rate("49", 20_000)
FREE = Rate("800", 0)


def tenant(*rates: Rate, internal: bool = False, plan_name: str = "prepaid") -> TenantSnapshot:
    if plan_name == "trial":
        plan = BillingPlan(
            plan="trial", rates=rates, rate_internal_calls=internal, call_limit_s=60,
            daily_minutes=10,
        )  # fmt: skip
    else:
        plan = BillingPlan(plan=plan_name, rates=rates, rate_internal_calls=internal)
    limits = Limits(max_concurrent_calls=1 if plan_name == "trial" else 0)
    return TenantSnapshot(name="acme", domain="acme.pbx.test", billing=plan, limits=limits)


@pytest.mark.parametrize(
    ("snapshot", "number", "internal", "expected"),
    [
        (tenant(GERMANY), "4930123456", False, GERMANY),
        (tenant(GERMANY), "2002", True, FREE_CALL),  # internal, not rated: free
        (tenant(GERMANY, internal=True), "4930", True, GERMANY),
        (tenant(GERMANY, internal=True), "2002", True, Refused(403, "No Rate For Destination")),
        (tenant(GERMANY), "1212555", False, Refused(403, "No Rate For Destination")),
        (tenant(GERMANY, FREE), "800123", False, FREE),  # a free rate: tracked, no money
        (tenant(GERMANY, plan_name="postpaid"), "4930", False, GERMANY),
        (
            tenant(GERMANY, plan_name="postpaid"),
            "1212",
            False,
            Refused(403, "No Rate For Destination"),
        ),
        (tenant(GERMANY, internal=True, plan_name="trial"), "4930", True, FREE_CALL),
    ],
)
def test_a_call_is_rated_by_the_longest_prefix_or_refused(
    snapshot: TenantSnapshot, number: str, internal: bool, expected: object
) -> None:
    assert rate_of(snapshot, number, internal=internal) == expected


@pytest.mark.parametrize(
    ("rate", "invoiced", "capped"),
    [(GERMANY, False, True), (GERMANY, True, False), (FREE, False, False), (None, False, False)],
)
def test_only_money_held_ahead_caps_a_call(rate: Rate | None, invoiced: bool, capped: bool) -> None:
    assert Billed(rate, 0, "2001", "4930", invoiced).capped is capped


def test_a_slice_is_at_least_a_second_and_extended_a_quarter_slice_ahead_at_most_5_s() -> None:
    store: object = None
    assert Credit(store, 60).lead_s == 5.0  # type: ignore[arg-type]
    assert Credit(store, 2).lead_s == 0.5  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 s"):
        Credit(store, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("caller_leg", "callee_leg"),
    [("A", "B"), ("A.4", "B.4"), ("A.0", "B.0"), ("B", None), ("B.4", None), ("AB", None)],
)
def test_a_callers_leg_names_its_callees(caller_leg: str, callee_leg: str | None) -> None:
    assert callee_leg_of(caller_leg) == callee_leg


def test_an_attempt_reusing_a_recorded_call_id_gets_legs_named_after_its_cseq() -> None:
    first = Billed(GERMANY, 1_000, "2001", "4930", cseq=4)
    assert (first.caller_leg, first.callee_leg) == ("A", "B")
    retried = first.retried()
    assert retried is not None
    assert (retried.caller_leg, retried.callee_leg) == ("A.4", "B.4")
    assert retried.retried() is None  # its own legs are recorded too: nothing left to try
