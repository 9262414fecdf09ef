"""Admission of new calls (sipedge.calls.admission): a trial's rules and a tenant's
concurrent-call limit, as a table of tenants, times and answers."""

from __future__ import annotations

import pytest

from contracts.snapshot import BillingPlan, Limits, TenantSnapshot
from sipedge.calls.admission import Admission, Admitted, Refused
from sipedge.quotas import MemoryQuotas, utc_day

NOW = 1_798_700_000.0  # 2026-12-31, UTC


def tenant(*, trial: bool = False, max_calls: int = 0, **plan: object) -> TenantSnapshot:
    billing = (
        BillingPlan(plan="trial", call_limit_s=60, daily_minutes=10, **plan)  # type: ignore[arg-type]
        if trial
        else BillingPlan()
    )
    return TenantSnapshot(
        name="acme",
        domain="acme.pbx.test",
        limits=Limits(max_concurrent_calls=1 if trial else max_calls),
        billing=billing,
    )


@pytest.mark.asyncio
async def test_a_postpaid_tenant_without_limits_is_admitted_without_a_store_round_trip() -> None:
    quotas = MemoryQuotas()
    admitted = await Admission(quotas).admit(tenant(), "c1", NOW)
    assert admitted == Admitted(limit_s=0, holds_slot=False)
    assert quotas._slots == {}


@pytest.mark.asyncio
async def test_a_trial_call_is_cut_at_its_limit_and_holds_the_one_slot() -> None:
    admission = Admission(MemoryQuotas())
    trial = tenant(trial=True)
    assert await admission.admit(trial, "c1", NOW) == Admitted(limit_s=60, holds_slot=True)
    assert await admission.admit(trial, "c2", NOW) == Refused(403, "Too Many Concurrent Calls")
    await admission.ended("acme", "c1", holds_slot=True, now=NOW + 5)
    assert isinstance(await admission.admit(trial, "c2", NOW + 5), Admitted)


@pytest.mark.asyncio
async def test_a_trial_has_its_minutes_of_the_day_and_no_more() -> None:
    quotas = MemoryQuotas()
    admission = Admission(quotas)
    await quotas.add_s("acme", utc_day(NOW), 10 * 60 - 20)
    assert await admission.admit(tenant(trial=True), "c1", NOW) == Admitted(20, True)
    # The call lasts 20.2 s: begun seconds count, 21.
    await admission.ended("acme", "c1", holds_slot=True, trial_answered_at=NOW, now=NOW + 20.2)
    assert await quotas.used_s("acme", utc_day(NOW)) == 10 * 60 + 1
    refused = await admission.admit(tenant(trial=True), "c2", NOW + 30)
    assert refused == Refused(403, "Trial Minutes Used Up For Today")
    assert await quotas.take_slot("acme", "probe", 1, NOW + 99, NOW + 30)  # none held


@pytest.mark.asyncio
async def test_an_expired_trial_calls_no_more() -> None:
    admission = Admission(MemoryQuotas())
    ends = int(NOW) + 10
    assert isinstance(
        await admission.admit(tenant(trial=True, expires_at_s=ends), "c", NOW), Admitted
    )
    refused = await admission.admit(tenant(trial=True, expires_at_s=ends), "c", ends)
    assert refused == Refused(403, "Trial Expired")


@pytest.mark.parametrize(
    ("number", "refused"),
    [
        ("4915112345678", None),
        ("+4915112345678", None),
        ("4930123456", Refused(403, "Trial Calls Internal Only")),
    ],
)
def test_a_trial_calls_out_only_to_its_verified_numbers(
    number: str, refused: Refused | None
) -> None:
    trial = tenant(trial=True, verified_numbers=("4915112345678",))
    assert Admission.external(trial, number) == refused
    assert Admission.external(tenant(), number) is None  # not a trial: routing decides


@pytest.mark.asyncio
async def test_a_tenant_limit_counts_calls_from_the_invite_on() -> None:
    admission = Admission(MemoryQuotas())
    limited = tenant(max_calls=2)
    assert await admission.admit(limited, "c1", NOW) == Admitted(0, True)
    assert await admission.admit(limited, "c2", NOW) == Admitted(0, True)
    assert await admission.admit(limited, "c3", NOW) == Refused(403, "Too Many Concurrent Calls")
