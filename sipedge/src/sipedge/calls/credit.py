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
   :meth:`Credit.recover` settles it at its last activity plus ``RECOVER_GRACE_S`` (the
   callee's leg with it), and that edge ends the call if it still runs: BYE on both
   legs, so a dead edge's call outlives its money by at most the reservation's margin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from contracts.billing.rating import Rate
from contracts.billing.store import (
    BillingStore,
    Cdr,
    Disposition,
    Grant,
    LegEnd,
    RefusalReason,
)
from contracts.snapshot import TenantSnapshot
from sipedge.calls.admission import Refused

log = logging.getLogger("sipedge.credit")

#: The account a tenant's calls are paid from.
ACCOUNT = "main"
#: The caller's leg (the billed one) and the callee's, in CDRs and reservations. A new
#: attempt that reuses the Call-ID of one already recorded (a phone retrying after 488 with
#: another offer, as phones falling back from SRTP do) gets legs of its own, named after
#: its INVITE's CSeq: ``A.2`` and ``B.2``.
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
    #: The INVITE's CSeq number, which names the legs of an attempt reusing a Call-ID.
    cseq: int = 0
    #: The caller's leg: :data:`CALLER_LEG`, or the attempt's own (``A.<cseq>``).
    caller_leg: str = CALLER_LEG

    @property
    def callee_leg(self) -> str:
        return callee_leg_of(self.caller_leg) or CALLEE_LEG

    def retried(self) -> Billed | None:
        """The attempt under legs of its own, because the Call-ID's first attempt is
        already recorded; None when it already has them (this attempt is recorded)."""
        if self.caller_leg != CALLER_LEG:
            return None
        return replace(self, caller_leg=f"{CALLER_LEG}.{self.cseq}")

    @property
    def capped(self) -> bool:
        """Whether money limits the call (prepaid and not free): it has a cut-off."""
        return self.rate is not None and not self.invoiced and not self.rate.free


def callee_leg_of(caller_leg: str) -> str | None:
    """The callee's leg of a call whose caller's leg is ``caller_leg`` (None when that is
    not a caller's leg)."""
    if caller_leg == CALLER_LEG or caller_leg.startswith(f"{CALLER_LEG}."):
        return CALLEE_LEG + caller_leg.removeprefix(CALLER_LEG)
    return None


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
    ) -> tuple[Grant, Billed] | Refused:
        """Open the caller's leg with its first slice (money reserved if prepaid); the
        grant and the call's billing (under legs of its own when it reuses a recorded
        Call-ID)."""
        assert billed.rate is not None  # rated on INVITE
        try:
            grant = await self.store.authorize(
                tenant,
                ACCOUNT,
                call_id,
                billed.caller_leg,
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
            return grant, billed
        if grant.reason is RefusalReason.ALREADY_SETTLED:
            retried = billed.retried()
            if retried is not None:  # a new attempt reusing the Call-ID
                return await self.open(tenant, call_id, retried, ring_s, now_ms)
            log.info("call refused call-id=%s: attempt %s already recorded", call_id, billed.cseq)
            return Refused(400, "Call Attempt Already Recorded")
        log.info("call refused call-id=%s: %s", call_id, grant.reason)
        return Refused(402, "Insufficient Balance")

    async def extend(
        self,
        tenant: str,
        call_id: str,
        rate: Rate,
        answered_ms: int,
        now_ms: int,
        *,
        caller_leg: str = CALLER_LEG,
    ) -> int | None:
        """Ask for the next slice of an answered call: the leg's new total seconds from
        the answer, or None when no more is granted (a prepaid call's cut-off stands)."""
        try:
            grant = await self.store.authorize(
                tenant,
                ACCOUNT,
                call_id,
                caller_leg,
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
        called); ``callee_leg``: the call reached the callee, whose leg gets its CDR. An
        attempt refused before it was opened that reuses a recorded Call-ID gets legs of
        its own (:meth:`Billed.retried`)."""
        cdr = await self._settle_leg(tenant, call_id, billed, disposition, answered_ms, end_ms)
        if cdr is not None and cdr.setup_ms != billed.setup_ms:  # an earlier attempt's
            retried = billed.retried()
            if retried is None:
                return
            billed = retried
            cdr = await self._settle_leg(tenant, call_id, billed, disposition, answered_ms, end_ms)
        if cdr is not None and callee_leg:
            await self._settle_leg(
                tenant, call_id, billed, disposition, answered_ms, end_ms, callee=True
            )

    async def _settle_leg(
        self,
        tenant: str,
        call_id: str,
        billed: Billed,
        disposition: Disposition,
        answered_ms: int | None,
        end_ms: int,
        *,
        callee: bool = False,
    ) -> Cdr | None:
        """One leg's CDR (the caller's charged); None when the store failed (recovery
        settles the caller's leg)."""
        leg = billed.callee_leg if callee else billed.caller_leg
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
            rate=None if callee else billed.rate,
            invoiced=billed.invoiced and not callee,
        )
        try:
            cdr = await self.store.settle(end, now_ms=end_ms)
        except Exception:
            log.exception("CDR not written call-id=%s leg=%s: recovery settles it", call_id, leg)
            return None
        log.info(
            "call leg settled call-id=%s leg=%s %s %d s %d micros",
            call_id,
            leg,
            cdr.disposition,
            cdr.billable_s,
            cdr.amount_micros,
        )
        return cdr

    async def recover(self, now_ms: int) -> tuple[Cdr, ...]:
        """Settle the legs of edges that died (their reservations expired), each caller
        leg with its callee leg's CDR in the same transaction; the caller legs' CDRs."""
        recovered = await self.store.recover(
            now_ms=now_ms, grace_s=RECOVER_GRACE_S, companion=callee_leg_of
        )
        return tuple(cdr for cdr in recovered if callee_leg_of(cdr.leg) is not None)
