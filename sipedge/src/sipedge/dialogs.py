"""The state of an established call: two dialogs, one per leg (RFC 3261 §12).

A B2BUA call is an A-leg dialog (with the caller) and a B-leg dialog (with the callee).
What must survive the edge process that set the call up — so that any process sharing
the store can route a BYE or a re-INVITE — is one :class:`Call` record, stored under
both legs' Call-IDs. The record is plain data with a JSON codec; the stores are
:class:`DialogStore` implementations (in memory for ``cloudpbx dev``, Redis in a
cluster) with the same tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

#: How long a dialog record outlives its last refresh without a BYE (a safety net).
DIALOG_TTL_S = 4 * 3600


@dataclass(frozen=True, slots=True)
class Leg:
    """One dialog as this B2BUA sees it (RFC 3261 §12.1): ids, target, CSeqs, route set.

    ``local_uri``/``remote_uri`` are the From/To URIs we use on requests we send in this
    dialog; ``peer`` is where requests go (``transport``, ``host``, ``port``: the
    phone's real, NAT-mapped address).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    local_cseq: int
    remote_cseq: int
    transport: str
    host: str
    port: int
    #: The tenant's trunk this leg runs through ("" for a phone): a request of ours its
    #: provider challenges is answered with the trunk's credentials.
    trunk: str = ""

    def next_cseq(self) -> Leg:
        return replace(self, local_cseq=self.local_cseq + 1)


@dataclass(frozen=True, slots=True)
class Call:
    """An answered call of one tenant: both legs and when it was answered."""

    tenant: str
    a: Leg
    b: Leg
    answered_at: float
    #: RFC 4028: the negotiated session interval (0: no session timer) and the deadline.
    session_interval_s: int = 0
    session_expires_at: float = 0.0
    #: The media relay (``HOST:PORT`` of its ng control) anchoring the call's media under
    #: the A-leg Call-ID; empty: the media flows between the phones.
    relay: str = ""
    #: The Call-ID of the leg whose 2xx carried the offer (an INVITE without SDP: RFC
    #: 3261 §13.2.1): our ACK to it waits for the other side's ACK, which holds the
    #: answer. Empty: no ACK is owed.
    awaiting_ack: str = ""
    #: Whether the call holds one of the tenant's concurrent-call slots (sipedge.quotas).
    holds_slot: bool = False
    #: When the call is cut off (epoch s; a trial's per-call limit); 0: never.
    cutoff_at: float = 0.0
    #: A trial tenant's call: its seconds count against the trial's day.
    trial: bool = False
    #: A prepaid call's INVITE time (epoch ms): its A leg is settled (a CDR) when it
    #: ends; 0: no credit control.
    billed_at_ms: int = 0
    #: The caller's leg it is recorded under when not ``A``: an attempt that reused a
    #: recorded Call-ID (sipedge.calls.credit).
    billed_leg: str = ""
    #: The trunks (names) whose channels the call holds: the one it came in by, the one
    #: it went out through (sipedge.quotas, ``trunk=``), freed when it ends.
    channels: tuple[str, ...] = ()
    #: The tenant's identity in the billing store when it is not its name: its Tenant's
    #: UID (:attr:`contracts.snapshot.TenantSnapshot.billing_id`), kept with the call so
    #: that it is settled on the account it was opened on.
    account: str = ""

    @property
    def billing_id(self) -> str:
        """The tenant's key in the billing store, which the call is charged under."""
        return self.account or self.tenant

    def leg_of(self, call_id: str) -> tuple[Leg, Leg] | None:
        """(this leg, the other leg) for a request in dialog ``call_id``."""
        if call_id == self.a.call_id:
            return self.a, self.b
        if call_id == self.b.call_id:
            return self.b, self.a
        return None

    def with_leg(self, leg: Leg) -> Call:
        return replace(self, a=leg) if leg.call_id == self.a.call_id else replace(self, b=leg)

    def to_json(self) -> str:
        """The stored form: compact JSON, keys sorted (what every edge process reads)."""
        fields = {
            "a": _leg_fields(self.a),
            "answered_at": self.answered_at,
            "b": _leg_fields(self.b),
            "session_expires_at": self.session_expires_at,
            "session_interval_s": self.session_interval_s,
            "tenant": self.tenant,
        }
        if self.relay:  # only anchored calls carry it: unanchored records stay as they were
            fields["relay"] = self.relay
        if self.awaiting_ack:
            fields["awaiting_ack"] = self.awaiting_ack
        if self.holds_slot:
            fields["holds_slot"] = True
        if self.cutoff_at:
            fields["cutoff_at"] = self.cutoff_at
        if self.trial:
            fields["trial"] = True
        if self.billed_at_ms:
            fields["billed_at_ms"] = self.billed_at_ms
        if self.billed_leg:
            fields["billed_leg"] = self.billed_leg
        if self.channels:
            fields["channels"] = list(self.channels)
        if self.account:
            fields["account"] = self.account
        return _JSON.encode(fields)

    @classmethod
    def from_json(cls, text: str | bytes) -> Call:
        raw: dict[str, Any] = json.loads(text)
        for side in ("a", "b"):
            raw[side]["route_set"] = tuple(raw[side]["route_set"])
            raw[side] = Leg(**raw[side])
        if "channels" in raw:
            raw["channels"] = tuple(raw["channels"])
        return cls(**raw)


#: One encoder for every record (``json.dumps`` builds a new one per call when given
#: options); with sorted keys the text is the same whatever order a dict was built in.
_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _leg_fields(leg: Leg) -> dict[str, Any]:
    """A leg as a JSON object (``dataclasses.asdict`` deep-copies every value: 3x slower)."""
    return {
        "call_id": leg.call_id,
        "host": leg.host,
        "local_cseq": leg.local_cseq,
        "local_tag": leg.local_tag,
        "local_uri": leg.local_uri,
        "port": leg.port,
        "remote_cseq": leg.remote_cseq,
        "remote_tag": leg.remote_tag,
        "remote_target": leg.remote_target,
        "remote_uri": leg.remote_uri,
        "route_set": list(leg.route_set),
        "transport": leg.transport,
        **({"trunk": leg.trunk} if leg.trunk else {}),
    }


class DialogStore(Protocol):
    """Calls by (tenant, Call-ID of either leg), shared by every edge process."""

    async def put(self, call: Call, now: float) -> None:
        """Store (or overwrite) ``call`` under both legs' Call-IDs."""
        ...

    async def get(self, tenant: str, call_id: str) -> Call | None: ...

    async def delete(self, call: Call) -> bool:
        """Remove ``call``; True for the one caller that actually removed it."""
        ...

    async def take(self, tenant: str, call_id: str) -> Call | None:
        """Remove the call that dialog ``call_id`` belongs to and return it: ``get`` and
        ``delete`` at once, so of several processes ending one call (a BYE from each
        side) exactly one gets it; the others get None, as if it never existed."""
        ...

    async def count(self, tenant: str) -> int: ...

    async def calls(self, tenant: str) -> list[Call]:
        """Every call of ``tenant`` in progress (to end them all: the tenant went away)."""
        ...


class MemoryDialogStore:
    """The embedded default: calls in this process's memory."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], Call] = {}

    async def put(self, call: Call, now: float) -> None:
        self._calls[(call.tenant, call.a.call_id)] = call
        self._calls[(call.tenant, call.b.call_id)] = call

    async def get(self, tenant: str, call_id: str) -> Call | None:
        return self._calls.get((tenant, call_id))

    async def delete(self, call: Call) -> bool:
        first = self._calls.pop((call.tenant, call.a.call_id), None)
        self._calls.pop((call.tenant, call.b.call_id), None)
        return first is not None

    async def take(self, tenant: str, call_id: str) -> Call | None:
        call = self._calls.get((tenant, call_id))
        if call is not None:
            await self.delete(call)
        return call

    async def count(self, tenant: str) -> int:
        return sum(1 for (name, _), _call in self._calls.items() if name == tenant) // 2

    async def calls(self, tenant: str) -> list[Call]:
        found = {call.a.call_id: call for (name, _), call in self._calls.items() if name == tenant}
        return list(found.values())
