"""The registrar: what a REGISTER does to the location service (RFC 3261 §10.3 steps 5–8).

Pure decision logic: a REGISTER that is already authenticated and authorized for a known
tenant (§10.3 steps 1–4 are the caller's), the AoR's live bindings, ``now``, the
tenant's policy and the address the request came from go in; a
:class:`RegistrarDecision` comes out: the status to answer, the :class:`Changes` to
write, and the bindings the 200 OK lists. No I/O happens here; a store applies the
changes atomically and :func:`build_response` turns the outcome into the response.
Malformed fields raise :class:`~sipedge.sip.errors.ParseError` (answered at the
boundary); registrar refusals (404, 400 for a bad ``*``, 423, 500, 403) are decisions.

The call site (the edge's REGISTER pipeline) reads::

    target = address_of_record(request, policy)
    if isinstance(target, RegistrarDecision):                      # 404
        return build_response(request, target, (), now)
    decision, after = await store.update(
        tenant, target, lambda existing: decide(request, existing, now, policy, source), now
    )
    return build_response(request, decision, after, now)

RFC 5626 outbound (flow tokens, replacing a binding by ``+sip.instance``/``reg-id``)
and RFC 3327 Path are not implemented: instance and reg-id are stored and echoed only.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate

from sipedge.location import NO_CHANGES, Q_MAX_MILLI, Binding, Changes, Source, merged
from sipedge.sip.address import Address
from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.headers import ContactWildcard, parse_uint
from sipedge.sip.message import Request, Response, make_response
from sipedge.sip.uri import SipUri

#: §10.3 step 6: a registrar may answer 423 only to intervals shorter than one hour.
_ONE_HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """What the registrar needs to know about one tenant.

    ``domain`` is the tenant's SIP domain (AoRs are ``sip:<extension>@<domain>`` whatever
    host the phone put in To); ``extensions`` are the users that may register.
    """

    domain: str
    extensions: Container[str]
    min_expires_s: int = 60
    max_expires_s: int = 3600
    default_expires_s: int = 3600
    max_contacts: int = 10


@dataclass(frozen=True, slots=True)
class RegistrarDecision:
    """The outcome of one REGISTER: a status, the changes to write, the 200's bindings.

    ``bindings`` is the AoR's live bindings once ``changes`` apply (§10.3 step 8);
    ``headers`` are extra response header fields (``Min-Expires`` for a 423).
    """

    status: int
    reason: str
    aor: str | None = None
    changes: Changes = NO_CHANGES
    bindings: tuple[Binding, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == 200


class _Refusal(Exception):
    """A registrar refusal found while reading the contacts; aborts the whole update."""

    def __init__(self, status: int, reason: str, *headers: tuple[str, str]) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers

    def decision(self, aor: str) -> RegistrarDecision:
        return RegistrarDecision(self.status, self.reason, aor, headers=self.headers)


def address_of_record(request: Request, policy: RegistrarPolicy) -> str | RegistrarDecision:
    """The canonical AoR the To header names (§10.3 step 5), or the 404 to answer.

    To must be a SIP or SIPS URI whose user is an extension of the tenant; the AoR is
    built on the tenant's domain, not on the host the phone wrote.
    """
    uri = request.to.uri
    if not isinstance(uri, SipUri) or uri.user is None or uri.user not in policy.extensions:
        return RegistrarDecision(404, "Not Found")
    return SipUri(policy.domain.lower(), uri.user).aor


def decide(
    request: Request,
    existing: Sequence[Binding],
    now: float,
    policy: RegistrarPolicy,
    source: Source,
) -> RegistrarDecision:
    """Decide a REGISTER against the AoR's ``existing`` bindings (§10.3 steps 5–8).

    No Contact is a fetch (nothing changes). ``Contact: *`` is accepted only alone
    (the parser refuses it mixed with others) and with ``Expires: 0``, else 400.
    Too many contacts is a **403**: the limit is the tenant's administrative policy,
    so repeating the request cannot succeed (§21.4.4) until bindings are removed or
    expire, whereas a 503 would claim a temporary overload and invite the phone to
    retry or fail over to another edge (§21.5.4) that shares the same store and
    answers the same. Only a request that grows the set is refused, so refreshes still
    work after the limit is lowered.
    """
    if request.method != "REGISTER":
        raise ProtocolMisuse(f"the registrar was handed a {request.method}")
    target = address_of_record(request, policy)
    if isinstance(target, RegistrarDecision):
        return target
    live = [binding for binding in existing if binding.is_live(now)]
    contacts = request.contacts
    try:
        if isinstance(contacts, ContactWildcard):
            changes = _remove_all(request, live)
        else:
            changes = _register(request, contacts, live, now, policy, source)
    except _Refusal as refusal:
        return refusal.decision(target)
    after = merged(live, changes, now)
    if len(after) > max(policy.max_contacts, len(live)):
        return RegistrarDecision(403, "Forbidden: too many contacts for this AoR", target)
    return RegistrarDecision(200, "OK", target, changes, tuple(after))


def _remove_all(request: Request, live: Sequence[Binding]) -> Changes:
    """``Contact: *`` (§10.3 step 6): remove every binding, CSeq rule permitting."""
    if request.expires != 0:
        raise _Refusal(400, "Bad Request: Contact '*' requires Expires: 0")
    for binding in live:
        _check_order(binding, request)
    return Changes(removals=frozenset(binding.contact for binding in live))


def _register(
    request: Request,
    contacts: Iterable[Address],
    live: Sequence[Binding],
    now: float,
    policy: RegistrarPolicy,
    source: Source,
) -> Changes:
    """Each contact in turn (§10.3 step 7): add, refresh or (expires 0) remove."""
    stored = {binding.contact: binding for binding in live}
    upserts: dict[str, Binding] = {}
    removals: set[str] = set()
    for address in contacts:
        uri = address.uri
        if not isinstance(uri, SipUri):
            raise _Refusal(400, "Bad Request: Contact must be a SIP or SIPS URI")
        contact = str(uri)
        expires_s = _expires_s(address, request, policy)
        _check_order(stored.get(contact), request)
        if expires_s == 0:
            upserts.pop(contact, None)
            if contact in stored:
                removals.add(contact)
        else:
            removals.discard(contact)
            upserts[contact] = _binding(uri, address, request, now + expires_s, source)
    return Changes(tuple(upserts.values()), frozenset(removals))


def _expires_s(address: Address, request: Request, policy: RegistrarPolicy) -> int:
    """The contact's ``expires``, else the Expires header, else the default (§10.3 step 6).

    Below the minimum (and not zero) is a 423 with Min-Expires; above the maximum is
    shortened to it (§10.2.1: the registrar may choose a shorter interval).
    """
    raw = address.params.get("expires")
    if raw is not None:
        requested = parse_uint(raw, "Contact expires")
    elif request.expires is not None:
        requested = request.expires
    else:
        requested = policy.default_expires_s
    if requested == 0:
        return 0
    if requested < policy.min_expires_s and requested < _ONE_HOUR_S:
        raise _Refusal(423, "Interval Too Brief", ("Min-Expires", str(policy.min_expires_s)))
    return min(requested, policy.max_expires_s)


def _check_order(stored: Binding | None, request: Request) -> None:
    """Same Call-ID and a CSeq not above the stored one: abort with 500 (§10.3 step 7)."""
    if (
        stored is not None
        and stored.call_id == request.call_id
        and request.cseq.number <= stored.cseq
    ):
        raise _Refusal(500, "Server Internal Error: out of order CSeq")


def _binding(
    uri: SipUri, address: Address, request: Request, expires_at: float, source: Source
) -> Binding:
    reg_id = address.params.get("reg-id")
    return Binding(
        contact=str(uri),
        expires_at=expires_at,
        call_id=request.call_id,
        cseq=request.cseq.number,
        source=source,
        q_milli=_q_milli(address.params.get("q")),
        instance=address.params.get("+sip.instance"),
        reg_id=None if reg_id is None else parse_uint(reg_id, "Contact reg-id"),
        user_agent=request.headers.get("User-Agent"),
        behind_nat=not _reachable_as_written(uri, source),
    )


def _q_milli(text: str | None) -> int:
    """A q-value (already checked by the parser: ``0``, ``0.5``, ``1.000``) in thousandths."""
    if text is None:
        return Q_MAX_MILLI
    whole, _, fraction = text.partition(".")
    return int(whole) * 1000 + int((fraction + "000")[:3])


def _reachable_as_written(uri: SipUri, source: Source) -> bool:
    """The Contact names the address and port the request came from (no NAT between)."""
    if uri.effective_port != source.port:
        return False
    address = _ip_text(uri.host_address)
    # a host name in Contact: we cannot tell, so treat it as NAT
    return address is not None and address == _ip_text(source.ip)


@functools.lru_cache(maxsize=4096)
def _ip_text(host: str) -> str | None:
    """The canonical text of an IP address literal (equal texts: equal addresses), or None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def contact_value(binding: Binding, now: float) -> str:
    """One Contact of a 200 to REGISTER: the URI and its remaining ``expires`` (step 8)."""
    value = f"<{binding.contact}>;expires={binding.remaining_s(now)}"
    if binding.q_milli != Q_MAX_MILLI:
        value += f";q={binding.q}"
    if binding.instance is not None:
        value += f";+sip.instance={binding.instance}"
    if binding.reg_id is not None:
        value += f";reg-id={binding.reg_id}"
    return value


def build_response(
    request: Request,
    decision: RegistrarDecision,
    bindings_after: Iterable[Binding],
    now: float,
    *,
    to_tag: str | None = None,
) -> Response:
    """The response to the REGISTER (§8.2.6, §10.3 step 8).

    Via, From, To, Call-ID and CSeq are copied and To gets a tag; a 200 lists every
    live binding in ``bindings_after`` as a Contact with its remaining ``expires`` and
    carries a Date. ``to_tag`` defaults to one derived from the request, so that a
    retransmission answered again gets the same tag.
    """
    tag = to_tag if to_tag is not None else _derived_tag(request)
    response = make_response(request, decision.status, decision.reason, to_tag=tag)
    for name, value in decision.headers:
        response.headers.add(name, value)
    if decision.ok:
        for binding in bindings_after:
            if binding.is_live(now):
                response.headers.add("Contact", contact_value(binding, now))
        response.headers.add("Date", _http_date(math.floor(now)))
    return response


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    """The Date header's value (RFC 3261 §20.17) for a whole second: one per second."""
    return formatdate(second, usegmt=True)


def _derived_tag(request: Request) -> str:
    seed = f"{request.call_id}\n{request.cseq}\n{request.branch or ''}"
    return hashlib.blake2s(seed.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
