"""Transaction identity: the keys messages are matched by (RFC 3261 §17.1.3, §17.2.3).

A client transaction is found by the branch of the top Via and the CSeq method of a
response (§17.1.3; the method tells an INVITE from the CANCEL that shares its branch).
A server transaction is found by branch, sent-by and method when the branch carries
the magic cookie ``z9hG4bK`` (§17.2.3, an ACK being filed under its INVITE), and
otherwise by the RFC 2543 fields: Request-URI, To tag, From tag, Call-ID, CSeq and top
Via. :class:`Peer` is where a message came from or should go: a hint for the
transport adapter, which applies RFC 3261 §18 and RFC 3263 itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sipedge.sip.headers import Via
from sipedge.sip.message import Request, Response
from sipedge.sip.uri import Uri

#: RFC 3261 §8.1.1.7: every RFC 3261 branch starts with it.
MAGIC_COOKIE: Final = "z9hG4bK"
#: Transports that deliver reliably: no retransmissions, D, I, J and K are zero (Table 4).
RELIABLE_TRANSPORTS: Final = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address: where a request came from, or where the TU sends one."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport.upper() in RELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True)
class ClientKey:
    """§17.1.3: the branch we put in the top Via and the method of our request."""

    branch: str
    method: str


@dataclass(frozen=True, slots=True)
class ServerKey:
    """§17.2.3 for an RFC 3261 peer: branch, sent-by, and method (ACK filed as INVITE)."""

    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True)
class LegacyKey:
    """§17.2.3 for an RFC 2543 peer (no magic cookie): the request's identifying fields.

    An ACK is looked up with the INVITE's method and its To tag checked against the
    response the transaction sent, since that response is where the tag came from.
    """

    request_uri: Uri
    to_tag: str | None
    from_tag: str | None
    call_id: str
    cseq_number: int
    method: str
    top_via: Via


TransactionKey = ClientKey | ServerKey | LegacyKey


def client_key_of(response: Response) -> ClientKey | None:
    """The key of the client transaction a response belongs to; ``None`` without a branch."""
    branch = response.branch
    return None if branch is None else ClientKey(branch, response.cseq.method)


def server_key_of(request: Request, method: str | None = None) -> ServerKey | LegacyKey:
    """The key of the server transaction ``request`` belongs to (filed as ``method``)."""
    method = method or request.method
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ServerKey(branch, via.sent_by, method)
    return legacy_key_of(request, method, request.to.tag)


def legacy_key_of(request: Request, method: str, to_tag: str | None) -> LegacyKey:
    """The RFC 2543 key of ``request`` as ``method`` with the To tag ``to_tag``."""
    return LegacyKey(
        request.uri,
        to_tag,
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        method,
        request.top_via,
    )
