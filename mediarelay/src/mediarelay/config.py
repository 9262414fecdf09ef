"""The relay's configuration: what it binds, what it advertises, its ports and its clocks.

One frozen value built at start-up and passed down. The address media sockets *bind* and
the address written into rewritten SDP (*advertise*) are separate settings, and a relay
that binds a wildcard address must be told what to advertise: an SDP pointing phones at
0.0.0.0 or at a pod's private address is the classic cause of silent calls in containers.
Both are of one family, a wildcard included: an IPv4 socket never hears IPv6 phones, and
an IPv6 one reports IPv4 sources as ``::ffff:a.b.c.d`` and cannot send to the plain IPv4
addresses that SDP gives.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass


def host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``127.0.0.1:2223``, ``[::1]:2223``, or a bare host (``::1``) with ``default_port``."""
    bracketed = text.startswith("[")
    if bracketed:
        host, bracket, rest = text[1:].partition("]")
        if not bracket or rest[:1] not in ("", ":"):
            raise ValueError(f"bad address {text!r}: want [IPv6]:PORT")
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None  # an IPv4 host, or an IPv6 literal without brackets
    if port is None:
        if default_port is None:
            raise ValueError(f"bad address {text!r}: want HOST:PORT ([v6]:PORT for IPv6)")
        port = str(default_port)
    try:  # a literal: the relay binds, it does not resolve names
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad address {text!r}: {host!r} is not an IP address") from None
    if bracketed and ip.version != 6:
        raise ValueError(f"bad address {text!r}: {host!r} is not an IPv6 address")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def port_range(text: str) -> tuple[int, int]:
    """``30000-39999``: the media ports, both ends included."""
    low, sep, high = text.partition("-")
    if not sep or not (low + high).isascii() or not low.isdigit() or not high.isdigit():
        raise ValueError(f"bad port range {text!r}: want LOW-HIGH, e.g. 30000-39999")
    return int(low), int(high)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything a relay process needs to know."""

    #: Where the *ng* control protocol is served (the edge, or Kamailio, sends there).
    ng: tuple[str, int]
    #: The address media sockets bind.
    bind: str
    #: The address rewritten SDP gives phones (c=): public, never a wildcard.
    advertise: str
    ports: tuple[int, int] = (30000, 39999)
    #: The STUN listener (RFC 8489 §18.6: 3478); None: off (relay ports answer STUN anyway).
    stun: tuple[str, int] | None = None
    #: No media for this long on a call ends it (and it is reported ended).
    idle_timeout_s: float = 60.0
    #: A leg's source may move freely this long after its first packet (then only to
    #: the SDP's address): symmetric latching, protected against RTP injection.
    learning_window_s: float = 3.0
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        bound = ipaddress.ip_address(self.bind)
        shown = ipaddress.ip_address(self.advertise)
        if shown.is_unspecified:
            raise ValueError(
                f"cannot advertise {self.advertise}: phones would send media nowhere;"
                " give the address they can reach (--advertise)"
            )
        if bound.version != shown.version:  # a wildcard too: see the module docstring
            raise ValueError(f"bind {self.bind} and advertise {self.advertise} differ in family")
        low, high = self.ports
        if not 1024 <= low < high <= 65535:
            raise ValueError(f"media ports {low}-{high}: want 1024 <= LOW < HIGH <= 65535")
        idle, learning = self.idle_timeout_s, self.learning_window_s
        if not (0 < idle < math.inf and 0 <= learning < math.inf):  # NaN fails both
            raise ValueError(
                "the idle timeout must be positive and the learning window not negative,"
                f" both finite: got {idle} s and {learning} s"
            )
