"""Host names to IPv4 addresses, on the event loop's resolver (getaddrinfo in a thread).

Trunks name their providers by host name; the edge resolves them when it sends to one
and when it learns where their requests come from. An IP address is returned as it is,
without a lookup. No SRV or NAPTR (RFC 3263): a trunk names its host and port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket


async def resolve(host: str, port: int) -> list[str]:
    """The IPv4 addresses of ``host`` (in the resolver's order, no repeats); empty when
    it does not resolve."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))
