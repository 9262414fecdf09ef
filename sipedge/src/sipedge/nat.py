"""NAT handling at the edge: symmetric response routing and where a response goes.

RFC 3581 §4: the server adds ``received`` to the top Via when the packet's source
address differs from the sent-by host, and fills in ``rport`` with the source port when
the client asked for it. RFC 3261 §18.2.2 with RFC 3581 §4: a response over UDP goes
to ``received`` (else the sent-by host) and ``rport`` (else the sent-by port, else
5060). A phone is *behind NAT* when the address its packets come from is not the one
it wrote in Via or in its Contact: then requests to it must go to that real source.
"""

from __future__ import annotations

import functools
import ipaddress

from sipedge.sip.headers import Via
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction import Peer

DEFAULT_SIP_PORT = 5060


def stamp_received(request: Request, source: Peer) -> None:
    """Add ``received``/``rport`` to the request's top Via as RFC 3581 §4 says."""
    via = request.top_via
    params = via.params
    wants_rport = "rport" in params
    # RFC 3581 §4: with rport, received is added even when it equals the sent-by host.
    if wants_rport or _host_of(via.host) != source.host or "received" in params:
        params = params.replace("received", _bracketed(source.host))
    if wants_rport:
        params = params.replace("rport", str(source.port))
    if params is not via.params:
        request.replace_top_via(Via(via.transport, via.host, via.port, params, via.protocol))


def response_destination(response: Response, transport: str) -> Peer:
    """Where a response goes over a connectionless transport (RFC 3261 §18.2.2, 3581)."""
    via = response.top_via
    host = _host_of(via.received or via.host)
    port = via.rport or via.port or DEFAULT_SIP_PORT
    return Peer(transport, host, port)


@functools.lru_cache(maxsize=4096)
def _host_of(host: str) -> str:
    """A host without IPv6 brackets, IPv4-mapped IPv6 folded to IPv4, lower-case."""
    bare = host[1:-1] if host.startswith("[") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return bare.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
