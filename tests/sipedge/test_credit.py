"""What a prepaid call is rated at (sipedge.calls.credit.rate_of), as a table."""

from __future__ import annotations

import pytest

from contracts.billing.rating import Rate
from contracts.snapshot import BillingPlan, TenantSnapshot
from sipedge.calls.admission import Refused
from sipedge.calls.credit import Credit, rate_of

GERMANY = Rate("49", 20_000)
FREE = Rate("800", 0)


def tenant(*rates: Rate, internal: bool = False) -> TenantSnapshot:
    plan = BillingPlan(plan="prepaid", rates=rates, rate_internal_calls=internal)
    return TenantSnapshot(name="acme", domain="acme.pbx.test", billing=plan)


@pytest.mark.parametrize(
    ("snapshot", "number", "internal", "expected"),
    [
        (tenant(GERMANY), "4930123456", False, GERMANY),
        (tenant(GERMANY), "2002", True, None),  # internal, not rated: free
        (tenant(GERMANY, internal=True), "4930", True, GERMANY),
        (tenant(GERMANY, internal=True), "2002", True, Refused(403, "No Rate For Destination")),
        (tenant(GERMANY), "1212555", False, Refused(403, "No Rate For Destination")),
        (tenant(GERMANY, FREE), "800123", False, None),  # a free rate needs no credit
    ],
)
def test_a_call_is_rated_by_the_longest_prefix_or_refused(
    snapshot: TenantSnapshot, number: str, internal: bool, expected: object
) -> None:
    assert rate_of(snapshot, number, internal=internal) == expected


def test_a_slice_is_at_least_a_second_and_extended_a_quarter_slice_ahead_at_most_5_s() -> None:
    store: object = None
    assert Credit(store, 60).lead_s == 5.0  # type: ignore[arg-type]
    assert Credit(store, 2).lead_s == 0.5  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 s"):
        Credit(store, 0)  # type: ignore[arg-type]
