"""Prepaid credit control of a call (issue 5.2), over the shared billing store.

A prepaid tenant's call is rated by the dialled number's longest prefix
(:mod:`contracts.billing.rating`); a call to one of its own extensions is free unless the
tenant rates internal calls. The caller's leg (``A``) is the one billed, from the
tenant's account (``main``):

1. **INVITE**: a rated call reserves its connect fee and a first slice of talk time
   (``SLICE_S``, the edge's ``--credit-slice``) before any B leg exists; no money is a
   ``402 Insufficient Balance``, a destination without a rate a ``403 No Rate For
   Destination``.
2. **Answer**: the edge reports the answer and asks for the next slice; the call's
   cut-off is the answer plus everything granted.
3. **While it runs**: ``EXTEND_BEFORE_S`` before the cut-off the edge asks for another
   slice. When none comes (the money ran out, other calls of the account included), the
   call ends at the cut-off: BYE on both legs.
4. **End**: the leg is settled — one CDR, charged in the rate's increments — whatever
   ended it (BYE, CANCEL, busy, no answer, the cut-off). A leg whose edge died stops being
   extended; its reservation expires and any edge's :meth:`Credit.recover` settles it at
   its last activity plus ``RECOVER_GRACE_S``.

Every attempt of a prepaid tenant, rated or free, answered or not, gets its CDR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contracts.billing.rating import Rate
from contracts.billing.store import (
    BillingError,
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
#: The billed leg's name in CDRs and reservations.
BILLED_LEG = "A"
#: Talk time asked for at a time (the edge's ``--credit-slice``): what one call holds
#: beyond what it used, so what other calls of the account cannot have meanwhile.
SLICE_S = 60
#: How long before the cut-off the next slice is asked for (a quarter of a shorter slice).
EXTEND_BEFORE_S = 5.0
#: A reservation outlives the moment its next extension is due by this much.
HOLD_MARGIN_S = 15
#: A dead edge's leg is charged up to its last activity plus this.
RECOVER_GRACE_S = 30


@dataclass(frozen=True, slots=True)
class Billed:
    """A prepaid call's billing while it is set up: its rate (None: free) and when the
    INVITE came (epoch ms, the CDR's setup time)."""

    rate: Rate | None
    setup_ms: int
    caller: str
    callee: str


def rate_of(tenant: TenantSnapshot, number: str, *, internal: bool) -> Rate | Refused | None:
    """The rate of a call to ``number``: None for a free call (internal and not rated),
    a :class:`Refused` when nothing prices it."""
    plan = tenant.billing
    if internal and not plan.rate_internal_calls:
        return None
    rate = plan.rate_table.rate(number)
    if rate is None:
        return Refused(403, "No Rate For Destination")
    return None if rate.free else rate


class Credit:
    """Credit control on one billing store, for the prepaid tenants of this edge."""

    def __init__(self, store: BillingStore, slice_s: int = SLICE_S) -> None:
        if slice_s < 1:
            raise ValueError(f"a credit slice must be at least 1 s, not {slice_s}")
        self.store = store
        self.slice_s = slice_s
        #: Seconds before the cut-off at which the next slice is asked for.
        self.lead_s = min(EXTEND_BEFORE_S, slice_s / 4)

    async def open(
        self, tenant: str, call_id: str, billed: Billed, ring_s: int, now_ms: int
    ) -> Grant | Refused | None:
        """Reserve the first slice of a rated call (None for a free one)."""
        if billed.rate is None:
            return None
        grant = await self.store.authorize(
            tenant,
            ACCOUNT,
            call_id,
            BILLED_LEG,
            rate=billed.rate,
            want_s=self.slice_s,
            now_ms=now_ms,
            hold_s=ring_s + self.slice_s + HOLD_MARGIN_S,
            caller=billed.caller,
            callee=billed.callee,
        )
        if isinstance(grant, Grant):
            return grant
        log.info("call refused call-id=%s: %s", call_id, grant.reason)
        return Refused(402, "Insufficient Balance")

    async def extend(
        self, tenant: str, call_id: str, rate: Rate, answered_ms: int, now_ms: int
    ) -> int | None:
        """Ask for the next slice of an answered call: the call's new total seconds from
        the answer, or None when no more is granted (the cut-off stands)."""
        try:
            grant = await self.store.authorize(
                tenant,
                ACCOUNT,
                call_id,
                BILLED_LEG,
                rate=rate,
                want_s=self.slice_s,
                now_ms=now_ms,
                answered_ms=answered_ms,
                hold_s=self.slice_s + HOLD_MARGIN_S,
            )
        except BillingError as err:
            log.warning("credit not extended call-id=%s: %s", call_id, err)
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
    ) -> None:
        """Write the leg's CDR and charge it (exactly once, however often called)."""
        end = LegEnd(
            tenant=tenant,
            account=ACCOUNT,
            call_id=call_id,
            leg=BILLED_LEG,
            caller=billed.caller,
            callee=billed.callee,
            disposition=disposition,
            setup_ms=billed.setup_ms,
            answered_ms=answered_ms,
            end_ms=max(end_ms, answered_ms or billed.setup_ms),
            rate=billed.rate,
        )
        try:
            cdr = await self.store.settle(end, now_ms=end_ms)
        except BillingError:
            log.exception("CDR not written call-id=%s: recovery settles it", call_id)
            return
        log.info(
            "call settled call-id=%s %s %d s %d micros",
            call_id,
            cdr.disposition,
            cdr.billable_s,
            cdr.amount_micros,
        )

    async def recover(self, now_ms: int) -> int:
        """Settle the legs of edges that died (their reservations expired); how many."""
        return len(await self.store.recover(now_ms=now_ms, grace_s=RECOVER_GRACE_S))
