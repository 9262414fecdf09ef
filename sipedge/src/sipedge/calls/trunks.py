"""Where a call goes (the tenant's dial plans, issue 6.5) and the messages of calls
through its SIP trunks (issue 6.3, 6.4). Pure: no I/O.

Routing (:func:`route`): the dialled number goes through the tenant's dial plans
(:mod:`contracts.dialplan`); a matching rule sends the rewritten number to one of the
tenant's extensions, out through a list of trunks, to voicemail (accepted, not served
yet: 480), or rejects it. Nothing matches: the number is looked up among the
extensions, then it is a 404 (a trial calling out is refused as admission says).

Out through a trunk (:func:`trunk_invite`): the provider is asked for the number at its
host (or through its outbound proxy, with a loose Route), From and P-Asserted-Identity
(RFC 3325) show the caller ID the trunk's policy says (the trunk's own number, the
caller's, or a fixed one), and the offer keeps only the trunk's codecs. Its 401 or 407 is
answered once with the trunk's credentials in a new INVITE of the same dialog with the
next CSeq (RFC 3261 §22.2, §8.1.3.5: :func:`with_credentials`). A server of the trunk's
provider that answers 503 or nothing gives way to its next server, if SRV lists more
(RFC 3263 §4.3: :func:`to_next_server`). A trunk that cannot take the call (408, any
5xx, our credentials refused, no answer in time) gives way to the next trunk
(:func:`fails_over`); any other final answer is the callee's and goes to the caller.

In from a trunk (:class:`TrunkSources`, :func:`inbound_call`): a request is a trunk's only
when it comes from the trunk's address (host or outbound proxy; the port too over UDP,
where a provider sends from the port it listens on); then the Request-URI names either
the Contact the trunk registered (:func:`sipedge.trunking.contact_user`, the DID in To)
or the DID itself. A DID the trunk does not list is a 404. Requests from anywhere else
are never a trunk's, whatever they say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from contracts.dialplan import Reject, ToExtension, ToTrunks, ToVoicemail
from contracts.sdp import SdpError, parse_sdp, serialize_sdp
from contracts.snapshot import Extension, TenantSnapshot
from contracts.trunk import Trunk
from sipedge.calls.admission import Admission, Refused
from sipedge.calls.build import Identity, b_leg_invite
from sipedge.sip.auth import (
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
)
from sipedge.sip.digest import answer_challenge
from sipedge.sip.grammar import quote
from sipedge.sip.message import Request, Response
from sipedge.sip.uri import SipUri
from sipedge.trunking import Hop, chosen_challenge, next_hop, trunk_of_contact_user

#: Voicemail routes are accepted in dial plans; until voicemail is served they answer so.
VOICEMAIL_NOT_SERVED = Refused(480, "Temporarily Unavailable (voicemail not served yet)")
NOT_FOUND = Refused(404, "Not Found")
#: What a dialled number may hold in a Request-URI user part as it is; '#' is escaped.
_DIALLED = re.compile(r"[0-9*+]*")


@dataclass(frozen=True, slots=True)
class Local:
    """To one of the tenant's extensions."""

    callee: Extension


@dataclass(frozen=True, slots=True)
class Outbound:
    """Out through ``trunks`` (in order), asking each for ``number``."""

    number: str
    trunks: tuple[Trunk, ...]
    no_answer_s: int


def route(tenant: TenantSnapshot, dialled: str) -> Local | Outbound | Refused:
    """Where a call of ``tenant`` to ``dialled`` goes."""
    routed = tenant.dial_plans.route(dialled)
    if routed is None:
        callee = tenant.extension(dialled)
        if callee is not None:
            return Local(callee)
        return Admission.external(tenant, dialled) or NOT_FOUND
    target = routed.route
    if isinstance(target, ToExtension):
        callee = tenant.extension(routed.number)
        return Local(callee) if callee is not None else NOT_FOUND
    if isinstance(target, Reject):
        return Refused(target.status, target.reason)
    if isinstance(target, ToVoicemail):
        return VOICEMAIL_NOT_SERVED
    assert isinstance(target, ToTrunks)
    refused = Admission.external(tenant, routed.number)
    if refused is not None:
        return refused
    trunks = tuple(trunk for name in target.trunks if (trunk := tenant.trunk(name)) is not None)
    return Outbound(routed.number, trunks, target.no_answer_s)


# --- out through a trunk -----------------------------------------------------------------


def fails_over(status: int, *, auth_refused: bool = False) -> bool:
    """Whether a trunk's final ``status`` means: try the next trunk. A 408 or 5xx says the
    trunk (not the callee) could not take the call; so does a challenge to credentials
    we already sent (the provider refused them)."""
    return status == 408 or 500 <= status < 600 or auth_refused


def presented(trunk: Trunk, number: str, display_name: str) -> tuple[str, str]:
    """The caller ID (user, display name) the provider sees for a caller with ``number``
    and ``display_name``: the trunk's own number, the caller's, or the fixed one."""
    if trunk.caller_id == "passthrough":
        return number, display_name
    if trunk.caller_id == "fixed":
        return trunk.caller_id_number, ""
    return trunk.from_user, ""


def request_uri(trunk: Trunk, number: str) -> str:
    """``sip:<number>@<provider>``: what the provider is asked to call."""
    user = number if _DIALLED.fullmatch(number) else number.replace("#", "%23")
    port = "" if trunk.port == 5060 else f":{trunk.port}"
    tcp = ";transport=tcp" if trunk.transport == "tcp" else ""
    return f"sip:{user}@{trunk.host}{port}{tcp}"


def trunk_invite(
    a_invite: Request,
    trunk: Trunk,
    *,
    number: str,
    caller_number: str,
    caller_name: str,
    call_id: str,
    from_tag: str,
    max_forwards: int,
    me: Identity,
) -> Request:
    """The B-leg INVITE asking ``trunk``'s provider for ``number``."""
    user, name = presented(trunk, caller_number, caller_name)
    shown = f"{quote(name)} " if name else ""
    identity = f"{shown}<{from_uri(trunk, user)}>"
    invite = b_leg_invite(
        a_invite,
        target=request_uri(trunk, number),
        from_value=f"{identity};tag={from_tag}",
        to_value=f"<{to_uri(trunk, number)}>",
        call_id=call_id,
        max_forwards=max_forwards,
        me=me,
    )
    invite.headers.add("P-Asserted-Identity", identity)
    if trunk.outbound_proxy:
        invite.headers.add("Route", f"<{trunk.outbound_proxy};lr>")
    if trunk.codecs and invite.body:
        invite.body = only_codecs(invite.body, trunk.codecs)
    return invite


def from_uri(trunk: Trunk, user: str) -> str:
    return f"sip:{user}@{trunk.from_domain}"


def to_uri(trunk: Trunk, number: str) -> str:
    user = number if _DIALLED.fullmatch(number) else number.replace("#", "%23")
    return f"sip:{user}@{trunk.from_domain}"


def only_codecs(body: bytes, codecs: Iterable[str]) -> bytes:
    """The offer with only ``codecs`` (encoding names, any case) in each RTP stream, in
    the trunk's order; an SDP we cannot read, or a stream left with none, goes as it
    came (the provider answers 488 then, which the caller gets)."""
    wanted = [codec.upper() for codec in codecs]
    try:
        sdp = parse_sdp(body)
    except SdpError:
        return body
    for index, media in enumerate(sdp.media):
        if not media.is_rtp:
            continue
        names = {}
        for payload_type in media.payload_types:
            rtpmap = media.rtpmap(payload_type)
            if rtpmap is not None:
                names[payload_type] = rtpmap.encoding_name.upper()
        kept = sorted(
            (pt for pt in media.payload_types if names.get(pt) in wanted),
            key=lambda pt: wanted.index(names[pt]),
        )
        if not kept:
            return body
        dropped = {str(pt) for pt in media.payload_types if pt not in kept}
        attributes = tuple(
            attribute
            for attribute in media.attributes
            if not (
                attribute.name.lower() in ("rtpmap", "fmtp")
                and (attribute.value or "").split(" ", 1)[0] in dropped
            )
        )
        formats = tuple(str(pt) for pt in kept)
        sdp = sdp.with_media(index, replace(media, formats=formats, attributes=attributes))
    return serialize_sdp(sdp)


def with_credentials(
    request: Request,
    response: Response,
    *,
    username: str,
    password: str,
    cnonce: str,
    via: str,
) -> Request | None:
    """``request`` again, answering the challenge of its 401 or 407 (§22.2): same dialog
    (Call-ID, From tag, To), a new branch (``via``) and the next CSeq (§8.1.3.5). None when
    no challenge in it is one we can answer. An INVITE, or an in-dialog request (a BYE,
    a re-INVITE) the provider challenges too."""
    chosen, header = chosen_challenge(response)
    if chosen is None:
        return None
    method = request.method
    credentials = answer_challenge(
        chosen,
        method=method,
        uri=request.uri_text,
        username=username,
        cnonce=cnonce,
        password=password,
        body=request.body,
    )
    answered = AUTHORIZATION if header == WWW_AUTHENTICATE else PROXY_AUTHORIZATION
    return _again(request, via, (answered, credentials.to_header_value()))


def to_next_server(request: Request, *, via: str) -> Request:
    """``request`` again for the next of the provider's servers, after the one it went to
    failed (RFC 3263 §4.3: a 503, or no answer at all): same dialog, a new branch
    (``via``) and the next CSeq, without the credentials the failed server's challenge
    asked for (the next server challenges afresh)."""
    return _again(request, via, None)


def _again(request: Request, via: str, credentials: tuple[str, str] | None) -> Request:
    """``request`` as a new transaction of its dialog: ``via``, the next CSeq and, in place
    of any it had, ``credentials`` (a header name and value)."""
    method = request.method
    fields: list[tuple[str, str]] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "via":
            value = via
        elif key == "cseq":
            value = f"{request.cseq.number + 1} {method}"
        elif key in (AUTHORIZATION.lower(), PROXY_AUTHORIZATION.lower()):
            continue
        fields.append((name, value))
    if credentials is not None:
        fields.append(credentials)
    again = Request(method, request.uri_text, fields)
    again.body = request.body
    return again


# --- in from a trunk ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrunkRef:
    tenant: str
    trunk: str


SourceKey = tuple[str, str, int]


class TrunkSources:
    """The addresses trunks' requests come from: (transport, IP, port; 0 over TCP,
    whose source ports are ephemeral) → the trunks there (several tenants may share a
    provider); and the networks trunks list as ``inboundSources``."""

    __slots__ = ("_by_source", "_networks")

    def __init__(
        self,
        entries: Iterable[tuple[SourceKey, TrunkRef]] = (),
        networks: Iterable[tuple[str, TrunkRef]] = (),
    ) -> None:
        by_source: dict[SourceKey, list[TrunkRef]] = {}
        for key, ref in entries:
            refs = by_source.setdefault(source_key(*key), [])
            if ref not in refs:
                refs.append(ref)
        self._by_source: Mapping[SourceKey, tuple[TrunkRef, ...]] = {
            key: tuple(refs) for key, refs in by_source.items()
        }
        self._networks: tuple[tuple[IPv4Network | IPv6Network, TrunkRef], ...] = tuple(
            (ip_network(network), ref) for network, ref in networks
        )

    def __len__(self) -> int:
        return len(self._by_source) + len(self._networks)

    def at(self, transport: str, host: str, port: int) -> tuple[TrunkRef, ...]:
        """The trunks whose requests come from there (empty: no trunk's)."""
        if not self._by_source:
            return ()
        return self._by_source.get(source_key(transport, host, port), ())

    def near(self, host: str) -> tuple[TrunkRef, ...]:
        """The trunks that list a network holding ``host`` in ``inboundSources``: an
        INVITE from there is theirs only when it calls one of their DIDs."""
        if not self._networks:
            return ()
        try:
            address = ip_address(host)
        except ValueError:
            return ()
        return tuple(dict.fromkeys(ref for network, ref in self._networks if address in network))


def source_key(transport: str, host: str, port: int) -> SourceKey:
    transport = transport.upper()
    return (transport, host, port if transport == "UDP" else 0)


def trunk_addresses(trunk: Trunk) -> list[Hop]:
    """Where a trunk's requests come from: its host and its outbound proxy (host names
    still to locate, by SRV where named without a port)."""
    hops = [Hop(trunk.host, trunk.port, trunk.transport.upper(), trunk.srv)]
    hop = next_hop(trunk)
    if hop not in hops:
        hops.append(hop)
    return hops


@dataclass(frozen=True, slots=True)
class Inbound:
    """An INVITE from a trunk: the tenant, the trunk and the DID it is for."""

    tenant: TenantSnapshot
    trunk: Trunk
    did: str


def inbound_call(
    request: Request,
    refs: Iterable[TrunkRef],
    tenants: Callable[[str], TenantSnapshot | None],
    *,
    listed_dids_only: bool = False,
) -> Inbound | Refused:
    """Which of the trunks at the request's source it came by, and the DID it asks for;
    a 404 when none of them routes it. ``listed_dids_only``: a trunk without a DID list
    takes no number (the request came from one of its networks, not its address)."""
    uri_user = _user(request.uri)
    to_user = _user(request.to.uri)
    candidates: list[tuple[TenantSnapshot, Trunk]] = []
    for ref in refs:
        tenant = tenants(ref.tenant)
        trunk = tenant.trunk(ref.trunk) if tenant is not None and tenant.enabled else None
        if tenant is not None and trunk is not None:
            candidates.append((tenant, trunk))
    owner = trunk_of_contact_user(uri_user) if uri_user else None
    if owner is not None:  # to the Contact a trunk registered: the DID is in To
        for tenant, trunk in candidates:
            if (tenant.name, trunk.name) == owner:
                return _for_did(tenant, trunk, to_user, listed_dids_only=listed_dids_only)
        return NOT_FOUND
    for did in (uri_user, to_user):
        if not did:
            continue
        for tenant, trunk in candidates:
            if tenant.trunk_of_did(did) is trunk:
                return Inbound(tenant, trunk, did)
    open_trunks = [(tenant, trunk) for tenant, trunk in candidates if not trunk.dids]
    if len(open_trunks) == 1 and uri_user and not listed_dids_only:  # any number
        return Inbound(open_trunks[0][0], open_trunks[0][1], uri_user)
    return NOT_FOUND


def _for_did(
    tenant: TenantSnapshot, trunk: Trunk, did: str, *, listed_dids_only: bool
) -> Inbound | Refused:
    if not did:
        return NOT_FOUND
    if (trunk.dids or listed_dids_only) and tenant.trunk_of_did(did) is not trunk:
        return NOT_FOUND
    return Inbound(tenant, trunk, did)


def _user(uri: object) -> str:
    return (uri.user or "") if isinstance(uri, SipUri) else ""
