"""Credit control and call records (issue 5.2–5.4), over the shared billing store.

Every call attempt of every tenant gets one CDR per leg, whatever its plan; the plan
decides what the caller's leg (``A``, billed to the tenant's account ``main``) costs:

* **prepaid**: the dialled number is rated by its longest prefix
  (:mod:`contracts.billing.rating`); a call to one of the tenant's own extensions is free
  unless the tenant rates internal calls. The money the call may spend is reserved
  ahead, a slice at a time, and the call is cut off when no more comes.
* **postpaid**: rated the same way, priced in full when it ends, never cut off: the
  tenant is invoiced from its CDRs (``cloudpbx cdrs export``).
* **trial**: free (its limits are :mod:`.admission`'s).

The A leg's life in the store, the same for every plan so that a call whose edge died is
closed by another (a leg that holds no money is tracked all the same):

1. **INVITE**: the leg is opened before any B leg exists with a first slice of talk time
   (``SLICE_S``, the edge's ``--credit-slice``); for a prepaid rated call that reserves
   its connect fee and the slice's price, and no money is a ``402 Insufficient
   Balance``. A destination without a rate is a ``403 No Rate For Destination``; a
   billing store that does not answer, ``503 Billing Unavailable`` (no call without its
   record).
2. **Answer**: the edge reports the answer and asks for the next slice; a prepaid rated
   call's cut-off is the answer plus everything granted.
3. **While it runs**: ``EXTEND_BEFORE_S`` before its granted time runs out the edge asks
   for another slice. When a prepaid call gets none (the money ran out, other calls of
   the account included), it ends at the cut-off: BYE on both legs.
4. **End**: the A leg is settled — one CDR, charged in the rate's increments — whatever
   ended it (BYE, CANCEL, busy, no answer, the cut-off), and the B leg (the call to the
   callee, however many of its devices rang) gets its CDR too, at no charge. A leg whose
   edge died stops being extended; its reservation expires and any edge's
   :meth:`Credit.recover` settles it at its last activity plus ``RECOVER_GRACE_S``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contracts.billing.rating import Rate
from contracts.billing.store import (
    BillingStore,
    Disposition,
    Grant,
    LegEnd,
)
from contracts.snapshot import TenantSnapshot
from sipedge.calls.admission import Refused

log = logging.getLogger("sipedge.credit")

#: The account a tenant's calls are paid from.
ACCOUNT = "main"
#: The caller's leg (the billed one) and the callee's, in CDRs and reservations.
CALLER_LEG = "A"
CALLEE_LEG = "B"
#: The rate of a call nothing charges for (an internal call the tenant does not rate, a
#: trial's call): its leg is tracked and recorded all the same.
FREE_CALL = Rate("", 0, name="free")
#: Talk time asked for at a time (the edge's ``--credit-slice``): what one call holds
#: beyond what it used, so what other calls of the account cannot have meanwhile.
SLICE_S = 60
#: How long before the granted time runs out the next slice is asked for (a quarter of
#: a shorter slice).
EXTEND_BEFORE_S = 5.0
#: A reservation outlives the moment its next extension is due by this much.
HOLD_MARGIN_S = 15
#: A dead edge's leg is charged up to its last activity plus this.
RECOVER_GRACE_S = 30


@dataclass(frozen=True, slots=True)
class Billed:
    """A call's billing: its rate, whether it is invoiced (postpaid) and when the INVITE
    came (epoch ms, the CDR's setup time). An answered call, read back from the dialog
    store, has no rate here (None): its leg's reservation holds it."""

    rate: Rate | None
    setup_ms: int
    caller: str
    callee: str
    invoiced: bool = False

    @property
    def capped(self) -> bool:
        """Whether money limits the call (prepaid and not free): it has a cut-off."""
        return self.rate is not None and not self.invoiced and not self.rate.free


def rate_of(tenant: TenantSnapshot, number: str, *, internal: bool) -> Rate | Refused:
    """The rate of a call to ``number`` (:data:`FREE_CALL` when nothing charges for it),
    or a :class:`Refused` when the tenant charges for it and nothing prices it."""
    plan = tenant.billing
    if plan.plan == "trial" or (internal and not plan.rate_internal_calls):
        return FREE_CALL
    rate = plan.rate_table.rate(number)
    if rate is None:
        return Refused(403, "No Rate For Destination")
    return rate


class Credit:
    """Credit control and CDRs on one billing store, for every tenant of this edge."""

    def __init__(self, store: BillingStore, slice_s: int = SLICE_S) -> None:
        if slice_s < 1:
            raise ValueError(f"a credit slice must be at least 1 s, not {slice_s}")
        self.store = store
        self.slice_s = slice_s
        #: Seconds before the granted time runs out at which the next slice is asked for.
        self.lead_s = min(EXTEND_BEFORE_S, slice_s / 4)

    async def open(
        self, tenant: str, call_id: str, billed: Billed, ring_s: int, now_ms: int
    ) -> Grant | Refused:
        """Open the caller's leg with its first slice (money reserved if prepaid)."""
        assert billed.rate is not None  # rated on INVITE
        try:
            grant = await self.store.authorize(
                tenant,
                ACCOUNT,
                call_id,
                CALLER_LEG,
                rate=billed.rate,
                want_s=self.slice_s,
                now_ms=now_ms,
                hold_s=ring_s + self.slice_s + HOLD_MARGIN_S,
                caller=billed.caller,
                callee=billed.callee,
                invoiced=billed.invoiced,
            )
        except Exception:
            log.exception("billing store failed opening call-id=%s: refused", call_id)
            return Refused(503, "Billing Unavailable")
        if isinstance(grant, Grant):
            return grant
        log.info("call refused call-id=%s: %s", call_id, grant.reason)
        return Refused(402, "Insufficient Balance")

    async def extend(
        self, tenant: str, call_id: str, rate: Rate, answered_ms: int, now_ms: int
    ) -> int | None:
        """Ask for the next slice of an answered call: the leg's new total seconds from
        the answer, or None when no more is granted (a prepaid call's cut-off stands)."""
        try:
            grant = await self.store.authorize(
                tenant,
                ACCOUNT,
                call_id,
                CALLER_LEG,
                rate=rate,
                want_s=self.slice_s,
                now_ms=now_ms,
                answered_ms=answered_ms,
                hold_s=self.slice_s + HOLD_MARGIN_S,
            )
        except Exception:
            log.exception("credit not extended call-id=%s", call_id)
            return None
        return grant.total_s if isinstance(grant, Grant) else None

    async def settle(
        self,
        tenant: str,
        call_id: str,
        billed: Billed,
        disposition: Disposition,
        answered_ms: int | None,
        end_ms: int,
        *,
        callee_leg: bool,
    ) -> None:
        """Write the call's CDRs, the caller's leg charged (exactly once, however often
        called); ``callee_leg``: the call reached the callee, whose leg gets its CDR."""
        legs = (CALLER_LEG, CALLEE_LEG) if callee_leg else (CALLER_LEG,)
        for leg in legs:
            end = LegEnd(
                tenant=tenant,
                account=ACCOUNT,
                call_id=call_id,
                leg=leg,
                caller=billed.caller,
                callee=billed.callee,
                disposition=disposition,
                setup_ms=billed.setup_ms,
                answered_ms=answered_ms,
                end_ms=max(end_ms, answered_ms or billed.setup_ms),
                rate=billed.rate if leg == CALLER_LEG else None,
                invoiced=billed.invoiced and leg == CALLER_LEG,
            )
            try:
                cdr = await self.store.settle(end, now_ms=end_ms)
            except Exception:
                log.exception(
                    "CDR not written call-id=%s leg=%s: recovery settles it", call_id, leg
                )
                return
            log.info(
                "call leg settled call-id=%s leg=%s %s %d s %d micros",
                call_id,
                leg,
                cdr.disposition,
                cdr.billable_s,
                cdr.amount_micros,
            )

    async def recover(self, now_ms: int) -> int:
        """Settle the legs of edges that died (their reservations expired), and the
        callee legs of their calls; how many caller legs."""
        recovered = await self.store.recover(now_ms=now_ms, grace_s=RECOVER_GRACE_S)
        for cdr in recovered:
            if cdr.leg != CALLER_LEG:
                continue
            end = LegEnd(
                cdr.tenant,
                cdr.account,
                cdr.call_id,
                CALLEE_LEG,
                cdr.caller,
                cdr.callee,
                cdr.disposition,
                cdr.setup_ms,
                cdr.answered_ms,
                cdr.end_ms,
            )
            await self.store.settle(end, now_ms=now_ms)
        return len(recovered)
