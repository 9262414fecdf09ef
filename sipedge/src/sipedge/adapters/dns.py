"""Where a trunk's provider is: host names to IPv4 addresses and ports (RFC 3263 §4.2).

Trunks name their providers by host name; the edge looks them up when it sends to one
and when it learns where their requests come from.

* A host named without a port is located by its SRV records, ``_sip._udp.HOST`` (or
  ``_sip._tcp``): the targets in priority order and, among equal priorities, in a
  weighted random order (RFC 2782), each with its A records and the record's port. A
  host without SRV records (or whose lookup fails) is taken by its A records on 5060.
* A host with a port, or an IP address (returned without a lookup), is taken as it is.

NAPTR is not consulted: a trunk names its transport. Lookups go to the system's resolver
(``getaddrinfo`` for A records, so ``/etc/hosts`` counts; dnspython for SRV, from
``/etc/resolv.conf``), or all to the one server :func:`use_server` names (the edge's
``--dns-server``).
"""

from __future__ import annotations

import asyncio
import random
import socket

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.SRV import SRV

from contracts.trunk import is_address

#: How long one lookup may take by default, all tries included.
LIFETIME_S = 5.0
#: The DNS server every lookup goes to (``--dns-server``); None: the system's resolver.
_server: tuple[str, int] | None = None
_lifetime_s = LIFETIME_S


def use_server(host: str | None, port: int = 53, *, lifetime_s: float = LIFETIME_S) -> None:
    """Send every lookup to the DNS server at ``host``:``port`` (None: the system's),
    each given up after ``lifetime_s``; the process's one setting, made at start."""
    global _server, _lifetime_s
    _server = None if host is None else (host, port)
    _lifetime_s = lifetime_s


async def resolve(host: str, port: int) -> list[str]:
    """The IPv4 addresses of ``host`` (in the resolver's order, no repeats); empty when
    it does not resolve."""
    if is_address(host):
        return [host]
    if _server is not None:
        answer = await _query(host, "A")
        return list(dict.fromkeys(str(record) for record in answer or ()))
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def locate(host: str, port: int, transport: str, *, srv: bool) -> list[tuple[str, int]]:
    """(address, port) pairs to send to, in the order to try them; empty when none.
    ``srv``: ``host`` was named without a port (``port`` is then the default, 5060)."""
    if srv and not is_address(host):
        targets = await srv_targets(host, transport)
        if targets:
            found: list[tuple[str, int]] = []
            for target, target_port in targets:
                found.extend((address, target_port) for address in await resolve(target, port))
            return list(dict.fromkeys(found))
    return [(address, port) for address in await resolve(host, port)]


async def srv_targets(host: str, transport: str) -> list[tuple[str, int]]:
    """``host``'s SIP servers for ``transport`` by its SRV records, in the order to try
    them (RFC 2782); empty without records (or when the service is declared absent)."""
    answer = await _query(f"_sip._{transport.lower()}.{host}", "SRV")
    records = [r for r in answer or () if isinstance(r, SRV) and str(r.target) != "."]
    ordered: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in records}):
        ordered.extend(
            (str(r.target).rstrip("."), int(r.port))
            for r in _by_weight([r for r in records if r.priority == priority])
        )
    return ordered


def _by_weight(records: list[SRV]) -> list[SRV]:
    """Records of one priority in RFC 2782's order: each next one drawn with a chance
    proportional to its weight (weight 0: after the others, unless all are 0)."""
    left, ordered = list(records), []
    while left:
        weights = [r.weight for r in left]
        if sum(weights) == 0:
            weights = [1] * len(left)
        chosen = random.choices(range(len(left)), weights)[0]  # noqa: S311 (load spread)
        ordered.append(left.pop(chosen))
    return ordered


async def _query(name: str, kind: str) -> dns.resolver.Answer | None:
    try:
        resolver = dns.asyncresolver.Resolver(configure=_server is None)
        if _server is not None:
            resolver.nameservers = [_server[0]]
            resolver.port = _server[1]
        return await resolver.resolve(
            name, dns.rdatatype.from_text(kind), lifetime=_lifetime_s, search=False
        )
    except (dns.exception.DNSException, OSError):
        return None  # no such name, no records, no answer in time: nothing found
