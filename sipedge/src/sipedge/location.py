"""The location service: where each address-of-record can be reached (RFC 3261 §10, §10.3).

This module owns the *shape* of location data and the contract every store honours; it
holds no I/O. A :class:`Binding` is one contact of one AoR of one tenant, keyed by
``(tenant, aor, contact)``: ``aor`` is the canonical ``sip:user@domain`` of the tenant's
domain and ``contact`` the canonical text of the Contact URI (RFC 3261 §10.3 step 7
compares contact URIs; canonical text stands in for §19.1.4 equality). Besides what the
phone asked for (q, expiry) a binding keeps what NAT handling needs: the transport,
address and port the REGISTER really came from and the edge listener that received it
(RFC 3581 symmetric response routing; requests to the phone go there, not to a private
Contact address), and the RFC 5626 ``+sip.instance`` / ``reg-id`` when present.

:class:`LocationStore` is the interface; ``sipedge.adapters.memory_location`` (for
``cloudpbx dev``) and ``sipedge.adapters.redis_location`` (for the cluster) implement it
and pass the same tests. Times are absolute seconds on the caller's clock (``now`` is
always passed in; no store reads a clock to decide what has expired).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

#: RFC 3261 §20.10 q-values are kept as integer thousandths (0..1000): no float equality.
Q_MAX_MILLI = 1000


@dataclass(frozen=True, slots=True)
class Source:
    """Where a REGISTER really came from, and which of our listeners received it.

    ``transport`` is upper case (``UDP``, ``TCP``, ``TLS``, ``WS``); ``edge`` names the
    receiving listener (pod and socket), the place keep-alives and requests must leave
    from so that the phone's NAT lets them in.
    """

    transport: str
    ip: str
    port: int
    edge: str = ""


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an address-of-record (RFC 3261 §10.3 steps 6–7)."""

    contact: str
    expires_at: float
    call_id: str
    cseq: int
    source: Source
    q_milli: int = Q_MAX_MILLI
    instance: str | None = None
    reg_id: int | None = None
    user_agent: str | None = None
    behind_nat: bool = False

    def is_live(self, now: float) -> bool:
        """Not yet expired at ``now``: expired bindings are never returned or routed to."""
        return self.expires_at > now

    def remaining_s(self, now: float) -> int:
        """Whole seconds left, for a Contact ``expires`` parameter (at least 1 while live)."""
        return max(1, math.ceil(self.expires_at - now - 1e-6)) if self.is_live(now) else 0

    @property
    def q(self) -> str:
        """The q-value as written on the wire: ``1``, ``0.5``, ``0.125``."""
        if self.q_milli >= Q_MAX_MILLI:
            return "1"
        return f"0.{self.q_milli:03d}".rstrip("0").rstrip(".") or "0"

    @property
    def needs_keepalive(self) -> bool:
        """A UDP binding behind NAT: its pinhole closes unless we ping it (OPTIONS)."""
        return self.behind_nat and self.source.transport == "UDP"


@dataclass(frozen=True, slots=True)
class Changes:
    """What one registrar decision does to an AoR: bindings added or replaced, removed."""

    upserts: tuple[Binding, ...] = ()
    removals: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals)


NO_CHANGES = Changes()


class LocationBusy(Exception):
    """An AoR changed under every attempt to update it: answer 500 with Retry-After.

    A temporary condition of our own (RFC 3261 §21.5.1), not the phone's fault.
    """


class Decision(Protocol):
    """Anything that carries :class:`Changes` (the registrar's decision does)."""

    @property
    def changes(self) -> Changes: ...


D = TypeVar("D", bound=Decision)


def ordered(bindings: Iterable[Binding]) -> list[Binding]:
    """Highest q first (RFC 3261 §16.6 target order), ties by contact text: deterministic."""
    return sorted(bindings, key=lambda b: (-b.q_milli, b.contact))


def merged(current: Iterable[Binding], changes: Changes, now: float) -> list[Binding]:
    """The live bindings of an AoR once ``changes`` apply, in :func:`ordered` order."""
    by_contact = {b.contact: b for b in current if b.is_live(now)}
    for contact in changes.removals:
        by_contact.pop(contact, None)
    for binding in changes.upserts:
        by_contact[binding.contact] = binding
    return ordered(b for b in by_contact.values() if b.is_live(now))


class LocationStore(Protocol):
    """Bindings per tenant and AoR, shared by every edge process (RFC 3261 §10.3).

    ``update`` is the only writer of bindings and is atomic per AoR against concurrent
    REGISTERs from other tasks and other processes: it reads the live bindings, calls
    ``decide`` (which must be pure: it may run more than once when another writer got
    there first), writes the decision's changes only if nothing changed meanwhile, and
    returns that decision with the AoR's bindings afterwards. An exception from
    ``decide`` (a :class:`~sipedge.sip.errors.ParseError`) propagates and writes nothing.
    """

    async def lookup(self, tenant: str, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor``, highest q first."""
        ...

    async def update(
        self, tenant: str, aor: str, decide: Callable[[list[Binding]], D], now: float
    ) -> tuple[D, list[Binding]]:
        """Read, ``decide`` and write atomically; the decision and the bindings after it."""
        ...

    async def remove_all(self, tenant: str) -> None:
        """Forget every binding of ``tenant`` (the tenant was deleted)."""
        ...

    async def count(self, tenant: str, now: float) -> int:
        """How many live bindings ``tenant`` has (a metrics gauge)."""
        ...

    async def nat_bindings(self, tenant: str, now: float, limit: int) -> list[tuple[str, Binding]]:
        """Up to ``limit`` live ``(aor, binding)`` pairs that need NAT keep-alives.

        Those are the bindings whose :attr:`Binding.needs_keepalive` holds, soonest to
        expire first; the keep-alive task sends each an OPTIONS from ``source.edge``.
        """
        ...
