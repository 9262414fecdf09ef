"""The billing store's contract: prepaid accounts, reservations, CDRs and the ledger.

This module owns the *shape* of billing data and the interface every store honours; it
holds no I/O. ``contracts.stores.postgres`` (the cluster, asyncpg) and
``contracts.stores.sqlite`` (``cloudpbx dev``, aiosqlite) implement :class:`BillingStore`
and pass the same tests; the schema they share is :mod:`contracts.billing.migrations`.

Money is integer micros of the tenant's currency (one currency per tenant: its rates and
all its accounts are in it). Times are integer epoch milliseconds passed in by the caller
(``now_ms``): no store reads a clock to decide what has expired.

Credit control, per call leg keyed by ``(tenant, call_id, leg)``:

* :meth:`BillingStore.authorize` holds money for the leg: the first call reserves the
  connect fee plus the price of up to ``want_s`` seconds; each later call for the same leg
  extends that one reservation by up to ``want_s`` more (the next slice of the call). What
  can be held is the account's balance less every open reservation (its ``held_micros``).
  A reservation is held until ``expires_at_ms``; the edge extends it before then.
* :meth:`BillingStore.settle` writes the leg's one CDR and charges its cost, but never
  more than the leg's reservation, then releases the reservation. Settling again (a
  duplicate or late event) returns the CDR already written and charges nothing. A
  postpaid leg (``LegEnd.invoiced``) is priced in full on its CDR and charges nothing:
  postpaid tenants are invoiced from their CDRs.
* Legs that hold no money are tracked the same way, so a dead edge's call still gets its
  CDR: a free call's reservation holds nothing, and a postpaid leg's (``invoiced``)
  neither, whatever its rate.
* :meth:`BillingStore.recover` settles reservations whose edge stopped extending them
  (expired): as answered at the answer time the edge reported, up to its last activity
  plus ``grace_s`` but never beyond the time the reservation covered, with disposition
  ``recovered``: its billable seconds are what its amount paid for.

The bound on the balance: it never goes below zero. A reservation's money stays held until
the reservation is settled, even after it expired (a dead edge's call may still have
run), and a charge never exceeds its reservation; so ``balance >= held >= 0`` always holds
(the schema checks it too). The price of that bound: a call the edge cut off late is
charged at most what was reserved, and an answered leg that was never authorized (a free
rate) is charged nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from contracts.billing.rating import Rate, RateTable

#: The leg that ends with a recovered leg (``recover``), or None when none does.
Companion = Callable[[str], "str | None"]


class BillingError(Exception):
    """Something a billing store would not do; the subclasses say whose fault it is."""


class UnknownTenant(BillingError, LookupError):
    """The tenant was never provisioned (the caller's configuration is behind)."""


class UnknownAccount(BillingError, LookupError):
    """The account does not exist for that tenant (the caller's configuration is behind)."""


class InvalidRequest(BillingError, ValueError):
    """The caller asked for something that cannot be (a negative amount, times out of
    order, another currency, a reference reused for another amount); nothing changed."""


class SchemaTooNew(BillingError):
    """The database was migrated by a newer release than this one: refuse to touch it."""


class RefusalReason(StrEnum):
    """Why a leg got no (more) time: what the edge logs and tells the caller."""

    INSUFFICIENT_BALANCE = "insufficient balance"
    #: The leg's CDR is already written (settled or recovered): it cannot be extended.
    ALREADY_SETTLED = "already settled"


class Disposition(StrEnum):
    """How a call leg ended, as its CDR says."""

    ANSWERED = "answered"
    NO_ANSWER = "no answer"
    BUSY = "busy"
    FAILED = "failed"
    #: Refused by credit control before it rang (no money).
    REFUSED = "refused"
    #: Ended by credit control when a grant could not be extended.
    CUT_OFF = "cut off"
    #: Settled by :meth:`BillingStore.recover` after its edge died.
    RECOVERED = "recovered"


class LedgerKind(StrEnum):
    """What moved money on an account (the sign of the amount follows)."""

    TOP_UP = "top_up"
    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant: str
    plan: str
    #: ISO 4217 code ("EUR"): every rate and account of the tenant is in it.
    currency: str


@dataclass(frozen=True, slots=True)
class Account:
    tenant: str
    account: str
    currency: str
    balance_micros: int
    #: The sum of the account's open reservations.
    held_micros: int

    @property
    def available_micros(self) -> int:
        """What a new reservation may still take."""
        return self.balance_micros - self.held_micros


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held for one call leg while it rings and runs."""

    tenant: str
    account: str
    call_id: str
    leg: str
    caller: str
    callee: str
    rate: Rate
    #: The seconds from answer the leg may last (the sum of its grants).
    total_s: int
    reserved_micros: int
    started_ms: int
    answered_ms: int | None
    last_seen_ms: int
    expires_at_ms: int
    #: A postpaid leg, tracked (for recovery) without holding money: settled, it is
    #: priced in full and invoiced (:class:`LegEnd`).
    invoiced: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    account: Account
    reservations: tuple[Reservation, ...]


@dataclass(frozen=True, slots=True)
class Grant:
    """Time granted to a leg: it may run ``total_s`` seconds from answer; the edge
    extends (authorizes again) before ``expires_at_ms`` or the reservation runs out."""

    granted_s: int
    total_s: int
    reserved_micros: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """No (more) time for the leg; nothing changed."""

    reason: RefusalReason


@dataclass(frozen=True, slots=True)
class LegEnd:
    """How a call leg ended, as the edge saw it: what :meth:`BillingStore.settle` needs."""

    tenant: str
    account: str
    call_id: str
    leg: str
    caller: str
    callee: str
    disposition: Disposition
    setup_ms: int
    #: None when the leg was never answered (it costs nothing).
    answered_ms: int | None
    end_ms: int
    #: The rate the leg was rated at; a reservation's rate takes precedence.
    rate: Rate | None = None
    #: A postpaid leg: its CDR carries its whole price, to be invoiced from the CDRs;
    #: no money moves on the account now (and no reservation capped it).
    invoiced: bool = False

    def __post_init__(self) -> None:
        for name in ("tenant", "account", "call_id", "leg"):
            if not getattr(self, name):
                raise InvalidRequest(f"a leg end needs a {name}")
        answered = self.setup_ms if self.answered_ms is None else self.answered_ms
        if not 0 <= self.setup_ms <= answered <= self.end_ms:
            raise InvalidRequest(
                f"leg {self.call_id}/{self.leg}: times out of order (setup {self.setup_ms}, "
                f"answered {self.answered_ms}, end {self.end_ms})"
            )

    @property
    def duration_ms(self) -> int:
        """From answer to end; 0 when never answered."""
        return 0 if self.answered_ms is None else self.end_ms - self.answered_ms


@dataclass(frozen=True, slots=True)
class Cdr:
    """The one record of one call leg, written once."""

    tenant: str
    account: str
    call_id: str
    leg: str
    caller: str
    callee: str
    disposition: Disposition
    setup_ms: int
    answered_ms: int | None
    end_ms: int
    billable_s: int
    amount_micros: int
    #: The rate used (None: the leg was never rated, e.g. refused before rating).
    rate: Rate | None
    settled_ms: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tenant: str
    account: str
    kind: LedgerKind
    #: Signed: positive for top-ups and refunds, negative for charges.
    amount_micros: int
    #: The caller's reference (a payment id; ``call_id/leg`` for a charge), unique per
    #: account and kind: what makes a repeated top-up a no-op.
    reference: str
    at_ms: int


class BillingStore(Protocol):
    """Prepaid accounts, rate tables, reservations, CDRs and the ledger of all tenants."""

    async def migrate(self) -> int:
        """Bring the schema to the latest version (a no-op when it is there, safe when
        several processes run it at once); returns that version."""
        ...

    async def upsert_tenant(self, tenant: str, *, plan: str, currency: str) -> Tenant:
        """Create the tenant or change its plan (its currency never changes)."""
        ...

    async def create_account(self, tenant: str, account: str) -> Account:
        """Create an account (empty, in the tenant's currency); returns the one there."""
        ...

    async def replace_rates(self, tenant: str, rates: Iterable[Rate]) -> RateTable:
        """Replace the tenant's whole rate table at once."""
        ...

    async def rates(self, tenant: str) -> RateTable: ...

    async def top_up(
        self,
        tenant: str,
        account: str,
        amount_micros: int,
        *,
        reference: str,
        now_ms: int,
        kind: LedgerKind = LedgerKind.TOP_UP,
    ) -> LedgerEntry:
        """Credit the account (a top-up or a refund), once per ``reference``: a repeat
        returns the first entry and changes nothing."""
        ...

    async def balance(self, tenant: str, account: str) -> Balance: ...

    async def ledger(self, tenant: str, account: str) -> tuple[LedgerEntry, ...]:
        """The account's entries, oldest first."""
        ...

    async def authorize(
        self,
        tenant: str,
        account: str,
        call_id: str,
        leg: str,
        *,
        rate: Rate,
        want_s: int,
        now_ms: int,
        answered_ms: int | None = None,
        hold_s: int | None = None,
        caller: str = "",
        callee: str = "",
        invoiced: bool = False,
    ) -> Grant | Refusal:
        """Reserve (first call) or extend (later calls) up to ``want_s`` seconds for the
        leg. ``answered_ms`` records when the leg was answered, ``caller`` and ``callee``
        who it was between (for :meth:`recover`); the reservation is held ``hold_s``
        from ``now_ms`` (default: the seconds granted). ``invoiced``: a postpaid leg,
        tracked without money (every ``want_s`` is granted, nothing is held) so that
        :meth:`recover` closes it too. A later call keeps the first call's rate, caller,
        callee and ``invoiced``."""
        ...

    async def settle(self, end: LegEnd, *, now_ms: int) -> Cdr:
        """Write the leg's CDR and charge it, exactly once (module docstring)."""
        ...

    async def recover(
        self, *, now_ms: int, grace_s: int, companion: Companion | None = None
    ) -> tuple[Cdr, ...]:
        """Settle every reservation expired at ``now_ms``; returns the CDRs written.
        ``companion`` names the leg that ends with a recovered one (the callee's leg of a
        caller's): its CDR, free, with the same disposition and times, is written in the
        same transaction, so a recoverer that dies cannot leave one without the other."""
        ...

    async def cdrs(self, tenant: str, *, since_ms: int, until_ms: int) -> tuple[Cdr, ...]:
        """The tenant's CDRs that ended in ``[since_ms, until_ms)``, in end order."""
        ...

    async def close(self) -> None: ...
