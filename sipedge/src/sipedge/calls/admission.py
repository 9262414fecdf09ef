"""Whether a call may start, and how long it may last, before any B leg exists (issue 5.3).

Checked on every new call, in this order, each refusal a 403 whose reason phrase says
why (RFC 3261 §21.4.4: the server understood and will not; the phrase is for people):

1. A trial that is over: ``Trial Expired``.
2. A trial's minutes of the day (UTC) used up: ``Trial Minutes Used Up For Today``.
3. A trial calling a number that is no extension of its own, unless the Tenant lists it
   as verified: ``Trial Calls Internal Only``.
4. The tenant's concurrent calls (``limits.max_concurrent_calls``, 1 on a trial) all in
   progress, ringing ones included, on any edge process: ``Too Many Concurrent Calls``.

An admitted trial call ends ``billing.call_limit_s`` after its answer (or when the day's
minutes run out, if sooner): the edge sends BYE on both legs. Its seconds count against
the day when it ends. Calls of tenants without a concurrent-call limit that are not on
a trial cost no store round trip here.

Known gap: the cut-off timer runs in the edge process that answered the call. If that
process dies, the call is not cut off (its slot still lapses, ``_ANSWERED_GRACE_S`` after
the limit); the prepaid work's reservation recovery will cover this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contracts.snapshot import TenantSnapshot
from sipedge.dialogs import DIALOG_TTL_S
from sipedge.quotas import Quotas, utc_day

#: A set-up's slot lapses this long after the ring timeout unless the call is answered.
_SETUP_GRACE_S = 30
#: An answered trial call's slot lapses this long after its cut-off.
_ANSWERED_GRACE_S = 30


@dataclass(frozen=True, slots=True)
class Refused:
    """A call that may not start: the status and reason phrase to answer with."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call that may start."""

    #: Seconds after the answer at which the call is cut off; 0: no limit.
    limit_s: int = 0
    #: Whether it holds one of the tenant's concurrent-call slots (to free at its end).
    holds_slot: bool = False


UNLIMITED = Admitted()


class Admission:
    """The checks above, over the shared :class:`~sipedge.quotas.Quotas`."""

    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas

    @staticmethod
    def external(tenant: TenantSnapshot, number: str) -> Refused | None:
        """A call to ``number``, which is no extension of ``tenant``: refused on a trial
        unless verified; else None (routing decides: no route is a 404)."""
        plan = tenant.billing
        if plan.trial and number.removeprefix("+") not in plan.verified_numbers:
            return Refused(403, "Trial Calls Internal Only")
        return None

    async def admit(self, tenant: TenantSnapshot, call_id: str, now: float) -> Admitted | Refused:
        """Check a new call of ``tenant`` (A-leg ``call_id``) at epoch second ``now``."""
        plan, limits = tenant.billing, tenant.limits
        limit_s = 0
        if plan.trial:
            if plan.expires_at_s and now >= plan.expires_at_s:
                return Refused(403, "Trial Expired")
            left_s = plan.daily_minutes * 60 - await self.quotas.used_s(tenant.name, utc_day(now))
            if left_s <= 0:
                return Refused(403, "Trial Minutes Used Up For Today")
            limit_s = min(plan.call_limit_s, left_s)
        if not limits.max_concurrent_calls:
            return Admitted(limit_s) if limit_s else UNLIMITED
        until = now + limits.ring_timeout_s + _SETUP_GRACE_S
        held = await self.quotas.take_slot(
            tenant.name, call_id, limits.max_concurrent_calls, until, now
        )
        if not held:
            return Refused(403, "Too Many Concurrent Calls")
        return Admitted(limit_s, holds_slot=True)

    async def answered(self, tenant: str, call_id: str, admitted: Admitted, now: float) -> None:
        """The call was answered: its slot now lasts as long as the call may."""
        if admitted.holds_slot:
            lasts_s = admitted.limit_s + _ANSWERED_GRACE_S if admitted.limit_s else DIALOG_TTL_S
            await self.quotas.renew_slot(tenant, call_id, now + lasts_s)

    async def ended(
        self,
        tenant: str,
        call_id: str,
        *,
        holds_slot: bool,
        now: float,
        trial_answered_at: float = 0.0,
    ) -> None:
        """The call is over: free its slot; a trial's answered call counts its seconds
        (begun seconds, as the trial's day is counted) against the day it was answered."""
        if holds_slot:
            await self.quotas.free_slot(tenant, call_id)
        if trial_answered_at:
            seconds = max(0, math.ceil(now - trial_answered_at))
            await self.quotas.add_s(tenant, utc_day(trial_answered_at), seconds)
